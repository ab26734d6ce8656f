"""Video files decoded with PyAV, and the frame count probed from the container without
decoding."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import av
import numpy as np

from attribnet.data.codec import to_rgb
from attribnet.data.video.frame_source import FrameSource, one_line
from attribnet.data.video.timeout import call_with_timeout
from attribnet.errors import VideoError

log = logging.getLogger(__name__)

_AV_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError, RuntimeError)


def _stack(frames: Iterable[np.ndarray], path: Path) -> np.ndarray:
    frames = list(frames)
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoError(f"{path}: frame size changes within the video ({sorted(shapes)})")
    return np.stack(frames)


def _open_av(path: Path) -> Any:
    try:
        return av.open(str(path))
    except _AV_ERRORS as exc:
        why = getattr(exc, "strerror", None) or one_line(exc)  # FFmpeg's, less the path
        raise VideoError(f"{path}: cannot open as video ({why})") from exc


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise VideoError(f"{path}: no video stream")
    return container.streams.video[0]


def _plausible_count(reported: int, stream: Any) -> bool:
    """Whether a container's frame count agrees with its duration x frame rate (or
    cannot be checked because either is missing)."""
    if not stream.duration or not stream.time_base or not stream.average_rate:
        return True
    estimate = float(stream.duration * stream.time_base * stream.average_rate)
    return abs(reported - estimate) <= max(2.0, 0.05 * estimate)


def probe_frame_count(path: str | os.PathLike[str]) -> int:
    """Frames in the first video stream, without decoding: the container's count when it
    is plausible, else the number of non-empty packets demuxed (one per frame for the
    codecs of face-swap datasets). Raises VideoError when there are none."""
    path = Path(path)
    with _open_av(path) as container:
        return _count_frames(container, _video_stream(container, path), path)


def probe_video(path: str | os.PathLike[str]) -> int | None:
    """:func:`probe_frame_count`, but None when the frames of a file that opens as a video
    cannot be counted; VideoError only for a file that is no video to FFmpeg (it cannot be
    opened as one, or has no video stream)."""
    path = Path(path)
    with _open_av(path) as container:
        stream = _video_stream(container, path)
        try:
            return _count_frames(container, stream, path)
        except VideoError as exc:
            log.debug("%s: PyAV cannot count its frames (%s)", path, exc)
            return None


def _count_frames(container: Any, stream: Any, path: Path) -> int:
    count = int(stream.frames or 0)
    if count <= 0 or not _plausible_count(count, stream):
        log.debug("%s: container reports %d frames; counting packets", path, count)
        try:
            count = sum(1 for packet in container.demux(stream) if packet.size)
        except _AV_ERRORS as exc:
            raise VideoError(f"{path}: cannot read packets ({one_line(exc)})") from exc
    if count <= 0:
        raise VideoError(f"{path}: video has no frames")
    return count


class PyAVSource(FrameSource):
    """A video file decoded with PyAV from the start up to the last requested frame.

    Seek-free and exact (no keyframe-accuracy issues); costs a decode of the prefix, which
    for short face-swap clips and evenly spaced indices is about the whole video anyway.
    """

    backend = "pyav"

    def __init__(self, path: str | os.PathLike[str], timeout_s: float | None = 60.0):
        super().__init__(path, timeout_s)
        self._num_frames = call_with_timeout(
            lambda: probe_frame_count(self.path), timeout_s, f"{self.path} (pyav open)"
        )

    def _read(self, indices: np.ndarray) -> np.ndarray:
        wanted = set(indices.tolist())
        last = int(indices[-1])
        found: dict[int, np.ndarray] = {}
        decoded = 0
        with _open_av(self.path) as container:
            stream = _video_stream(container, self.path)
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    if decoded in wanted:
                        found[decoded] = to_rgb(frame)
                    decoded += 1
                    if decoded > last:
                        break
            except _AV_ERRORS as exc:
                raise VideoError(
                    f"{self.path}: corrupt or truncated, decoding failed after {decoded} of "
                    f"{len(self)} frames ({one_line(exc)})"
                ) from exc
        if len(found) < len(indices):
            raise VideoError(
                f"{self.path}: container reports {len(self)} frames but only {decoded} "
                "decode (truncated?)"
            )
        return _stack((found[i] for i in indices.tolist()), self.path)
