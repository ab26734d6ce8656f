"""The interface of every backend: :class:`FrameSource`, and the one-line error messages
they share."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import numpy as np

from attribnet.data.video.timeout import DecodeTimeoutError, call_with_timeout
from attribnet.errors import VideoError

_NOISE = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*(Error:\s*)?|^\[Errno -?\d+\]\s*")


def one_line(exc: BaseException, limit: int = 200) -> str:
    """A short single-line description of an exception (decord's log prefix and PyAV's
    errno removed)."""
    text = " ".join(str(exc).split())
    text = _NOISE.sub("", text) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        if len(unique) == len(idx) and np.array_equal(unique, idx):
            return frames  # already sorted and unique (the usual case): no copy
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
