"""Opening a video file or frame folder with the backend asked for (``auto``: decord,
else PyAV)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from attribnet.data.video.decord_source import DecordSource
from attribnet.data.video.frame_folder import FrameFolderSource
from attribnet.data.video.frame_source import FrameSource
from attribnet.data.video.pyav_source import PyAVSource
from attribnet.errors import DataError, VideoError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav")

_decord_missing_logged = False


def _open_auto(path: Path, timeout_s: float | None) -> FrameSource:
    global _decord_missing_logged
    try:
        source: FrameSource = DecordSource(path, timeout_s, fallback=True)
    except ImportError as exc:
        if not _decord_missing_logged:
            log.info("%s; decoding with PyAV", exc)
            _decord_missing_logged = True
        return PyAVSource(path, timeout_s)
    except VideoError as exc:  # PyAV then says why, when it cannot read the file either
        log.debug("%s; trying PyAV", exc)
        return PyAVSource(path, timeout_s)
    log.debug("%s: decoding with decord", path)
    return source


def open_clip_source(
    path: str | os.PathLike[str], backend: str = "auto", timeout_s: float | None = 60.0
) -> FrameSource:
    """Open a video file or frame folder for reading.

    ``backend`` (files only; a folder is always a :class:`FrameFolderSource`): ``auto``
    uses decord and falls back to PyAV when decord is missing or fails on the file,
    ``decord`` / ``pyav`` use exactly that one. ``timeout_s`` bounds opening and each
    ``get_frames`` call (None or <= 0: unbounded).

    Raises VideoError for an unreadable input, DataError when ``backend="decord"`` is asked
    for but decord is not installed, ValueError for an unknown backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; use one of {BACKENDS}")
    path = Path(path)
    if path.is_dir():
        return FrameFolderSource(path, timeout_s)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if not path.is_file():
        raise VideoError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    if backend == "pyav":
        return PyAVSource(path, timeout_s)
    if backend == "decord":
        try:
            return DecordSource(path, timeout_s)
        except ImportError as exc:
            raise DataError(
                f"{exc}: pip install decord (no wheel for macOS arm64), or use backend "
                "'pyav' or 'auto'"
            ) from exc
    return _open_auto(path, timeout_s)
