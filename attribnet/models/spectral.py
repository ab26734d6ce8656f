"""The spectral branch: each frame's radially averaged log-amplitude spectrum, learnt on.

Logistic regression on exactly this profile (``attribnet.baselines.spectrum``) attributes
videos of generator instances never seen in training where the deep trunk stays at
chance, so the branch computes the same feature, inside the model and on its input:

1. greyscale ``g = 0.299 R + 0.587 G + 0.114 B`` of the *normalised* channels (nothing
   is undone: with ImageNet's nearly equal stds this is the baseline's luma up to an
   offset and a gain, each weight within 2%; exactly it when the three stds are equal);
2. per frame ``z = (g - mean(g)) / std(g)``, so offset and gain drop out;
3. a 2-D Hann window; ``torch.fft.rfft2(norm="ortho")``;
4. ``log(|F| + 1e-3)``, not ``log(1 + |F|)``: on a standardised, orthonormal spectrum
   the high frequencies, where upsampling leaves its traces, have ``|F| << 1``, where
   ``log(1 + |F|)`` would be linear and squash them;
5. radial average over ``bins`` rings of ``r = 2 sqrt(fy^2 + fx^2)`` (1 at Nyquist along
   either axis; corners ``r > 1`` left out), over the whole plane: the half plane of
   ``rfft2`` weighted by each frequency's multiplicity (2 for a column whose mirror
   ``rfft2`` drops).

Then (:class:`SpectralBranch`) per frame ``BatchNorm1d(bins)`` (the baseline's
``StandardScaler``, statistics over the B*T frames) -> ``Linear(bins, D)`` -> ReLU, and the
frames' weighted mean with the fusion's frame weights: (B, D). The profile has no
parameters and runs in float32 with autocast off (FFTs and faint high frequencies).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from attribnet.models.attention import weighted_mean

DEFAULT_BINS = 32
"""Radial bins; a frame needs ``min(H, W) >= 2 * bins`` (64 pixels for the default)."""
LOG_EPS = 1e-3
"""Added to ``|F|`` before the log; below the quantisation noise of a standardised frame."""
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights of R, G, B."""


def radial_bin_table(height: int, width: int, bins: int) -> tuple[np.ndarray, ...]:
    """For an ``rfft2`` spectrum of an HxW frame, flattened: (positions with ``r <= 1``,
    their bin ids, their weights ``multiplicity / frequencies in the bin``), float64 weights.

    Raises ValueError when a bin holds no frequency (the frame is too small for ``bins``).
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = (2.0 * np.sqrt(fy**2 + fx**2)).ravel()
    column = np.broadcast_to(np.arange(fx.shape[1]), (height, fx.shape[1])).ravel()
    mirrored = (column > 0) & (2 * column != width)  # columns whose mirror rfft2 drops
    inside = np.flatnonzero(radius <= 1.0)
    bin_ids = np.minimum((radius[inside] * bins).astype(np.int64), bins - 1)
    multiplicity = np.where(mirrored[inside], 2.0, 1.0)
    counts = np.bincount(bin_ids, weights=multiplicity, minlength=bins)
    if (counts == 0).any():
        raise ValueError(
            f"a {height}x{width} frame is too small for {bins} radial bins (bin(s) "
            f"{np.flatnonzero(counts == 0).tolist()} are empty); use model.spectral_bins <= "
            f"{min(height, width) // 2} or larger frames"
        )
    return inside, bin_ids, multiplicity / counts[bin_ids]


class RadialSpectrum(nn.Module):
    """(N, 3, H, W) normalised RGB -> (N, bins) radial profile of the log amplitude.

    The bin tables depend on the frame size, known only at the first call; they are built
    once per (H, W, device) and cached on the module (not in its state dict).
    """

    def __init__(self, bins: int = DEFAULT_BINS):
        super().__init__()
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.bins = bins
        self.register_buffer("luma", torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1), persistent=False)
        self._tables: dict[tuple[int, int, str], tuple[Tensor, Tensor, Tensor, Tensor]] = {}

    def _table(self, height: int, width: int, device: torch.device) -> tuple[Tensor, ...]:
        key = (height, width, str(device))
        if key not in self._tables:
            inside, bin_ids, weights = radial_bin_table(height, width, self.bins)
            window = np.outer(np.hanning(height), np.hanning(width))
            self._tables[key] = (
                torch.from_numpy(inside).to(device),
                torch.from_numpy(bin_ids).to(device),
                torch.from_numpy(weights).float().to(device),
                torch.from_numpy(window).float().to(device),
            )
        return self._tables[key]

    def forward(self, frames_nchw: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, bins) float32, a fixed (parameter-free) feature per frame."""
        n, _, h, w = frames_nchw.shape
        inside, bin_ids, weights, window = self._table(h, w, frames_nchw.device)
        with torch.autocast(device_type=frames_nchw.device.type, enabled=False):
            grey = (frames_nchw.float() * self.luma).sum(dim=1)
            grey = grey - grey.mean(dim=(1, 2), keepdim=True)
            std = grey.std(dim=(1, 2), keepdim=True, correction=0)
            z = grey / std.clamp_min(1e-6)
            spectrum = torch.fft.rfft2(z * window, norm="ortho")
            log_amp = torch.log(spectrum.abs() + LOG_EPS).flatten(1)
            values = log_amp[:, inside] * weights
            return log_amp.new_zeros(n, self.bins).index_add_(1, bin_ids, values)


class SpectralBranch(nn.Module):
    """(B, T, 3, H, W) clips and (B, T) frame weights -> (B, D) spectral clip features.

    Parameters: ``2 * bins`` (BatchNorm1d) + ``bins * D + D`` (Linear); 2,176 for the
    default 32 bins and D = 64.
    """

    def __init__(self, dim: int, bins: int = DEFAULT_BINS):
        super().__init__()
        if dim < 1:
            raise ValueError(f"spectral dim must be >= 1, got {dim}")
        self.dim = dim
        self.spectrum = RadialSpectrum(bins)
        self.mlp = nn.Sequential(nn.BatchNorm1d(bins), nn.Linear(bins, dim), nn.ReLU(inplace=True))

    def forward(self, clips_btchw: Tensor, weights_bt: Tensor) -> Tensor:
        """(B, T, 3, H, W), (B, T) -> (B, D): per-frame features, weighted mean over T."""
        b, t = clips_btchw.shape[:2]
        frames_btd = self.mlp(self.spectrum(clips_btchw.flatten(0, 1))).view(b, t, -1)
        return weighted_mean(frames_btd.float(), weights_bt.float())
