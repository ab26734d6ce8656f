"""Small windows of each frame on its own pixel grid: the patch-level input of a model that
looks for an architecture's local, globally repeated trace rather than a face.

A generator's upsampling leaves the same trace all over its output, while what a training
learnt varies by region (DNA-Det, Yang et al. AAAI 2022, classify patches for this). So a
patch model runs its trunk on ``size`` x ``size`` windows cut from each frame at integer
offsets (never resampled: a window is a slice of the frame's pixels) and averages their
features: ``count`` windows at random places in training, an ``grid`` x ``grid`` grid of
evenly spaced windows at evaluation, so that the answer of a video does not depend on a
draw.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def grid_offsets(extent: int, size: int, grid: int) -> Tensor:
    """``grid`` evenly spaced integer offsets of a ``size`` window in ``extent`` pixels,
    the first at 0 and the last at ``extent - size``."""
    if grid == 1:
        return torch.tensor([(extent - size) // 2])
    return torch.linspace(0, extent - size, grid).round().long()


class PatchSampler(nn.Module):
    """Frames (N, C, H, W) -> windows (N * P, C, size, size), P per frame.

    Training: ``count`` windows per frame at offsets drawn uniformly from the integer grid
    (torch's global generator, so a seeded run draws the same). Evaluation: the
    ``grid`` x ``grid`` windows of :func:`grid_offsets`. ``last_offsets`` keeps the
    (N, P, 2) top-left corners (y, x) of the last call.
    """

    def __init__(self, size: int, count: int = 4, grid: int = 3):
        super().__init__()
        if size < 8 or count < 1 or grid < 1:
            raise ValueError(f"patch size >= 8, count >= 1, grid >= 1; got {size}, {count}, {grid}")
        self.size, self.count, self.grid = size, count, grid
        self.last_offsets: Tensor | None = None

    def patches_per_frame(self) -> int:
        """P: ``count`` in training, ``grid ** 2`` at evaluation."""
        return self.count if self.training else self.grid**2

    def offsets(self, n: int, height: int, width: int, device: torch.device) -> Tensor:
        """(n, P, 2) int64 top-left corners (y, x) of the windows of n frames."""
        if height < self.size or width < self.size:
            raise ValueError(f"{self.size} px patches need frames of at least that size, got "
                             f"{height}x{width}")  # fmt: skip
        if self.training:
            ys = torch.randint(0, height - self.size + 1, (n, self.count))
            xs = torch.randint(0, width - self.size + 1, (n, self.count))
        else:
            gy = grid_offsets(height, self.size, self.grid)
            gx = grid_offsets(width, self.size, self.grid)
            ys = gy.repeat_interleave(self.grid).expand(n, -1)
            xs = gx.repeat(self.grid).expand(n, -1)
        return torch.stack([ys, xs], dim=-1).to(device)

    def forward(self, frames_nchw: Tensor) -> Tensor:
        n, c, h, w = frames_nchw.shape
        corners = self.offsets(n, h, w, frames_nchw.device)
        self.last_offsets = corners
        steps = torch.arange(self.size, device=frames_nchw.device)
        rows = (corners[..., 0, None] + steps)[..., :, None]  # (n, P, size, 1)
        cols = (corners[..., 1, None] + steps)[..., None, :]  # (n, P, 1, size)
        frame = torch.arange(n, device=frames_nchw.device)[:, None, None, None]
        windows = frames_nchw.permute(0, 2, 3, 1)[frame, rows, cols]  # (n, P, size, size, C)
        return windows.flatten(0, 1).permute(0, 3, 1, 2)
