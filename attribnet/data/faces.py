"""Face detection, tracking of one face per video, and square face crops.

A detector maps one RGB frame (H, W, 3) uint8 to boxes (M, 4) float ``x0, y0, x1, y1`` in
pixels, best first. :func:`crop_faces` runs it on (every k-th) frame, follows ONE face
through the video (the largest in the first frames, then the nearest box of similar size),
fills frames without a detection by interpolating between neighbours (holding the first /
last box at the ends), smooths the box centre and size with a centred moving average (no lag),
expands it by a margin to a square, and resizes the crop with ``cv2.INTER_AREA``.

:class:`attribnet.data.face_check.FaceCheck` then asks whether the crops show a face at
all, whatever the detector (the ``none`` and ``centre`` detectors crop whatever is there).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from attribnet.errors import ConfigError, DataError, NoFaceError

log = logging.getLogger(__name__)

CASCADE_NAME = "haarcascade_frontalface_default.xml"
INIT_FRAMES = 5  # the tracked face is the largest one in this many first frames with faces
GATE_DISTANCE = 1.0  # accept a box whose centre is within this many face sizes ...
GATE_GROWTH = 0.25  # ... plus this much per detection frame the face was not seen
GATE_SCALE = 2.0  # ... and whose size is within this factor of the previous one


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with ``detect(frame_hwc) -> boxes``: RGB uint8 (H, W, 3) -> float (M, 4)
    ``x0, y0, x1, y1`` in pixels, best first; (0, 4) when there is no face."""

    def detect(self, frame_hwc: np.ndarray) -> np.ndarray: ...


def default_cascade_path() -> Path:
    """Where OpenCV's pip wheels keep the frontal-face Haar cascade (4.x wheels only)."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    return Path(folder) / CASCADE_NAME


class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade. Fast, CPU-only, frontal faces only.

    Frames larger than ``max_side`` pixels are downscaled for detection; boxes come back
    in the frame's pixels, ordered by the cascade's neighbour count, then by area.
    """

    name = "haar"

    def __init__(
        self,
        cascade_path: str | os.PathLike[str] | None = None,
        *,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        max_side: int = 640,
    ):
        path = Path(cascade_path) if cascade_path else default_cascade_path()
        if not path.is_file():
            raise DataError(
                f"Haar cascade file not found: {path}. OpenCV 5.x wheels ship no cascade "
                "files: install 'opencv-python-headless<5', or pass the path of "
                f"{CASCADE_NAME} (--cascade / cascade_path=)"
            )
        self.cascade_path = path
        try:
            self._cascade = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError) as exc:  # OpenCV wraps parse errors in SystemError
            raise DataError(f"{path}: not a valid OpenCV cascade XML file") from exc
        if self._cascade.empty():
            raise DataError(f"{path}: not a valid OpenCV cascade XML file")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.max_side = max_side

    def detect(self, frame_hwc: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> float32 boxes (M, 4) x0, y0, x1, y1, best first."""
        grey = cv2.cvtColor(frame_hwc, cv2.COLOR_RGB2GRAY) if frame_hwc.ndim == 3 else frame_hwc
        h, w = grey.shape
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        boxes, neighbours = self._cascade.detectMultiScale2(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors
        )
        if len(boxes) == 0:
            return np.zeros((0, 4), np.float32)
        xywh = np.asarray(boxes, np.float32).reshape(-1, 4) / scale
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        area = xywh[:, 2] * xywh[:, 3]
        order = np.lexsort((-area, -np.asarray(neighbours, np.float32).reshape(-1)))
        return xyxy[order]


class FullFrameDetector:
    """The whole frame is the face: for inputs that are already face crops (e.g. DFDM)."""

    name = "none"

    def detect(self, frame_hwc: np.ndarray) -> np.ndarray:
        """(H, W, C) -> [[0, 0, W, H]] float32 (1, 4)."""
        h, w = frame_hwc.shape[:2]
        return np.array([[0.0, 0.0, w, h]], np.float32)


class CentreDetector:
    """The face is the central square of the frame, ``fraction`` of its shorter side: for
    head-centred frames with context around the face, e.g. faceswap's aligned faces or the
    realistic benchmark's frames (face box = the central 2/3). With ``data.face_margin=0``
    the crop is the face alone, so the unchanged background (real pixels, the same in every
    class) does not dilute the generator's traces."""

    name = "centre"

    def __init__(self, fraction: float = 2 / 3):
        if not 0 < fraction <= 1:
            raise ConfigError(f"centre detector fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def detect(self, frame_hwc: np.ndarray) -> np.ndarray:
        """(H, W, C) -> the central box [[x0, y0, x1, y1]] float32 (1, 4)."""
        h, w = frame_hwc.shape[:2]
        side = self.fraction * min(h, w)
        x0, y0 = (w - side) / 2, (h - side) / 2
        return np.array([[x0, y0, x0 + side, y0 + side]], np.float32)


DETECTORS: dict[str, type] = {
    "haar": HaarDetector,
    "none": FullFrameDetector,
    "centre": CentreDetector,
}


def build_detector(name: str, **kwargs: Any) -> FaceDetector:
    """A detector by name (``haar``, ``none``, ``centre``); ``kwargs`` go to its
    constructor."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown face detector {name!r}; use one of {sorted(DETECTORS)}")
    return DETECTORS[name](**kwargs)


def detector_name(detector: FaceDetector) -> str:
    """The name a detector is recorded under in cache settings."""
    return str(getattr(detector, "name", type(detector).__name__))


def _centre_side(box: np.ndarray) -> np.ndarray:
    """x0, y0, x1, y1 (4,) -> centre x, centre y, side = max(width, height) (3,)."""
    return np.array(
        [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, max(box[2] - box[0], box[3] - box[1])]
    )


def _initial_face(detections: list[np.ndarray]) -> tuple[int, np.ndarray] | None:
    """(position, box) of the largest box in the first INIT_FRAMES frames with any box."""
    candidates = [(j, d) for j, d in enumerate(detections) if len(d)][:INIT_FRAMES]
    if not candidates:
        return None
    return max(
        ((j, box) for j, boxes in candidates for box in boxes),
        key=lambda jb: _centre_side(jb[1])[2],
    )


def _nearest(boxes: np.ndarray, previous: np.ndarray, missed: int) -> np.ndarray | None:
    """The box nearest to ``previous`` (4,) if it passes the distance and scale gates."""
    if not len(boxes):
        return None
    prev = _centre_side(previous)
    cand = np.stack([_centre_side(b) for b in boxes])
    dist = np.hypot(cand[:, 0] - prev[0], cand[:, 1] - prev[1])
    k = int(np.argmin(dist))
    ratio = cand[k, 2] / max(prev[2], 1e-6)
    if dist[k] > prev[2] * (GATE_DISTANCE + GATE_GROWTH * missed):
        return None
    if not 1 / GATE_SCALE <= ratio <= GATE_SCALE:
        return None
    return boxes[k]


def _follow(detections: list[np.ndarray]) -> list[np.ndarray | None]:
    """Per detection frame, the tracked face's box or None: start at the initial face and
    walk forwards and backwards, each step taking the box nearest the last one kept."""
    tracked: list[np.ndarray | None] = [None] * len(detections)
    start = _initial_face(detections)
    if start is None:
        return tracked
    j0, box0 = start
    tracked[j0] = box0
    for order in (range(j0 + 1, len(detections)), range(j0 - 1, -1, -1)):
        previous, missed = box0, 0
        for j in order:
            tracked[j] = _nearest(detections[j], previous, missed)
            if tracked[j] is None:
                missed += 1
            else:
                previous, missed = tracked[j], 0
    return tracked


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of (N,) values over ``window`` frames (made odd). Near the
    ends the window shrinks symmetrically, so a steadily moving face is not lagged."""
    n, half = len(values), max(window, 1) // 2
    if half == 0 or n < 3:
        return values
    csum = np.concatenate([[0.0], np.cumsum(values)])
    i = np.arange(n)
    r = np.minimum(half, np.minimum(i, n - 1 - i))
    return (csum[i + r + 1] - csum[i - r]) / (2 * r + 1)


def track_face(
    frames_nhwc: np.ndarray,
    detector: FaceDetector,
    *,
    detect_every: int = 1,
    min_face_fraction: float = 0.5,
    smooth: int = 5,
) -> np.ndarray:
    """Follow one face through frames (N, H, W, 3): float64 (N, 3) rows of centre x,
    centre y and side (max of box width and height), in pixels, filled and smoothed.

    Detection runs on frames 0, k, 2k, ... and the last frame (k = ``detect_every``).
    Raises NoFaceError when the face is found in fewer than ``min_face_fraction`` of
    those frames (or in none).
    """
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    n = len(frames_nhwc)
    probe = np.unique(np.append(np.arange(0, n, detect_every), n - 1))
    detections = [
        np.asarray(detector.detect(frames_nhwc[i]), np.float64).reshape(-1, 4) for i in probe
    ]
    tracked = _follow(detections)
    found = [j for j, box in enumerate(tracked) if box is not None]
    if not found or len(found) < min_face_fraction * len(probe):
        raise NoFaceError(
            f"face found in {len(found)} of {len(probe)} frames checked "
            f"(need {min_face_fraction:.0%})"
        )
    known = np.stack([_centre_side(tracked[j]) for j in found])
    frames = np.arange(n)
    track = np.stack([np.interp(frames, probe[found], known[:, c]) for c in range(3)], axis=1)
    return np.stack([_moving_average(track[:, c], smooth) for c in range(3)], axis=1)


def _place(start: float, side: int, length: int) -> int:
    """First pixel of a crop of ``side`` along an axis of ``length``: kept inside the image
    when it fits, else covering the whole axis (the rest is padding)."""
    low, high = min(0, length - side), max(0, length - side)
    return int(np.clip(round(start), low, high))


def crop_square(frame_hwc: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """A square of ``side`` pixels centred near (cx, cy), resized to (size, size, 3) uint8.

    The side is capped at the frame's longer side; a square that would leave the frame is
    shifted inside it, and where it is larger than the frame the rest is black.
    """
    h, w = frame_hwc.shape[:2]
    side_px = max(1, int(round(min(side, max(h, w)))))
    x0, y0 = _place(cx - side_px / 2, side_px, w), _place(cy - side_px / 2, side_px, h)
    crop = np.zeros((side_px, side_px, 3), np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side_px, w), min(y0 + side_px, h)
    crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frame_hwc[sy0:sy1, sx0:sx1]
    if side_px == size:
        return crop
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def crop_faces(
    frames_nhwc: np.ndarray,
    detector: FaceDetector,
    size: int = 224,
    margin: float = 0.3,
    detect_every: int = 1,
    min_face_fraction: float = 0.5,
    smooth: int = 5,
) -> np.ndarray:
    """RGB uint8 frames (N, H, W, 3) -> face crops (N, size, size, 3) uint8.

    The crop side is the tracked face's side times ``1 + margin``; see :func:`track_face`
    for tracking and :func:`crop_square` for clipping. Raises NoFaceError when the face is
    found in fewer than ``min_face_fraction`` of the frames checked.
    """
    if frames_nhwc.ndim != 4 or frames_nhwc.shape[-1] != 3 or frames_nhwc.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 frames (N, H, W, 3), got {frames_nhwc.dtype} {frames_nhwc.shape}"
        )
    if len(frames_nhwc) == 0:
        raise ValueError("no frames to crop")
    track = track_face(
        frames_nhwc,
        detector,
        detect_every=detect_every,
        min_face_fraction=min_face_fraction,
        smooth=smooth,
    )
    crops = [
        crop_square(frame, cx, cy, side * (1.0 + margin), size)
        for frame, (cx, cy, side) in zip(frames_nhwc, track, strict=True)
    ]
    return np.stack(crops)
