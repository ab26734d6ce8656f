"""Clip augmentation: one random draw per clip, the same transform for all its frames.

- :class:`ClipAugment`: spatial (random resized crop, horizontal flip, colour jitter) with
  albumentations, optionally after a deterministic "resize, then centre crop" (``resize``).
  Albumentations 2.x draws a transform's parameters once per call and applies them to
  every image passed as ``images=`` (N, H, W, C); the tests check this.
- :class:`CompressionAugment`: H.264 (libx264, crf from a list) and JPEG re-compression.
- :class:`Normalize`: uint8 (T, H, W, 3) -> float32 tensor (T, 3, H, W).

Randomness comes from a ``numpy.random.Generator`` passed to each call, so a dataset that
derives it from (seed, epoch, index) is reproducible whatever the number of workers.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attribnet.config.choices import IMAGENET_MEAN, IMAGENET_STD
from attribnet.data.codec import h264_roundtrip, jpeg_roundtrip

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import
import albumentations as A  # noqa: E402

log = logging.getLogger(__name__)


_SEED_BOUND = 2**63


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size}")
    return int(h), int(w)


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


def _check_clip(frames_thwc: np.ndarray) -> None:
    if frames_thwc.ndim != 4 or frames_thwc.shape[-1] != 3 or frames_thwc.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 frames (T, H, W, 3), got {frames_thwc.dtype} {frames_thwc.shape}"
        )


class ClipAugment:
    """Clip-consistent spatial augmentation and resizing to ``size``.

    One draw per call decides the crop box, the flip and the colour factors, and all frames
    of the clip get exactly that transform (so motion and temporal artefacts survive).

    With ``resize`` > 0 (``data.resize``) every frame is first resized to ``resize`` x
    ``resize`` and centre-cropped to ``size`` (torchvision's ``Resize(256)`` then
    ``CenterCrop(224)`` on square faces: the DMA-STA authors' preprocessing); the random crop,
    flip and jitter then act on that crop. ``random_crop`` takes that ``size`` crop at a
    random place instead of the centre (training; evaluation keeps the centre). With
    ``crop_scale=None`` and ``hflip=0`` (and no ``random_crop``) this is the deterministic
    evaluation transform.

    Args:
        size: output height and width (an int for square).
        hflip: probability of a horizontal flip.
        crop_scale: area fraction range of ``RandomResizedCrop``; ``None`` = plain resize.
        crop_ratio: aspect-ratio range of the crop.
        color_jitter: strength ``s``: brightness, contrast and saturation factors drawn from
            [1 - s, 1 + s], hue shifted by up to ``min(s / 4, 0.5)``; 0 disables it.
        seed: seeds the generator used when a call passes no ``rng`` (a dataset should pass
            one per item instead: a shared stream would repeat across DataLoader workers).
        resize: 0 (off) or the side every frame is resized to before a centre crop to
            ``size``; at least ``size``.
        random_crop: with ``resize``, crop at a random place instead of the centre.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        hflip: float = 0.5,
        crop_scale: tuple[float, float] | None = (0.8, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        color_jitter: float = 0.0,
        seed: int | None = None,
        resize: int = 0,
        random_crop: bool = False,
    ):
        self.size = _size_hw(size)
        _check_probability("hflip", hflip)
        if resize and resize < max(self.size):
            raise ValueError(f"resize must be 0 (off) or >= size {self.size}, got {resize}")
        if random_crop and not resize:
            raise ValueError("random_crop needs resize > 0, the side the crop is taken from")
        self.resize, self.random_crop = int(resize), bool(random_crop)
        if crop_scale is not None and not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}")
        if color_jitter < 0:
            raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
        self.hflip, self.crop_scale, self.color_jitter = hflip, crop_scale, color_jitter
        self._transform = A.Compose(self._transforms(crop_ratio))
        self._rng = np.random.default_rng(seed)

    def _transforms(self, crop_ratio: tuple[float, float]) -> list[A.BasicTransform]:
        h, w = self.size
        transforms: list[A.BasicTransform] = []
        if self.resize:
            crop = A.RandomCrop if self.random_crop else A.CenterCrop
            transforms = [A.Resize(self.resize, self.resize), crop(h, w)]
        elif self.crop_scale is None:
            transforms = [A.Resize(h, w)]
        if self.crop_scale is not None:
            transforms.append(A.RandomResizedCrop((h, w), scale=self.crop_scale, ratio=crop_ratio))
        if self.hflip > 0:
            transforms.append(A.HorizontalFlip(p=self.hflip))
        if self.color_jitter > 0:
            s = self.color_jitter
            transforms.append(A.ColorJitter(s, s, s, min(s / 4, 0.5), p=1.0))
        return transforms

    def __repr__(self) -> str:
        return (
            f"ClipAugment(size={self.size}, hflip={self.hflip}, crop_scale={self.crop_scale}, "
            f"color_jitter={self.color_jitter}, resize={self.resize}, "
            f"random_crop={self.random_crop})"
        )

    def changes(self, frames_thwc: np.ndarray) -> bool:
        """Whether a deterministic call (no crop, flip or jitter) changes frames of this
        size: always with ``resize``, else when they are not ``size`` already."""
        return bool(self.resize) or tuple(frames_thwc.shape[1:3]) != self.size

    def __call__(
        self, frames_thwc: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """uint8 (T, H, W, 3) -> uint8 (T, size_h, size_w, 3), one draw for the whole clip."""
        _check_clip(frames_thwc)
        seed = int((rng if rng is not None else self._rng).integers(_SEED_BOUND))
        self._transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = self._transform(images=np.ascontiguousarray(frames_thwc))["images"]
        return np.ascontiguousarray(out)


class CompressionAugment:
    """Random lossy re-compression of a whole clip.

    With probability ``h264_p`` the clip is re-encoded with H.264 (yuv420p, as DFDM) at a crf
    drawn from ``crf_choices``; then, with probability ``jpeg_p``, every frame is JPEG
    re-compressed at one quality drawn uniformly from ``jpeg_quality`` (inclusive).
    """

    def __init__(
        self,
        h264_p: float = 0.0,
        crf_choices: Sequence[int] = (0, 10, 23),
        jpeg_p: float = 0.0,
        jpeg_quality: tuple[int, int] = (60, 95),
    ):
        _check_probability("h264_p", h264_p)
        _check_probability("jpeg_p", jpeg_p)
        if not crf_choices or not all(0 <= int(c) <= 51 for c in crf_choices):
            raise ValueError(f"crf_choices must be non-empty values in 0..51, got {crf_choices}")
        lo, hi = jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"jpeg_quality must satisfy 1 <= min <= max <= 100, got {lo, hi}")
        self.h264_p, self.jpeg_p = h264_p, jpeg_p
        self.crf_choices = tuple(int(c) for c in crf_choices)
        self.jpeg_quality = (int(lo), int(hi))

    def __repr__(self) -> str:
        return (
            f"CompressionAugment(h264_p={self.h264_p}, crf_choices={self.crf_choices}, "
            f"jpeg_p={self.jpeg_p}, jpeg_quality={self.jpeg_quality})"
        )

    @property
    def active(self) -> bool:
        """Whether a call can change the frames at all."""
        return self.h264_p > 0 or self.jpeg_p > 0

    def draw(self, rng: np.random.Generator) -> CompressionDraw:
        """What a call with ``rng`` does; the same number of draws every call."""
        use_h264 = rng.random() < self.h264_p
        crf = self.crf_choices[int(rng.integers(len(self.crf_choices)))]
        use_jpeg = rng.random() < self.jpeg_p
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        return CompressionDraw(crf if use_h264 else None, quality if use_jpeg else None)

    def __call__(self, frames_thwc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 (T, H, W, 3) -> uint8 (T, H, W, 3), as ``draw(rng)`` says."""
        return self.apply(frames_thwc, self.draw(rng))

    def apply(
        self, frames_thwc: np.ndarray, draw: CompressionDraw, h264: bool = True
    ) -> np.ndarray:
        """uint8 (T, H, W, 3) -> uint8 (T, H, W, 3) as ``draw`` says; ``h264=False`` leaves
        the H.264 step out (the frames come from an H.264 variant already)."""
        _check_clip(frames_thwc)
        if draw.crf is not None and h264:
            frames_thwc = h264_roundtrip(frames_thwc, draw.crf)
        if draw.jpeg_quality is not None:
            frames_thwc = jpeg_roundtrip(frames_thwc, draw.jpeg_quality)
        return frames_thwc


@dataclass(frozen=True)
class CompressionDraw:
    """One clip's compression: H.264 at ``crf`` (None: none), then JPEG at ``jpeg_quality``
    (None: none)."""

    crf: int | None
    jpeg_quality: int | None


class Normalize:
    """uint8 (T, H, W, 3) RGB -> float32 tensor (T, 3, H, W): ``(x / 255 - mean) / std``.

    ``mean`` and ``std`` are per channel on the [0, 1] scale; ImageNet's by default.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {mean} and {std}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be > 0, got {std}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1))

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"

    def __call__(self, frames_thwc: np.ndarray) -> torch.Tensor:
        """uint8 (T, H, W, 3) -> float32 (T, 3, H, W)."""
        _check_clip(frames_thwc)
        x = torch.from_numpy(np.ascontiguousarray(frames_thwc)).permute(0, 3, 1, 2).float()
        return (x - 255.0 * self._mean) * self._scale
