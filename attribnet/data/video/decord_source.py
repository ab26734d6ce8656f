"""Video files read with decord, their length checked against PyAV's.

Frame-count sanity. Containers can over-report frames, and decord then errors or hangs
in ``get_batch``. A decord source therefore cross-checks its length with PyAV's probe
(:func:`probe_frame_count`: the container's count when it agrees with duration x rate,
else the number of demuxed packets) and uses the smaller one. PyAV's sequential decode
turns any remaining over-report into a clear ``VideoError``. With ``backend="auto"`` a
decord error in ``get_batch`` is retried with PyAV (and later calls use PyAV directly).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from attribnet.data.video.frame_source import FrameSource, one_line
from attribnet.data.video.pyav_source import PyAVSource, probe_frame_count
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

    ``len()`` is the smaller of decord's count and :func:`probe_frame_count`. With
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
        self._reader = call_with_timeout(
            lambda: self._open_reader(decord), timeout_s, f"{self.path} (decord open)"
        )
        self._num_frames = call_with_timeout(
            lambda: self._sane_count(len(self._reader)), timeout_s, f"{self.path} (probe)"
        )

    def _open_reader(self, decord: Any) -> Any:
        try:
            return decord.VideoReader(str(self.path), ctx=decord.cpu(0))
        except Exception as exc:  # decord raises RuntimeError, DECORDError, TVM errors
            raise VideoError(f"{self.path}: decord cannot open it ({one_line(exc)})") from exc

    def _sane_count(self, reported: int) -> int:
        try:
            probed = probe_frame_count(self.path)
        except VideoError as exc:
            log.debug("%s: PyAV cannot probe it (%s); trusting decord's count", self.path, exc)
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
            log.info("%s: decord failed (%s); retrying with PyAV", self.path, one_line(exc))
        self._pyav = PyAVSource(self.path, timeout_s=None)
        self._num_frames = min(self._num_frames, len(self._pyav))
        return self._pyav._read(indices)

    def close(self) -> None:
        """Drop the decord reader (decord frees its buffers when the reader is deleted)."""
        self._reader = None
        self._pyav = None
