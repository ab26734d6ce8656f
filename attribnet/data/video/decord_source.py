"""Video files read with decord, their length checked against PyAV's.

Frame-count sanity. Containers can over-report frames, and decord then errors or hangs
in ``get_batch``. A decord source therefore cross-checks its length with PyAV's probe
(:func:`probe_frame_count`: the container's count when it agrees with duration x rate,
else the number of demuxed packets) and uses the smaller one. PyAV's sequential decode
turns any remaining over-report into a clear ``VideoError``. With ``backend="auto"`` a
decord error in ``get_batch`` is retried with PyAV (and later calls use PyAV directly).

Files that are no video. PyAV probes a file before decord opens it, and one that FFmpeg
cannot open as a video (a text file, a truncated mp4 without its header) is a
``VideoError`` without decord ever seeing it: decord's C++ core writes its own error line
to stderr on such files (``ERROR opening: ...``, ``Failed to seek ...``), which its
logging level does not silence. Redirecting file descriptor 2 around decord's calls would
silence it too, but the descriptor is the whole process's: the query crops faces in a
background thread while the model runs, and for that long every other thread's stderr (its
log lines, a traceback) would be swallowed or delayed, and left so by a decord call that
hangs past its time bound. The probe was made anyway (the frame-count check), now first.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from attribnet.data.video.frame_source import FrameSource, one_line
from attribnet.data.video.pyav_source import PyAVSource, probe_video
from attribnet.data.video.timeout import call_with_timeout
from attribnet.errors import VideoError

log = logging.getLogger(__name__)


def _import_decord() -> Any:
    """Import decord and silence its stderr logging; ImportError when unavailable."""
    try:
        import decord
    except (ImportError, OSError) as exc:
        raise ImportError(f"decord is unavailable ({exc})") from exc
    decord.logging.set_level(decord.logging.QUIET)
    return decord


def _to_numpy(batch: Any) -> np.ndarray:
    """decord's batch as numpy, whatever bridge (native, torch) is set globally."""
    if hasattr(batch, "asnumpy"):
        return batch.asnumpy()
    if hasattr(batch, "numpy"):
        return batch.numpy()
    return np.asarray(batch)


class DecordSource(FrameSource):
    """A video file read with decord's ``get_batch``.

    ``len()`` is the smaller of decord's count and PyAV's (:func:`probe_video`); a file
    PyAV cannot open as a video is a VideoError before decord opens it. With
    ``fallback=True`` a decord error while reading frames is retried with
    :class:`PyAVSource` (within the same time bound), and later reads use PyAV. Raises
    ImportError when decord is not installed.
    """

    backend = "decord"

    def __init__(
        self,
        path: str | os.PathLike[str],
        timeout_s: float | None = 60.0,
        fallback: bool = False,
    ):
        super().__init__(path, timeout_s)
        decord = _import_decord()
        self.fallback = fallback
        self._pyav: PyAVSource | None = None
        probed = call_with_timeout(lambda: probe_video(self.path), timeout_s,
                                   f"{self.path} (probe)")  # fmt: skip
        self._reader = call_with_timeout(
            lambda: self._open_reader(decord), timeout_s, f"{self.path} (decord open)"
        )
        self._num_frames = self._sane_count(len(self._reader), probed)

    def _open_reader(self, decord: Any) -> Any:
        try:
            return decord.VideoReader(str(self.path), ctx=decord.cpu(0))
        except Exception as exc:  # decord raises RuntimeError, DECORDError, TVM errors
            raise VideoError(f"{self.path}: decord cannot open it ({one_line(exc)})") from exc

    def _sane_count(self, reported: int, probed: int | None) -> int:
        """The smaller of decord's count and PyAV's (decord's when PyAV has none)."""
        if probed is None:
            log.debug("%s: PyAV cannot count its frames; trusting decord's count", self.path)
            probed = reported
        count = min(reported, probed)
        if reported != probed:
            log.info(
                "%s: decord reports %d frames, PyAV %d; using %d",
                self.path,
                reported,
                probed,
                count,
            )
        if count <= 0:
            raise VideoError(f"{self.path}: video has no frames")
        return count

    def _read(self, indices: np.ndarray) -> np.ndarray:
        if self._pyav is not None:
            return self._pyav._read(indices)
        try:
            return _to_numpy(self._reader.get_batch(indices.tolist()))
        except Exception as exc:  # decord raises RuntimeError, DECORDError, TVM errors
            if not self.fallback:
                raise VideoError(f"{self.path}: decord failed to decode ({one_line(exc)})") from exc
            log.debug("%s: decord failed (%s); retrying with PyAV", self.path, one_line(exc))
        self._pyav = PyAVSource(self.path, timeout_s=None)
        self._num_frames = min(self._num_frames, len(self._pyav))
        return self._pyav._read(indices)

    def close(self) -> None:
        """Drop the decord reader (decord frees its buffers when the reader is deleted)."""
        self._reader = None
        self._pyav = None
