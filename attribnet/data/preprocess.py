"""Decode every video of a manifest once, crop its face, and store the crops in a cache.

Each video keeps ``max_frames`` evenly spaced frames (all of a shorter video; 0 = all).
A video that cannot be decoded or has no face is skipped and listed with its reason; the
run goes on. Whatever the detector, the face crops of every video must show a face (the
face check, :class:`attribnet.data.face_check.FaceCheck`): a video of noise, of one colour
or without a face in most frames is skipped as "no face". Running again resumes: finished
and skipped videos are not touched again (until their file changes: a fixed video is
tried again), so an interrupted run loses at most the video in progress. At the end
``<cache>/report.json`` lists what was done, skipped and failed.

One preprocess at a time per cache: ``<cache>/preprocess.lock`` names the running one, and
a second run on the same cache waits for it to finish, then does only what is left. The
command is ``attribnet-preprocess`` (:mod:`attribnet.cli.preprocess`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from attribnet.data.cache import FaceCache
from attribnet.data.face_check import FaceCheck
from attribnet.data.faces import (
    FaceDetector,
    build_detector,
    crop_faces,
    detector_name,
)
from attribnet.data.manifest import ManifestRow
from attribnet.data.sampling import sample_indices
from attribnet.data.video import BACKENDS, open_clip_source
from attribnet.errors import AttribnetError, ConfigError, NoFaceError, VideoError
from attribnet.files.atomic import remove_partial_files, write_json
from attribnet.files.lock import FileLock

log = logging.getLogger(__name__)

DETECTOR_NAMES = ("haar", "none", "centre")
MAX_REPORTED_REASONS = 10
LOCK_NAME = "preprocess.lock"
LOCK_POLL_S = 2.0
NO_FACE = "no face"  # how the reason of every video skipped for NoFaceError begins


@dataclass
class _Tally:
    """What one run did: counts of this run and videos that failed unexpectedly."""

    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def frame_indices(num_frames: int, max_frames: int) -> np.ndarray:
    """Which frames of a video to keep: ``max_frames`` evenly spaced ones, or all of them
    when the video is not longer (or ``max_frames`` is 0). Int64 (K,), increasing."""
    if max_frames <= 0 or num_frames <= max_frames:
        return np.arange(num_frames)
    return sample_indices(num_frames, max_frames, "periodic")


def _check_settings(size: int, margin: float, max_frames: int, backend: str) -> None:
    if size < 8:
        raise ConfigError(f"face size must be >= 8 pixels, got {size}")
    if margin < 0:
        raise ConfigError(f"margin must be >= 0, got {margin}")
    if max_frames < 0:
        raise ConfigError(f"max_frames must be >= 0 (0 = all frames), got {max_frames}")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown video backend {backend!r}; use one of {BACKENDS}")


def _faces_of(
    row: ManifestRow,
    detector: FaceDetector,
    *,
    size: int,
    margin: float,
    max_frames: int,
    backend: str,
    timeout_s: float | None,
    face_check: FaceCheck | None,
) -> np.ndarray:
    """Decode one video's kept frames and crop its face: (K, size, size, 3) uint8.
    NoFaceError when the detector or the face check finds no face."""
    with open_clip_source(row.path, backend=backend, timeout_s=timeout_s) as source:
        frames = source.get_frames(frame_indices(len(source), max_frames))
    crops = crop_faces(frames, detector, size=size, margin=margin)
    if face_check is not None:
        face_check.check(crops)
    return crops


def _process(
    row: ManifestRow,
    cache: FaceCache,
    tally: _Tally,
    faces_kwargs: dict[str, Any],
    quiet: bool = False,
) -> None:
    """Add one video to the cache, or record why not (a warning, at debug level when
    ``quiet``); never raises for a bad video."""
    try:
        cache.add(row, _faces_of(row, **faces_kwargs))
        tally.done += 1
    except (VideoError, NoFaceError) as exc:
        reason = str(exc).removeprefix(f"{row.path}: ")
        if isinstance(exc, NoFaceError) and not reason.startswith(NO_FACE):
            reason = f"{NO_FACE}: {reason}"
        log.log(logging.DEBUG if quiet else logging.WARNING, "skipped %s: %s", row.path, reason)
        cache.skip(row, reason)
        tally.skipped += 1
    except AttribnetError:
        raise
    except Exception as exc:  # a long job never dies on one file; re-runs retry it
        log.error("failed %s: %s: %s", row.path, type(exc).__name__, exc, exc_info=True)
        tally.failed[row.path] = f"{type(exc).__name__}: {exc}"


def skip_error(path: str, reason: str) -> VideoError:
    """The error of a video skipped (or refused) for ``reason``, named by ``path``:
    NoFaceError when it decoded but showed no face (the reason begins with
    :data:`NO_FACE`), else VideoError."""
    kind = NoFaceError if reason.startswith(NO_FACE) else VideoError
    return kind(f"{path}: {reason}")


def _report(
    rows: list[ManifestRow], cache: FaceCache, tally: _Tally, seconds: float
) -> dict[str, Any]:
    """The run's report: this manifest's videos as done / skipped / failed."""
    paths = list(dict.fromkeys(r.path for r in rows))
    skipped = cache.skipped
    return {
        "cache": str(cache.root),
        "settings": cache.settings,
        "videos": len(paths),
        "done": sum(cache.entry_for(p) is not None for p in paths),
        "skipped": {p: skipped[p] for p in paths if p in skipped},
        "failed": dict(tally.failed),
        "this_run": {"done": tally.done, "skipped": tally.skipped, "seconds": round(seconds, 1)},
    }


def _log_report(report: dict[str, Any], level: int = logging.INFO) -> None:
    log.log(
        level,
        "%d of %d videos done (%d this run), %d skipped, %d failed -> %s",
        report["done"],
        report["videos"],
        report["this_run"]["done"],
        len(report["skipped"]),
        len(report["failed"]),
        report["cache"],
    )
    problems = [("skipped", report["skipped"]), ("failed", report["failed"])]
    for kind, reasons in problems:
        for path, reason in list(reasons.items())[:MAX_REPORTED_REASONS]:
            log.log(level, "  %s %s: %s", kind, path, reason)
        if len(reasons) > MAX_REPORTED_REASONS:
            more = len(reasons) - MAX_REPORTED_REASONS
            log.log(level, "  ... %d more %s (see report.json)", more, kind)
    if report["skipped"]:
        log.log(level, "skipped videos are tried again once their file changes (size or mtime)")


def preprocess(
    rows: list[ManifestRow], cache_dir: str | os.PathLike[str], **settings: Any
) -> FaceCache:
    """Crop the faces of every video in ``rows`` into the cache at ``cache_dir``.

    Takes the keyword settings of :func:`run_preprocess` (detector, size, margin,
    max_frames, backend, timeout_s, progress) and returns the cache only.
    """
    return run_preprocess(rows, cache_dir, **settings)[0]


def run_preprocess(
    rows: list[ManifestRow],
    cache_dir: str | os.PathLike[str],
    *,
    detector: str | FaceDetector = "haar",
    size: int = 224,
    margin: float = 0.3,
    max_frames: int = 64,
    backend: str = "auto",
    timeout_s: float | None = 60.0,
    progress: bool = True,
    face_check: bool | FaceCheck = True,
    on_video: Callable[[FaceCache, ManifestRow], None] | None = None,
    quiet: bool = False,
) -> tuple[FaceCache, dict[str, Any]]:
    """Crop the faces of every video in ``rows`` into the cache; return it and the report.

    ``detector`` is a name (``haar``, ``none``, ``centre``) or a detector object.
    ``face_check`` (True, False or a :class:`FaceCheck`) skips videos whose crops show no
    face, whatever the detector. Videos already done or skipped in the cache are not
    touched. Clips are (K, size, size, 3) uint8 with
    K = min(frames, max_frames). Writes ``<cache_dir>/report.json``. Raises ConfigError
    for bad settings and DataError when the cache was made with other settings. While
    another process preprocesses into the same cache, waits for it (logging who it is).
    ``on_video(cache, row)`` is called for each row as soon as it is finished, skipped or
    failed (rows already done first), so a caller can use a video while the next is cropped.
    ``quiet``: the run's summary and its skipped videos are logged at debug level only, for
    a caller that reports them itself (a query lists its failures in its answer); a video
    that fails unexpectedly is still logged as an error.
    """
    _check_settings(size, margin, max_frames, backend)
    det = build_detector(detector) if isinstance(detector, str) else detector
    check = FaceCheck() if face_check is True else face_check or None
    settings = {
        "size": int(size),
        "margin": float(margin),
        "detector": detector_name(det),
        "max_frames": int(max_frames),
        "face_check": check is not None,
    }
    faces_kwargs = {
        "detector": det,
        "size": int(size),
        "margin": float(margin),
        "max_frames": int(max_frames),
        "backend": backend,
        "timeout_s": timeout_s,
        "face_check": check,
    }
    lock = FileLock(Path(cache_dir) / LOCK_NAME, f"face cache {cache_dir}")
    with lock.acquire(wait=True, poll_s=LOCK_POLL_S):
        for folder in (Path(cache_dir), Path(cache_dir) / "clips"):
            remove_partial_files(folder)  # writes killed mid-file; we hold the lock
        cache = _open_cache(cache_dir, settings, check)
        return cache, _fill(rows, cache, faces_kwargs, progress, on_video, quiet)


def _open_cache(
    cache_dir: str | os.PathLike[str], settings: dict[str, Any], check: FaceCheck | None
) -> FaceCache:
    """The cache for ``settings``. One made before the face check existed (the same
    settings less ``face_check``) is brought up to date: with the check on, its videos'
    crops are checked now and those without a face become skipped ones."""
    meta = Path(cache_dir) / "meta.json"
    legacy = {k: v for k, v in settings.items() if k != "face_check"}
    if not meta.is_file() or json.loads(meta.read_text()) != legacy:
        return FaceCache(cache_dir, settings)
    cache = FaceCache(cache_dir, legacy)
    if check is not None:
        refused = []
        for entry in cache.entries:
            try:
                check.check(cache.load(entry))
            except NoFaceError as exc:
                refused.append((entry, str(exc)))
        log.warning(
            "cache %s was made before the face check: checked its %d videos, %d have no face",
            cache.root, len(cache.entries), len(refused),
        )  # fmt: skip
        for entry, reason in refused:
            log.warning("skipped %s: %s", entry.row.path, reason)
        cache.refuse(refused)
    cache.update_settings(settings)
    return cache


def _fill(
    rows: list[ManifestRow],
    cache: FaceCache,
    faces_kwargs: dict[str, Any],
    progress: bool,
    on_video: Callable[[FaceCache, ManifestRow], None] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Process the videos of ``rows`` not yet done (``on_video`` after each, and first for
    those done before); write and return the report (logged at debug level when ``quiet``)."""
    level = logging.DEBUG if quiet else logging.INFO
    todo = [r for r in rows if not cache.done(r.path)]
    log.log(level, "%d of %d videos to preprocess into %s", len(todo), len(rows), cache.root)
    if on_video is not None:
        for row in rows:
            if cache.done(row.path):
                on_video(cache, row)
    tally, start = _Tally(), time.monotonic()
    show = progress and sys.stderr.isatty()
    for row in tqdm(todo, desc="faces", unit="video", disable=not show):
        if not cache.done(row.path):  # a path listed twice is done once
            _process(row, cache, tally, faces_kwargs, quiet)
            if on_video is not None:
                on_video(cache, row)
    report = _report(rows, cache, tally, time.monotonic() - start)
    write_json(cache.root / "report.json", report)
    _log_report(report, level)
    return report
