"""Manifest rows from a folder tree of videos or frame folders (layouts: :func:`scan_tree`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from attribnet.data.manifest.rows import ManifestRow
from attribnet.errors import ConfigError, DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
LAYOUTS = ("quality/class", "class/quality")


def scan_tree(
    root: str | os.PathLike[str],
    layout: str = "quality/class",
    source_pattern: str | None = None,
) -> list[ManifestRow]:
    """One row (split empty) per video file or frame folder under ``root``.

    A *video* is a file with a suffix in ``VIDEO_SUFFIXES`` or a folder that directly holds
    frame images (``IMAGE_SUFFIXES``; its subfolders are not searched). The folders between
    ``root`` and a video decide its tags, and every video of a tree must sit at one depth:

    - ``<class>/<video>``: label = the folder's name, quality empty;
    - ``<a>/<b>/<video>``: a top-level folder holding class folders that hold videos is a
      quality, so with ``layout="quality/class"`` (default) ``a`` is the quality and ``b``
      the label; ``layout="class/quality"`` reads them the other way round.

    ``source_id`` is the video's file stem or folder name (DFDM renders one source through
    every model and quality under the same name), or with ``source_pattern`` the first
    group (else the whole match) of ``re.search(source_pattern, name)``.
    Hidden files and folders are ignored. Rows come in sorted path order.

    Raises DataError for a missing or empty tree, mixed depths, or a video outside a class
    folder; ConfigError for an unknown layout or a bad pattern.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown tree layout {layout!r}; use one of {LAYOUTS}")
    pattern = compile_pattern(source_pattern)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no such folder: {root}")
    videos = _find_videos(root)
    if not videos:
        raise DataError(
            f"{root}: no videos ({', '.join(VIDEO_SUFFIXES)}) or frame folders found; expected "
            "<class>/<video>.mp4, <quality>/<class>/<video>.mp4 or <class>/<video>/<frame>.png"
        )
    depth = _common_depth(root, videos)
    return [_row_for(root, v, depth, layout, pattern) for v in videos]


def compile_pattern(source_pattern: str | None) -> re.Pattern[str] | None:
    """The compiled regex (None for None); ConfigError when it does not compile."""
    if source_pattern is None:
        return None
    try:
        return re.compile(source_pattern)
    except re.error as exc:
        raise ConfigError(f"bad --source-pattern {source_pattern!r}: {exc}") from exc


def _find_videos(root: Path) -> list[Path]:
    """Video files and frame folders under ``root`` (not ``root`` itself), sorted."""
    found: list[Path] = []
    seen = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        visible = [f for f in filenames if not f.startswith(".")]
        if here != root and any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in visible):
            found.append(here)
            dirnames[:] = []
            continue
        found.extend(here / f for f in visible if Path(f).suffix.lower() in VIDEO_SUFFIXES)
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(here / d)
            if not d.startswith(".") and real not in seen:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
    return sorted(found)


def _common_depth(root: Path, videos: list[Path]) -> int:
    """The number of folders between ``root`` and every video: 1 or 2."""
    by_depth: dict[int, Path] = {}
    for v in videos:
        by_depth.setdefault(len(v.relative_to(root).parts) - 1, v)
    bad = {d: v for d, v in by_depth.items() if d not in (1, 2)}
    if bad:
        d, v = min(bad.items())
        where = "directly in the tree" if d == 0 else f"{d} folders deep"
        raise DataError(
            f"{root}: {v.relative_to(root)} is {where}; a video must be in <class>/ or "
            "<quality>/<class>/ (point at the folder that holds the class or quality folders)"
        )
    if len(by_depth) > 1:
        raise DataError(
            f"{root}: mixed layouts: {by_depth[1].relative_to(root)} is in a class folder but "
            f"{by_depth[2].relative_to(root)} is in <quality>/<class>/; scan them separately"
        )
    return next(iter(by_depth))


def _row_for(
    root: Path, video: Path, depth: int, layout: str, pattern: re.Pattern[str] | None
) -> ManifestRow:
    folders = video.relative_to(root).parts[:-1]
    if depth == 1:
        label, quality = folders[0], ""
    elif layout == "quality/class":
        quality, label = folders
    else:
        label, quality = folders
    name = video.name if video.is_dir() else video.stem
    return ManifestRow(
        path=str(video.resolve()), label=label, quality=quality, source_id=name_part(name, pattern)
    )


def name_part(name: str, pattern: re.Pattern[str] | None) -> str:
    """What ``pattern`` picks from ``name``: group 1 if it has one, else the whole match
    (the whole name without a pattern); DataError when it does not match."""
    if pattern is None:
        return name
    match = pattern.search(name)
    if match is None:
        raise DataError(f"source pattern {pattern.pattern!r} does not match video name {name!r}")
    return match.group(1) if pattern.groups else match.group(0)
