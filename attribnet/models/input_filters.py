"""Input filters: a high-pass first layer applied to every frame before the trunk.

A generator's architecture leaves faint high-frequency traces (upsampling, the last
convolutions); a trunk on raw pixels tends to learn the strong low-frequency content
instead (a training instance's reconstruction style). These filters pass only residuals,
``(N, 3, H, W) -> (N, 3, H, W)``, so the trunk's first convolution keeps its 3 inputs.

- ``srm`` (:class:`SRMFilter`): the three fixed SRM kernels of Zhou et al., "Learning Rich
  Features for Image Manipulation Detection", CVPR 2018, on greyscale, truncated.
- ``bayar`` (:class:`BayarConv`): Bayar & Stamm's constrained convolution, learnt.
- ``median`` (:class:`MedianResidual`): a denoiser residual, each colour channel minus its
  3x3 median, fixed.

All pad by reflection, so a flat image gives 0 everywhere, borders included, and all
run in float32 even under autocast: the residuals they extract are about one grey level,
the size of bfloat16's rounding step on a normalised input (about 1/64 of a unit).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attribnet.config.choices import IMAGENET_STD, INPUT_FILTERS

_SRM_KB = [[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]
_SRM_KV = [
    [-1, 2, -2, 2, -1],
    [2, -6, 8, -6, 2],
    [-2, 8, -12, 8, -2],
    [2, -6, 8, -6, 2],
    [-1, 2, -2, 2, -1],
]
_SRM_SECOND_ORDER = [[1, -2, 1]]


def srm_kernels() -> Tensor:
    """(3, 1, 5, 5) float32: Zhou et al.'s SRM trio, each zero-sum, divided by its q.

    0: the 3x3 "KB" kernel / 4; 1: the 5x5 "KV" kernel / 12; 2: the horizontal
    second-order kernel [1, -2, 1] / 2. The 3x3 and 1x3 kernels are centred in 5x5.
    """
    out = torch.zeros(3, 1, 5, 5)
    out[0, 0, 1:4, 1:4] = torch.tensor(_SRM_KB, dtype=torch.float32) / 4
    out[1, 0] = torch.tensor(_SRM_KV, dtype=torch.float32) / 12
    out[2, 0, 2:3, 1:4] = torch.tensor(_SRM_SECOND_ORDER, dtype=torch.float32) / 2
    return out


def _float32(x: Tensor) -> tuple[Tensor, torch.autocast]:
    """``x`` as float32 and a context that turns autocast off on its device."""
    return x.float(), torch.autocast(device_type=x.device.type, enabled=False)


def _grey_level_scale(std: Sequence[float], truncation: float | None, channels: int) -> Tensor:
    """(1, 3, 1, 1): what turns normalised R, G, B into grey levels, each divided by
    ``channels`` (3 to sum them to a grey's levels, 1 to keep them apart); checks the
    arguments the fixed residuals share."""
    if truncation is not None and truncation <= 0:
        raise ValueError(f"truncation must be > 0 or None, got {truncation}")
    if len(std) != 3:
        raise ValueError(f"std needs 3 values (R, G, B), got {std}")
    return torch.tensor([255.0 * s / channels for s in std]).view(1, 3, 1, 1)


def _truncated(residual: Tensor, truncation: float | None) -> Tensor:
    """Residuals in grey levels clipped to ``[-truncation, truncation]`` and divided by it."""
    if truncation is None:
        return residual
    return residual.clamp(-truncation, truncation) / truncation


class SRMFilter(nn.Module):
    """Fixed SRM residuals: no trainable parameters, kernels in a (non-persistent) buffer.

    Greyscale: the three kernels see the mean of R, G, B (Zhou et al. apply each kernel to
    all three channels and sum, i.e. 3x this grey), so the output has one channel per
    kernel and colour-specific traces are not kept. Scale: the input is normalised
    (``(x / 255 - mean) / std``); multiplying channel ``c`` by ``255 * std[c]`` gives grey
    levels again (the mean does not matter: each kernel sums to 0). ``std`` must be the
    recipe's ``data.std``; with another std the truncation threshold is off by that ratio.
    Residuals are truncated to ``[-truncation, truncation]`` grey levels, as in SRM
    practice (large residuals are edges of the content, not traces), then divided by
    ``truncation``, so the output lies in [-1, 1]. ``truncation=None`` keeps residuals in
    grey levels, untruncated.
    """

    def __init__(self, std: Sequence[float] = IMAGENET_STD, truncation: float | None = 3.0) -> None:
        super().__init__()
        to_grey = _grey_level_scale(std, truncation, channels=3)
        self.truncation = truncation
        self.register_buffer("kernels", srm_kernels(), persistent=False)
        self.register_buffer("to_grey_levels", to_grey, persistent=False)

    def forward(self, frames_nchw: Tensor) -> Tensor:
        """(N, 3, H, W) normalised RGB -> (N, 3, H, W) residuals, in [-1, 1] when truncated."""
        x, no_autocast = _float32(frames_nchw)
        with no_autocast:
            grey = (x * self.to_grey_levels).sum(dim=1, keepdim=True)
            residual = F.conv2d(F.pad(grey, (2, 2, 2, 2), mode="reflect"), self.kernels)
            return _truncated(residual, self.truncation)


class BayarConv(nn.Module):
    """Bayar & Stamm's constrained convolution, 3 -> 3 channels, 5x5, no bias.

    Every 2-D kernel ``w[o, i]`` (one per output and input channel) is a prediction-error
    filter: centre ``-1``, the other 24 weights sum to 1, so it kills a constant channel.
    (Constraining each 2-D slice, not each 3-D filter, is what keeps the response to a flat
    image 0: a 3-D filter with centre -1 in each slice and the rest summing to 1 would
    respond with -2.)

    The constraint is a reparametrisation, so no training-loop hook is needed and the
    optimizer and checkpoint see one ordinary parameter ``free`` (3, 3, 24): the
    effective off-centre weights are ``free - mean(free) + 1/24``. Bayar's own projection
    divides by the sum instead; subtracting the mean reaches the same set of filters
    without a division by a sum that training can drive through 0, and its gradient is
    the projected gradient. The output is a prediction error in the input's units
    (normalised: 1 unit is about 57 grey levels); the trunk's first BatchNorm absorbs
    the scale.
    """

    def __init__(self, channels: int = 3, kernel_size: int = 5, init_std: float = 0.02):
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 3:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        self.kernel_size = kernel_size
        taps = kernel_size * kernel_size - 1
        self.free = nn.Parameter(torch.randn(channels, channels, taps) * init_std)

    def effective_weight(self) -> Tensor:
        """(C, C, k, k) float32: centre -1, the other weights of each 2-D kernel sum to 1."""
        free = self.free.float()
        off = free - free.mean(dim=-1, keepdim=True) + 1.0 / free.shape[-1]
        half = off.shape[-1] // 2
        centre = off.new_full((*off.shape[:2], 1), -1.0)
        flat = torch.cat([off[..., :half], centre, off[..., half:]], dim=-1)
        return flat.view(*off.shape[:2], self.kernel_size, self.kernel_size)

    def forward(self, frames_nchw: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W) prediction errors, same size (reflection padding)."""
        x, no_autocast = _float32(frames_nchw)
        pad = self.kernel_size // 2
        with no_autocast:
            return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), self.effective_weight())


class MedianResidual(nn.Module):
    """A denoiser residual: each colour channel minus its ``size`` x ``size`` median.

    The median is the simplest edge-preserving denoiser: what it takes away is the
    pixel-level noise that a generator's last layers write, while edges of the content
    mostly stay in the denoised image (the denoiser-residual idea of PRNU forensics, with
    the median filter of Kirchner and Fridrich's median-filtering forensics). Unlike
    :class:`SRMFilter` it keeps colour: one residual per channel. Scale and truncation as
    in :class:`SRMFilter`: grey levels (``std`` must be the recipe's ``data.std``), clipped
    to ``[-truncation, truncation]``, then divided by ``truncation``.
    """

    def __init__(
        self, std: Sequence[float] = IMAGENET_STD, truncation: float | None = 3.0, size: int = 3
    ) -> None:
        super().__init__()
        to_levels = _grey_level_scale(std, truncation, channels=1)
        if size % 2 == 0 or size < 3:
            raise ValueError(f"size must be odd and >= 3, got {size}")
        self.truncation = truncation
        self.size = size
        self.register_buffer("to_grey_levels", to_levels, persistent=False)

    def forward(self, frames_nchw: Tensor) -> Tensor:
        """(N, 3, H, W) normalised RGB -> (N, 3, H, W) residuals, in [-1, 1] when truncated."""
        x, no_autocast = _float32(frames_nchw)
        n, c, h, w = x.shape
        pad = self.size // 2
        with no_autocast:
            levels = x * self.to_grey_levels
            padded = F.pad(levels, (pad,) * 4, mode="reflect")
            padded = padded.reshape(n * c, 1, h + 2 * pad, w + 2 * pad)
            windows = F.unfold(padded, self.size)  # (N*C, size*size, H*W)
            median = windows.median(dim=1).values.view(n, c, h, w)
            return _truncated(levels - median, self.truncation)


def build_input_filter(name: str) -> nn.Module | None:
    """An input filter by name: ``none`` (None), ``srm``, ``bayar`` or ``median``."""
    if name == "none":
        return None
    if name == "srm":
        return SRMFilter()
    if name == "bayar":
        return BayarConv()
    if name == "median":
        return MedianResidual()
    raise ValueError(f"unknown input filter {name!r}; use one of {INPUT_FILTERS}")
