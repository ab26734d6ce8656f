"""Reading frames from videos and frame folders behind one interface.

``open_clip_source(path)`` returns a :class:`FrameSource`: ``len(source)`` is the frame
count and ``source.get_frames(indices)`` returns RGB uint8 frames (N, H, W, 3) in the
order of ``indices`` (repeats allowed). Three backends:

- :class:`DecordSource`: decord's ``VideoReader.get_batch`` (the default for files).
- :class:`PyAVSource`: PyAV, decoding sequentially from the start (seek-free, exact; the
  fallback, and the backend where decord has no wheel).
- :class:`FrameFolderSource`: a folder of png/jpg/bmp frames in natural order.

Frame-count sanity. Containers can over-report frames, and decord then errors or hangs
in ``get_batch``. A decord source therefore cross-checks its length with PyAV's probe
(:func:`probe_frame_count`: the container's count when it agrees with duration x rate,
else the number of demuxed packets) and uses the smaller one. PyAV's sequential decode
turns any remaining over-report into a clear ``VideoError``. With ``backend="auto"`` a
decord error in ``get_batch`` is retried with PyAV (and later calls use PyAV directly).

Time bounds. Every open and every ``get_frames`` runs in a daemon worker thread and is
abandoned after ``timeout_s`` seconds with a ``VideoError``. A hung decord (or FFmpeg) call
cannot be killed from Python: its thread keeps running (and holding memory) until the call
returns or the process exits, and its source refuses further reads.

Every failure to read a file (missing, not a video, zero frames, truncated, corrupt,
timed out) is a ``VideoError`` with a one-line message that names the file.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import av
import cv2
import numpy as np

from attribnet.data.manifest import IMAGE_SUFFIXES
from attribnet.errors import DataError, VideoError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav")

_T = TypeVar("_T")
_AV_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError, RuntimeError)
_NOISE = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*(Error:\s*)?|^\[Errno -?\d+\]\s*")


class DecodeTimeoutError(VideoError):
    """Decoding did not finish within the time bound (the worker thread was abandoned)."""


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """A short single-line description of an exception (decord's log prefix and PyAV's
    errno removed)."""
    text = " ".join(str(exc).split())
    text = _NOISE.sub("", text) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def call_with_timeout(fn: Callable[[], _T], timeout_s: float | None, what: str) -> _T:
    """Run ``fn()`` in a daemon thread; wait at most ``timeout_s`` seconds (None or <= 0: no
    bound). Exceptions of ``fn`` are re-raised here.

    On timeout raises :class:`DecodeTimeoutError` naming ``what``. The thread cannot be
    killed; it is abandoned (daemon, so it does not block interpreter exit).
    """
    if timeout_s is None or timeout_s <= 0:
        return fn()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"attribnet-decode {what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise DecodeTimeoutError(f"{what}: decoding timed out after {timeout_s:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def natural_key(name: str) -> list[Any]:
    """Sort key that orders digit runs by value: Frame2 < Frame10 (case-insensitive)."""
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", name))]


def _stack(frames: Iterable[np.ndarray], path: Path) -> np.ndarray:
    frames = list(frames)
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoError(f"{path}: frame size changes within the video ({sorted(shapes)})")
    return np.stack(frames)


class FrameSource:
    """A video or frame folder: ``len()`` frames, read with :meth:`get_frames`.

    Subclasses set ``_num_frames`` and implement :meth:`_read`. Use as a context manager
    or call :meth:`close`.
    """

    backend = ""

    def __init__(self, path: str | os.PathLike[str], timeout_s: float | None = 60.0):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._num_frames = 0
        self._abandoned = False

    def __len__(self) -> int:
        return self._num_frames

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, frames={len(self)})"

    def get_frames(self, indices: np.ndarray | Iterable[int]) -> np.ndarray:
        """Frames at ``indices`` (1-D ints in [0, len)) as RGB uint8 (N, H, W, 3), in the
        order given. Raises VideoError on decode failure or timeout."""
        idx = self._check_indices(indices)
        if self._abandoned:
            raise VideoError(f"{self.path}: an earlier read timed out; open the file again")
        unique, inverse = np.unique(idx, return_inverse=True)
        try:
            frames = call_with_timeout(
                lambda: self._read(unique), self.timeout_s, f"{self.path} ({self.backend})"
            )
        except DecodeTimeoutError:
            self._abandoned = True
            raise
        return frames[inverse.reshape(-1)]

    def _check_indices(self, indices: np.ndarray | Iterable[int]) -> np.ndarray:
        idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be a non-empty 1-D integer array, got {idx!r}")
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(
                f"{self.path}: frame indices must lie in [0, {len(self)}), "
                f"got {idx.min()}..{idx.max()}"
            )
        return idx.astype(np.int64)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        """Sorted unique indices (M,) -> frames (M, H, W, 3) uint8 RGB."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the decoder (a no-op where nothing is held)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _open_av(path: Path) -> Any:
    try:
        return av.open(str(path))
    except _AV_ERRORS as exc:
        raise VideoError(f"{path}: cannot open as video ({_one_line(exc)})") from exc


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
        stream = _video_stream(container, path)
        count = int(stream.frames or 0)
        if count <= 0 or not _plausible_count(count, stream):
            log.debug("%s: container reports %d frames; counting packets", path, count)
            try:
                count = sum(1 for packet in container.demux(stream) if packet.size)
            except _AV_ERRORS as exc:
                raise VideoError(f"{path}: cannot read packets ({_one_line(exc)})") from exc
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
                        found[decoded] = frame.to_ndarray(format="rgb24")
                    decoded += 1
                    if decoded > last:
                        break
            except _AV_ERRORS as exc:
                raise VideoError(
                    f"{self.path}: corrupt or truncated, decoding failed after {decoded} of "
                    f"{len(self)} frames ({_one_line(exc)})"
                ) from exc
        if len(found) < len(indices):
            raise VideoError(
                f"{self.path}: container reports {len(self)} frames but only {decoded} "
                "decode (truncated?)"
            )
        return _stack((found[i] for i in indices.tolist()), self.path)


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
            raise VideoError(f"{self.path}: decord cannot open it ({_one_line(exc)})") from exc

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
                raise VideoError(
                    f"{self.path}: decord failed to decode ({_one_line(exc)})"
                ) from exc
            log.info("%s: decord failed (%s); retrying with PyAV", self.path, _one_line(exc))
        self._pyav = PyAVSource(self.path, timeout_s=None)
        self._num_frames = min(self._num_frames, len(self._pyav))
        return self._pyav._read(indices)

    def close(self) -> None:
        """Drop the decord reader (decord frees its buffers when the reader is deleted)."""
        self._reader = None
        self._pyav = None


def read_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """One image file as RGB uint8 (H, W, 3): greyscale is replicated, alpha dropped,
    16-bit scaled to 8-bit. Raises VideoError when it cannot be read."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise VideoError(f"{path}: cannot read ({_one_line(exc)})") from exc
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
            raise VideoError(f"{self.path}: cannot list folder ({_one_line(exc)})") from exc
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
    except VideoError as exc:
        log.info("%s; trying PyAV", exc)
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
