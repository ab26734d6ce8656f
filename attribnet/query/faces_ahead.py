"""Query videos cropped ahead of the model: a background thread crops the faces of one
video after another into the face cache (:func:`attribnet.data.preprocess.run_preprocess`, the
recipe's settings) while the caller runs the model on the videos already cropped.

Decoding and cropping are mostly native code that releases the GIL (the decoder, OpenCV's
resize and detector), so on a CPU they overlap the model's forward pass instead of waiting
for it: benchmarks/LOG.md, "Query speed on a CPU". The caller gets one video at a time
and runs the model on that video's clips alone, so a video's answer does not depend on
which other videos were queried with it or on how fast each stage ran (batched with other
videos, the floats of a convolution change in their last bits with the batch).

Closing (the ``with`` block's end, also on an error or Ctrl-C in the caller) tells the
thread to stop after the video in progress and waits for it, so nothing writes into a
temporary cache after it is removed.

A video that cannot be used is not logged here: :meth:`FacesAhead.failures` hands its reason
to the caller, whose answer lists it (the query's table prints one line per failed video).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from attribnet.data.manifest import ManifestRow

if TYPE_CHECKING:
    from attribnet.config import Recipe
    from attribnet.data.cache import CacheEntry, FaceCache

_END = object()


class _Stopped(Exception):
    """Raised in the cropping thread to end it early."""


class FacesAhead:
    """Crops ``paths`` into ``cache_dir`` in a background thread, started on ``with``.
    Iterate it for the usable videos, then read :meth:`failures`."""

    def __init__(self, recipe: Recipe, paths: Sequence[str], cache_dir: str):
        self.recipe, self.paths, self.cache_dir = recipe, list(paths), cache_dir
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._crop, name="attribnet-faces", daemon=True)
        self._report: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._too_short: dict[str, str] = {}
        self._used: set[str] = set()

    def __enter__(self) -> FacesAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _crop(self) -> None:
        from attribnet.data.preprocess import run_preprocess
        from attribnet.data.sources import preprocess_settings

        rows = [ManifestRow(path=str(p), label="query") for p in self.paths]
        try:
            _, self._report = run_preprocess(
                rows, self.cache_dir, **preprocess_settings(self.recipe), progress=False,
                on_video=self._cropped, quiet=True,
            )  # fmt: skip
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc
        finally:
            self._queue.put(_END)

    def _cropped(self, cache: FaceCache, row: ManifestRow) -> None:
        if self._stop.is_set():
            raise _Stopped
        self._queue.put((cache, row.path))

    def __iter__(self) -> Iterator[tuple[FaceCache, str, CacheEntry]]:
        """(cache, path, entry) of each usable video as soon as it is cropped (those already
        in the cache first, then the others in input order). Re-raises in the caller's
        thread what stopped the cropping (a cache made with other settings, a bad setting)."""
        while (item := self._queue.get()) is not _END:
            cache, path = item
            entry = self._usable(cache, path)
            if entry is not None:
                self._used.add(path)
                yield cache, path, entry
        if self._error is not None:
            raise self._error

    def _usable(self, cache: FaceCache, path: str) -> CacheEntry | None:
        """The video's cache entry when it has faces enough for a clip, else None."""
        entry = cache.entry_for(path)
        need = self.recipe.data.num_frames
        if entry is not None and entry.num_frames < need:
            self._too_short[path] = f"only {entry.num_frames} face frames, a clip needs {need}"
            return None
        return entry

    def failures(self) -> dict[str, str]:
        """Path -> reason for each video that was not usable (after the iteration)."""
        report = self._report or {"skipped": {}, "failed": {}}
        failures = {**report["skipped"], **report["failed"], **self._too_short}
        unused = [p for p in self.paths if p not in self._used]
        return {p: failures.get(p, "not preprocessed (see the log)") for p in unused}
