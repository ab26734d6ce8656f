"""H.264 variants of cached face clips, made once: :class:`H264Variants`.

Re-encoding a clip with H.264 in every epoch (``data.augment.h264_p``) is the slowest part
of the loader: a clip of 10 faces of 224 px at crf 0 takes about 45 ms of one core. With
``data.augment.h264_cache: true`` each cached clip is instead re-encoded once per crf of
``data.augment.h264_crf``, whole, and kept beside the face cache; a clip whose draw says
H.264 at crf c reads its frames from the variant at crf c (:class:`~attribnet.data.clips.
ClipDataset`). The draws are the same as without the cache (same generator, same order),
so the same clips get the same crf and JPEG quality; what differs is the encoded content:
the variant is the whole cached video encoded as one stream, as a video at that crf is
(DFDM's qualities are whole videos), where the per-epoch augmentation encodes the T sampled
frames alone, as a short video of frames far apart. The frames of a variant are fixed,
not re-encoded each epoch: identical every time a clip draws that crf.

Layout, inside the face cache folder::

    h264/crf<c>/<key>-<stamp>.npy   the clip (N, S, S, 3) uint8 through
                                    attribnet.data.codec.h264_roundtrip at crf c

``<stamp>`` hashes the entry's frame count and its video file's size and mtime, so a video
cropped again gets new variants (the old file is deleted when they are made). Each file is
written atomically, so making them is resumable: a killed run loses at most the one in
progress, and :meth:`H264Variants.make` skips what exists. Disk: one more face cache per
crf (at 64 frames of 224 px, 9.6 MB per video and crf).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from attribnet.data.cache import CacheEntry, FaceCache
from attribnet.data.codec import h264_roundtrip
from attribnet.errors import DataError
from attribnet.files.atomic import atomic_path

log = logging.getLogger(__name__)

FOLDER = "h264"


class H264Variants:
    """The H.264 variants at ``crfs`` of the clips of ``cache``."""

    def __init__(self, cache: FaceCache, crfs: Sequence[int]):
        if not crfs or not all(0 <= int(c) <= 51 for c in crfs):
            raise ValueError(f"crfs must be non-empty values in 0..51, got {list(crfs)}")
        self.cache, self.crfs = cache, tuple(int(c) for c in crfs)
        self.root = Path(cache.root) / FOLDER

    def __repr__(self) -> str:
        return f"H264Variants({self.root}, crfs={self.crfs})"

    def path(self, entry: CacheEntry, crf: int) -> Path:
        """Where the variant of ``entry`` at ``crf`` is (or will be) stored."""
        stamp = json.dumps([entry.num_frames, entry.stamp])
        digest = hashlib.sha1(stamp.encode()).hexdigest()[:10]
        return self.root / f"crf{int(crf)}" / f"{entry.key}-{digest}.npy"

    def load(self, entry: CacheEntry, crf: int) -> np.ndarray:
        """The variant (N, S, S, 3) uint8 of ``entry`` at ``crf``, memory-mapped; made
        first when it is missing (in a loader worker too: the write is atomic)."""
        path = self.path(entry, crf)
        if not path.exists():
            self._make(entry, crf)
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"H.264 variant {path} is unreadable ({exc}); delete it") from exc

    def make(self, entries: Sequence[CacheEntry], progress: bool = True) -> int:
        """Make the missing variants of ``entries`` at every crf; returns how many were made.
        Stale variants of those entries (made from an earlier crop) are deleted."""
        todo = [(e, c) for e in entries for c in self.crfs if not self.path(e, c).exists()]
        bar = tqdm(todo, desc="H.264 variants", unit="clip",
                   disable=not (progress and sys.stderr.isatty()))  # fmt: skip
        for entry, crf in bar:
            self._make(entry, crf)
        if todo:
            log.info("H.264 variants at crf %s: made %d, in %s", list(self.crfs), len(todo),
                     self.root)  # fmt: skip
        return len(todo)

    def _make(self, entry: CacheEntry, crf: int) -> None:
        path = self.path(entry, crf)
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = np.asarray(self.cache.load(entry))
        with atomic_path(path) as tmp:
            np.save(tmp, h264_roundtrip(frames, crf))
        for stale in path.parent.glob(f"{entry.key}-*.npy"):
            if stale != path:
                stale.unlink(missing_ok=True)
