"""The pretext task of DNA-Det (Yang et al., "Deepfake Network Architecture Attribution",
AAAI 2022): tell low-level image transformations apart.

An encoder pre-trained to name which transformation a clip went through learns the traces
of resampling, filtering, compression and noise, the kind of trace a generator's
upsampling leaves; it is then fine-tuned on the generator classes (``model.weights``
naming the pre-training run's checkpoint). With ``data.pretext: transformations`` a run
trains on the manifest's videos whatever their label: each clip's label is a class of
:data:`TRANSFORMATIONS`, drawn per item, and every frame of the clip goes through it.

The classes, in label order (frames are uint8 RGB; OpenCV does the image operations):

- ``identity``: the frames as they are;
- ``jpeg_q50``, ``jpeg_q70``, ``jpeg_q90``: JPEG re-compression at that quality;
- ``blur_s1``, ``blur_s2``: Gaussian blur of sigma 1 and 2 pixels;
- ``resample_half_nearest``, ``resample_half_bilinear``, ``resample_half_bicubic``:
  down to half the side (area averaging), back up with that interpolation;
- ``resample_double_area``: up to twice the side (bilinear), back down by area averaging;
- ``noise_s2``, ``noise_s5``: additive Gaussian noise of standard deviation 2 and 5 (on
  the 0..255 scale), rounded and clipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from attribnet.config.choices import PRETEXTS
from attribnet.data.codec import jpeg_roundtrip

FramesFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _identity(frames_thwc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return frames_thwc


def _jpeg(quality: int, frames_thwc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return jpeg_roundtrip(frames_thwc, quality)


def _blur(sigma: float, frames_thwc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames_thwc])


def _resample(
    factor: float, there: int, back: int, frames_thwc: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Each frame resized by ``factor`` with interpolation ``there``, then back to its size
    with ``back`` (OpenCV ``INTER_*`` flags)."""
    h, w = frames_thwc.shape[1:3]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.stack(
        [
            cv2.resize(cv2.resize(f, size, interpolation=there), (w, h), interpolation=back)
            for f in frames_thwc
        ]
    )


def _noise(sigma: float, frames_thwc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = frames_thwc + rng.normal(0.0, sigma, frames_thwc.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Transformation:
    """One pretext class: its name and what it does to a clip, uint8 (T, H, W, 3) ->
    uint8 (T, H, W, 3); ``rng`` feeds the random ones (noise)."""

    name: str
    apply: FramesFn


TRANSFORMATIONS: tuple[Transformation, ...] = (
    Transformation("identity", _identity),
    *(Transformation(f"jpeg_q{q}", partial(_jpeg, q)) for q in (50, 70, 90)),
    *(Transformation(f"blur_s{s}", partial(_blur, float(s))) for s in (1, 2)),
    *(
        Transformation(f"resample_half_{name}", partial(_resample, 0.5, cv2.INTER_AREA, flag))
        for name, flag in (
            ("nearest", cv2.INTER_NEAREST),
            ("bilinear", cv2.INTER_LINEAR),
            ("bicubic", cv2.INTER_CUBIC),
        )
    ),
    Transformation(
        "resample_double_area", partial(_resample, 2.0, cv2.INTER_LINEAR, cv2.INTER_AREA)
    ),
    *(Transformation(f"noise_s{s}", partial(_noise, float(s))) for s in (2, 5)),
)
"""The pretext classes of ``data.pretext: transformations``, in label order."""


class TransformationPretext:
    """Labels clips with a transformation drawn per clip, and applies it to all frames.

    The draw and the transformation's own randomness come from one generator per item
    (:meth:`attribnet.data.clips.ClipDataset.pretext_rng`), so a label is the same for the
    same (seed, epoch, item) and changes between epochs.
    """

    def __init__(self, transformations: tuple[Transformation, ...] = TRANSFORMATIONS):
        if not transformations:
            raise ValueError("a pretext task needs at least one transformation")
        self.transformations = transformations

    def __repr__(self) -> str:
        return f"TransformationPretext({len(self.transformations)} classes)"

    @property
    def names(self) -> list[str]:
        """The class names, in label order."""
        return [t.name for t in self.transformations]

    def draw(self, rng: np.random.Generator) -> int:
        """A label, uniform over the classes; the first draw from ``rng``."""
        return int(rng.integers(len(self.transformations)))

    def __call__(self, frames_thwc: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
        """uint8 (T, H, W, 3) -> the same frames through class ``label``'s transformation."""
        return np.ascontiguousarray(self.transformations[label].apply(frames_thwc, rng))


def build_pretext(name: str) -> TransformationPretext | None:
    """The pretext task ``data.pretext`` names: None for ``none``."""
    if name == "none":
        return None
    if name == "transformations":
        return TransformationPretext()
    raise ValueError(f"unknown pretext task {name!r}; use one of {PRETEXTS}")
