"""Is there a face in a video's face crops at all, whatever detector made them?

:class:`FaceCheck` judges a few crops of every video as blank, noise, face or no face, and
refuses a video whose crops are mostly not faces (preprocessing records the reason).
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from attribnet.data.faces import HaarDetector
from attribnet.errors import ConfigError, DataError, NoFaceError

log = logging.getLogger(__name__)

STRUCTURE_SIDE = 16  # FaceCheck measures pixel-to-pixel structure at this size
BLACK_LEVEL = 16  # ... on crops less their borders with no pixel above this level


class FaceCheck:
    """Is there a face in a video's face crops, whatever detector made them?

    The ``none`` and ``centre`` detectors crop whatever the frame holds, so without this a
    video of noise or of one colour becomes "faces" that a model attributes with high
    confidence. The check looks at up to ``frames`` evenly spaced crops, less any black
    border (the padding of a frame that is not square, letterbox bars); a crop is

    - ``blank`` when its grey levels vary less than ``min_std`` (one colour, black);
    - ``noise`` when, shrunk to 16x16 (so that upscaled noise counts too), neighbouring
      pixels are nearly uncorrelated (mean correlation of horizontal and vertical
      neighbours below ``min_structure``; where noise and faces fall: docs/results.md);
    - ``face`` when skin tones (YCrCb box Cr 133-173, Cb 77-127) cover at least
      ``min_skin`` of its central area (the middle 2/3 of each side), or else OpenCV's
      Haar cascade finds a frontal face in it (greyscale or oddly lit faces; crops
      upscaled to ``haar_side`` px, 3 neighbours: lenient);
    - ``no face`` otherwise.

    A video passes when at least ``min_share`` of the checked crops are faces. Haar alone
    would not do: it misses most of the demo's procedural faces and some of the realistic
    benchmark's swapped faces (docs/results.md). Skin tones are a weak cue: smooth skin-toned
    content without a face (a beige wall) passes; noise, blank frames and content without
    skin tones or a Haar face do not.
    """

    def __init__(
        self,
        *,
        frames: int = 8,
        min_share: float = 0.5,
        min_std: float = 4.0,
        min_structure: float = 0.3,
        min_skin: float = 0.1,
        haar_side: int = 160,
        cascade_path: str | os.PathLike[str] | None = None,
    ):
        if frames < 1 or not 0 < min_share <= 1:
            raise ConfigError(f"face check: need frames >= 1, 0 < min_share <= 1; got {frames}")
        self.frames, self.min_share = frames, min_share
        self.min_std, self.min_structure, self.min_skin = min_std, min_structure, min_skin
        self.haar_side = haar_side
        try:
            self._haar: HaarDetector | None = HaarDetector(cascade_path, min_neighbors=3)
        except DataError as exc:
            log.warning("face check without its Haar fallback (skin tones only): %s", exc)
            self._haar = None

    def frame_verdict(self, crop_hwc: np.ndarray) -> str:
        """``face``, ``no face``, ``blank`` or ``noise`` for one RGB uint8 crop (S, S, 3)."""
        crop_hwc = _without_black_border(np.ascontiguousarray(crop_hwc))
        if min(crop_hwc.shape[:2]) < 2:
            return "blank"
        grey = cv2.cvtColor(crop_hwc, cv2.COLOR_RGB2GRAY)
        levels = grey.astype(np.float32)
        if levels.std() < self.min_std:
            return "blank"
        side = (min(STRUCTURE_SIDE, levels.shape[1]), min(STRUCTURE_SIDE, levels.shape[0]))
        coarse = cv2.resize(levels, side, interpolation=cv2.INTER_AREA)
        if _neighbour_correlation(coarse) < self.min_structure:
            return "noise"
        if _skin_share(crop_hwc) >= self.min_skin or self._haar_face(grey):
            return "face"
        return "no face"

    def verdicts(self, crops_nhwc: np.ndarray) -> list[str]:
        """:meth:`frame_verdict` of the crops checked: up to ``frames``, evenly spaced."""
        n = len(crops_nhwc)
        picks = np.unique(np.linspace(0, n - 1, min(n, self.frames)).round().astype(int))
        return [self.frame_verdict(np.asarray(crops_nhwc[i])) for i in picks]

    def check(self, crops_nhwc: np.ndarray) -> None:
        """Raise NoFaceError with the reason when too few checked crops show a face."""
        verdicts = self.verdicts(crops_nhwc)
        checked, faces = len(verdicts), verdicts.count("face")
        if checked and faces >= self.min_share * checked:
            return
        blank, noise = verdicts.count("blank"), verdicts.count("noise")
        parts = ", ".join(f"{k} {name}" for k, name in ((blank, "blank"), (noise, "noise")) if k)
        if blank + noise > verdicts.count("no face"):
            raise NoFaceError(
                f"no face: frames are blank or noise in {blank + noise} of {checked} "
                f"sampled frames ({parts})"
            )
        extra = f" ({blank + noise} blank or noise)" if blank + noise else ""
        raise NoFaceError(f"no face found in {checked - faces} of {checked} sampled frames{extra}")

    def _haar_face(self, grey: np.ndarray) -> bool:
        if self._haar is None:
            return False
        scale = self.haar_side / min(grey.shape)
        if scale > 1:
            size = (round(grey.shape[1] * scale), round(grey.shape[0] * scale))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_CUBIC)
        return len(self._haar.detect(grey)) > 0


def _without_black_border(rgb_hwc: np.ndarray, level: int = BLACK_LEVEL) -> np.ndarray:
    """The crop less its outer rows and columns with no pixel above ``level``, and less
    the line next to such a border (resizing blends it with the black)."""
    content = rgb_hwc.max(axis=2) > level
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if not len(rows):
        return rgb_hwc[:0, :0]
    h, w = content.shape
    y0, y1 = rows[0] + (rows[0] > 0), rows[-1] + 1 - (rows[-1] < h - 1)
    x0, x1 = cols[0] + (cols[0] > 0), cols[-1] + 1 - (cols[-1] < w - 1)
    return rgb_hwc[y0:y1, x0:x1]


def _neighbour_correlation(grey: np.ndarray) -> float:
    """Mean Pearson correlation of horizontally and vertically adjacent pixels (H, W)."""

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(), b - b.mean()
        norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
        return float((a * b).sum()) / norm if norm > 0 else 1.0

    return 0.5 * (corr(grey[:, :-1], grey[:, 1:]) + corr(grey[:-1], grey[1:]))


def _skin_share(rgb_hwc: np.ndarray) -> float:
    """Share of skin-toned pixels (YCrCb box of Chai & Ngan, 1999) in the central area."""
    h, w = rgb_hwc.shape[:2]
    centre = rgb_hwc[h // 6 : h - h // 6, w // 6 : w - w // 6]
    ycrcb = cv2.cvtColor(np.ascontiguousarray(centre), cv2.COLOR_RGB2YCrCb)
    cr, cb = ycrcb[..., 1], ycrcb[..., 2]
    return float(((cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)).mean())
