"""Folders of frame images (DFDM's pre-cropped faces) read as videos."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from attribnet.data.manifest import IMAGE_SUFFIXES
from attribnet.data.video.frame_source import FrameSource, one_line
from attribnet.errors import VideoError


def natural_key(name: str) -> list[Any]:
    """Sort key that orders digit runs by value: Frame2 < Frame10 (case-insensitive)."""
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", name))]


def read_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """One image file as RGB uint8 (H, W, 3): greyscale is replicated, alpha dropped,
    16-bit scaled to 8-bit. Raises VideoError when it cannot be read."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise VideoError(f"{path}: cannot read ({one_line(exc)})") from exc
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise VideoError(f"{path}: not a readable image")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise VideoError(f"{path}: unsupported image type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


class FrameFolderSource(FrameSource):
    """A folder of frame images (png/jpg/jpeg/bmp, any case) in natural order.

    All frames must have one size (that of the first frame); a frame of another size is a
    VideoError when it is read.
    """

    backend = "folder"

    def __init__(self, path: str | os.PathLike[str], timeout_s: float | None = 60.0):
        super().__init__(path, timeout_s)
        try:
            names = [p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        except OSError as exc:
            raise VideoError(f"{self.path}: cannot list folder ({one_line(exc)})") from exc
        self.files = sorted((p for p in names if p.is_file()), key=lambda p: natural_key(p.name))
        if not self.files:
            raise VideoError(f"{self.path}: folder has no frame images {IMAGE_SUFFIXES}")
        self._num_frames = len(self.files)
        self._shape = read_image_rgb(self.files[0]).shape

    def _read(self, indices: np.ndarray) -> np.ndarray:
        frames = []
        for i in indices.tolist():
            frame = read_image_rgb(self.files[i])
            if frame.shape != self._shape:
                raise VideoError(
                    f"{self.path}: frame {self.files[i].name} is {frame.shape[1]}x"
                    f"{frame.shape[0]}, {self.files[0].name} is {self._shape[1]}x"
                    f"{self._shape[0]}; all frames of a folder need one size"
                )
            frames.append(frame)
        return np.stack(frames)
