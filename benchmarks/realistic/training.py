"""Training one face-swap autoencoder on the faces of two identities, as faceswap does.

Each step draws a batch of faces of A and one of B, applies one random affine transform
(rotation, zoom, shift, horizontal flip) per face to the input and its target alike, warps
the input further with a smooth random displacement field (faceswap's ``random_warp``:
the model learns to undo it, so it learns faces rather than pixels), and minimises the L1
error of A's decoder on A and B's decoder on B (plus, for models with a learned mask, the
L1 error of the mask against the blending ellipse). Adam with betas (0.5, 0.999) as in
faceswap; the learning rate is higher than faceswap's 5e-5 because a CPU run has hundreds
of steps, not a hundred thousand.

Deterministic for a given seed and number of torch threads: the weights, the batches and
the augmentation all come from seeded generators.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from realistic.generators import FaceSwapAutoencoder


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 500
    batch: int = 8
    lr: float = 1e-3
    rotation_deg: float = 10.0
    zoom: float = 0.05
    shift: float = 0.05
    warp: float = 0.04  # displacement of the input's warp, in half image widths


def ellipse_mask(size: int) -> np.ndarray:
    """A feathered ellipse (size, size) float32 in [0, 1] over the face inside a face box:
    where the swapped face is blended in (and dfaker's mask target)."""
    grid = (np.arange(size) + 0.5) / size
    y, x = np.meshgrid(grid, grid, indexing="ij")
    r = np.sqrt(((x - 0.5) / 0.40) ** 2 + ((y - 0.55) / 0.47) ** 2)
    return np.clip((1.0 - r) / 0.15, 0.0, 1.0).astype(np.float32)


def face_tensor(faces_nhwc: np.ndarray, size: int) -> Tensor:
    """uint8 face crops (N, s, s, 3) -> float32 (N, 3, size, size) in [0, 1] (area resize)."""
    resized = np.stack(
        [
            f if f.shape[0] == size else cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
            for f in faces_nhwc
        ]
    )
    return torch.from_numpy(resized).permute(0, 3, 1, 2).float().div_(255.0)


def _affine(n: int, s: TrainSettings, gen: torch.Generator) -> Tensor:
    """(n, 2, 3) random affine matrices in normalised coordinates."""
    u = torch.rand(n, 5, generator=gen) * 2 - 1
    angle = u[:, 0] * math.radians(s.rotation_deg)
    scale = 1.0 + u[:, 1] * s.zoom
    flip = torch.where(u[:, 4] > 0, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos * flip, -sin, u[:, 2] * s.shift
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin * flip, cos, u[:, 3] * s.shift
    return theta


def augment(x: Tensor, y: Tensor, s: TrainSettings, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """One random affine for each input/target pair (both), plus a smooth warp of the
    input only. ``x`` (B, 3, i, i), ``y`` (B, C, o, o); resolutions may differ."""
    n = x.shape[0]
    theta = _affine(n, s, gen)
    grid_x = F.affine_grid(theta, list(x.shape), align_corners=False)
    grid_y = F.affine_grid(theta, list(y.shape), align_corners=False)
    coarse = (torch.rand(n, 2, 5, 5, generator=gen) * 2 - 1) * s.warp
    coarse[:, :, [0, -1], :] = 0.0  # keep the border in place, as faceswap's warp does
    coarse[:, :, :, [0, -1]] = 0.0
    field = F.interpolate(coarse, size=x.shape[-2:], mode="bicubic", align_corners=True)
    grid_x = grid_x + field.permute(0, 2, 3, 1)
    x = F.grid_sample(x, grid_x, mode="bilinear", padding_mode="border", align_corners=False)
    y = F.grid_sample(y, grid_y, mode="bilinear", padding_mode="border", align_corners=False)
    return x, y


def train_pair(
    model: FaceSwapAutoencoder,
    faces: tuple[np.ndarray, np.ndarray],
    settings: TrainSettings,
    seed: int,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Train ``model`` in place on face crops of A and B (uint8 (N, s, s, 3) each).

    Random draws happen on the CPU (the same for any ``device``); the model is moved to
    ``device`` and left there. Returns {"loss_first", "loss_last" (mean of the first /
    last 10% of steps), "seconds"}.
    """
    gen = torch.Generator().manual_seed(seed)
    mask = torch.from_numpy(ellipse_mask(model.output_size))[None, None]
    data = []
    for side_faces in faces:
        x = face_tensor(side_faces, model.input_size)
        y = face_tensor(side_faces, model.output_size)
        if model.has_mask:
            y = torch.cat([y, mask.expand(len(y), -1, -1, -1)], dim=1)
        data.append((x, y))
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    model.train()
    losses, start = [], time.perf_counter()
    for _ in range(settings.steps):
        total = torch.zeros((), device=device)
        for side, (x_all, y_all) in enumerate(data):
            pick = torch.randint(len(x_all), (settings.batch,), generator=gen)
            x, y = augment(x_all[pick], y_all[pick], settings, gen)
            x, y = x.to(device), y.to(device)
            face, pred_mask = model(x, side)
            total = total + F.l1_loss(face, y[:, :3])
            if pred_mask is not None:
                total = total + F.l1_loss(pred_mask, y[:, 3:])
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    model.eval()
    k = max(1, len(losses) // 10)
    return {
        "loss_first": float(np.mean(losses[:k])),
        "loss_last": float(np.mean(losses[-k:])),
        "seconds": time.perf_counter() - start,
    }
