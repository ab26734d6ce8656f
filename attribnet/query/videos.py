"""The videos among a query's inputs: video files (.mp4/.avi/.mov/.mkv/.webm/.m4v, the
suffixes of :mod:`attribnet.data.manifest`) and folders of frame images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def find_videos(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[str], dict[str, str]]:
    """Expand files and folders into videos: (paths in input order, missing inputs -> reason).

    A file is taken as given (a non-video is reported when it fails to decode). A folder
    that directly holds frame images is one video; any other folder is searched
    recursively for video files and frame folders (hidden entries skipped).
    """
    from attribnet.data.manifest import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    found: list[str] = []
    missing: dict[str, str] = {}
    for item in inputs:
        path = Path(item)
        if path.is_file():
            found.append(str(path))
        elif path.is_dir():
            found.extend(str(p) for p in _walk(path, VIDEO_SUFFIXES, IMAGE_SUFFIXES))
        else:
            missing[str(path)] = "no such file or folder"
    return list(dict.fromkeys(found)), missing


def _walk(root: Path, video_suffixes: Sequence[str], image_suffixes: Sequence[str]) -> list[Path]:
    """Video files and frame folders under ``root`` (``root`` itself when it holds frames)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        visible = sorted(f for f in filenames if not f.startswith("."))
        if any(Path(f).suffix.lower() in image_suffixes for f in visible):
            found.append(here)
            dirnames[:] = []
            continue
        found.extend(here / f for f in visible if Path(f).suffix.lower() in video_suffixes)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return found
