"""The face-clip cache: uint8 face crops on disk, read back memory-mapped.

Layout of a cache folder::

    meta.json       crop settings the cache was made with (size, margin, detector,
                    face check)
    clips/<key>.npy one array (N, S, S, 3) uint8 RGB per finished video
    index.jsonl     one line per finished video (its manifest row, frame count, and the
                    video file's size and mtime when it was cropped)
    skipped.jsonl   one line per video that was skipped, with the reason and the video
                    file's size and mtime then
    h264/           H.264 variants of the clips, with data.augment.h264_cache
                    (attribnet.data.h264_variants)

A clip file is renamed into place before its index line is appended, so a killed run
loses at most the video in progress and a re-run skips everything already listed.

A video is keyed by its resolved path. When the file at that path has since changed (other
size or mtime), its entry is stale: it is not listed, not found and not ``done``, so the
next preprocess crops it again and the new line replaces the old one. When the video file
is absent (a cache moved to another machine), the entry is used as it is. A skipped video
is keyed the same way: once its file changes (fixed, replaced), it is tried again.
Reading the ``*.jsonl`` files ignores a torn last line (see :mod:`attribnet.files.jsonl`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attribnet.data.manifest import ManifestRow
from attribnet.errors import DataError
from attribnet.files.atomic import atomic_path, write_json
from attribnet.files.jsonl import append_jsonl, read_jsonl, write_jsonl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheEntry:
    """A finished video in the cache: its manifest row, file key and frame count, and the
    video file's (size, mtime_ns) when it was cropped (None in caches made before)."""

    key: str
    row: ManifestRow
    num_frames: int
    stamp: tuple[int, int] | None = None

    def is_current(self) -> bool:
        """False when the video file exists and changed since it was cropped."""
        now = file_stamp(self.row.path)
        return self.stamp is None or now is None or now == self.stamp


def video_key(path: str) -> str:
    """The cache key of a video: a hash of its resolved path."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:20]


def file_stamp(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class SkipRecord:
    """A video that was skipped, why, and its file's (size, mtime_ns) then (None when the
    file was absent). It stays skipped only while the file keeps that size and mtime."""

    path: str
    reason: str
    stamp: tuple[int, int] | None

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> SkipRecord | None:
        """A record of skipped.jsonl; None for one written before stamps (retried once)."""
        if "stamp" not in record:
            return None
        stamp = tuple(record["stamp"]) if record["stamp"] else None
        return cls(record["path"], record["reason"], stamp)

    def is_current(self) -> bool:
        """Whether the file is as it was when skipped (same size and mtime, or still absent)."""
        return file_stamp(self.path) == self.stamp


class FaceCache:
    """A folder of face clips; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike[str], settings: dict[str, Any] | None = None):
        """Open (and with ``settings``, create) a cache.

        ``settings`` are the crop settings of a writer; opening an existing cache with
        different settings is an error, so one cache never mixes two crop styles.
        """
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if settings is None:
            if not meta_path.exists():
                raise DataError(f"no face cache at {self.root} (run attribnet-preprocess)")
            self.settings = json.loads(meta_path.read_text())
        else:
            if meta_path.exists():
                existing = json.loads(meta_path.read_text())
                if existing != settings:
                    raise DataError(
                        f"cache {self.root} was made with {existing}, not {settings}; "
                        "use another --out folder"
                    )
            else:
                (self.root / "clips").mkdir(parents=True, exist_ok=True)
                write_json(meta_path, settings)
            self.settings = settings
        self._entries: dict[str, CacheEntry] = {}
        for record in read_jsonl(self.root / "index.jsonl"):
            row = ManifestRow(**record["row"])
            stamp = tuple(record["stamp"]) if record.get("stamp") else None
            self._entries[record["key"]] = CacheEntry(
                record["key"], row, record["num_frames"], stamp
            )
        self._skipped: dict[str, SkipRecord] = {}
        for record in read_jsonl(self.root / "skipped.jsonl"):
            skip = SkipRecord.from_json(record)
            if skip is not None:
                self._skipped[skip.path] = skip

    @property
    def entries(self) -> list[CacheEntry]:
        """Finished videos whose files did not change since, in the order they were added."""
        current = [e for e in self._entries.values() if e.is_current()]
        if len(current) < len(self._entries):
            log.warning(
                "cache %s: %d video(s) changed since they were cropped; preprocess again",
                self.root, len(self._entries) - len(current),
            )  # fmt: skip
        return current

    @property
    def skipped(self) -> dict[str, str]:
        """Skipped videos whose files did not change since: path -> reason."""
        return {p: s.reason for p, s in self._skipped.items() if s.is_current()}

    def done(self, path: str) -> bool:
        """Whether a video is finished, or was skipped and its file has not changed since
        (a re-run need not touch it; a fixed file is tried again)."""
        if self.entry_for(path) is not None:
            return True
        skip = self._skipped.get(path)
        return skip is not None and skip.is_current()

    def add(self, row: ManifestRow, frames_nhwc: np.ndarray) -> CacheEntry:
        """Store a video's face crops (N, S, S, 3) uint8 and list it in the index."""
        if frames_nhwc.dtype != np.uint8 or frames_nhwc.ndim != 4 or frames_nhwc.shape[-1] != 3:
            raise ValueError(f"expected uint8 (N, S, S, 3), got {frames_nhwc.shape}")
        key = video_key(row.path)
        with atomic_path(self.root / "clips" / f"{key}.npy") as tmp:
            np.save(tmp, np.ascontiguousarray(frames_nhwc))
        entry = CacheEntry(key, row, int(frames_nhwc.shape[0]), file_stamp(row.path))
        append_jsonl(self.root / "index.jsonl", _index_record(entry))
        self._entries[key] = entry
        return entry

    def refuse(self, refused: list[tuple[CacheEntry, str]]) -> None:
        """Turn finished videos into skipped ones, each with its reason (e.g. a check that
        the cache was made without refuses them); their clips are deleted."""
        if not refused:
            return
        for entry, reason in refused:
            self.skip(entry.row, reason)
        keys = {entry.key for entry, _ in refused}
        self._entries = {k: e for k, e in self._entries.items() if k not in keys}
        write_jsonl(self.root / "index.jsonl", [_index_record(e) for e in self._entries.values()])
        for key in keys:
            (self.root / "clips" / f"{key}.npy").unlink(missing_ok=True)

    def update_settings(self, settings: dict[str, Any]) -> None:
        """Record new settings in meta.json, for a cache that now holds what they make."""
        write_json(self.root / "meta.json", settings)
        self.settings = settings

    def skip(self, row: ManifestRow, reason: str) -> None:
        """Record that a video was skipped, why, and its file's size and mtime now."""
        skip = SkipRecord(row.path, reason, file_stamp(row.path))
        append_jsonl(self.root / "skipped.jsonl", asdict(skip))
        self._skipped[row.path] = skip

    def load(self, entry: CacheEntry) -> np.ndarray:
        """The clip's frames (N, S, S, 3) uint8, memory-mapped (read-only)."""
        path = self.root / "clips" / f"{entry.key}.npy"
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(
                f"cache file {path} is unreadable ({exc}); delete it and re-run preprocess"
            ) from exc

    def entry_for(self, path: str) -> CacheEntry | None:
        """The finished, current entry of a video path, if any."""
        entry = self._entries.get(video_key(path))
        return entry if entry is not None and entry.is_current() else None


def _index_record(entry: CacheEntry) -> dict[str, Any]:
    """An entry's line in index.jsonl."""
    return {"key": entry.key, "row": asdict(entry.row), "num_frames": entry.num_frames,
            "stamp": entry.stamp}  # fmt: skip
