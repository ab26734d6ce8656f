"""Where a cached face frame came from: its frame index in the video file and its time.

Preprocessing keeps ``max_frames`` evenly spaced frames of a longer video
(:func:`attribnet.data.preprocess.frame_indices`), so the ``i``-th cached frame is frame
``frame_indices(n, max_frames)[i]`` of the file; its time is that index over the stream's
average frame rate. A frame folder has no rate (times are None).
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from attribnet.data.manifest import IMAGE_SUFFIXES
from attribnet.data.video import probe_frame_count
from attribnet.errors import VideoError


def frame_rate(path: str | os.PathLike[str]) -> float | None:
    """The first video stream's average frame rate (frames/s), None when unknown."""
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate if container.streams.video else None
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return float(rate) if rate else None


def source_frames(
    path: str | os.PathLike[str], num_cached: int, max_frames: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(frame indices in the file (num_cached,), times in seconds (num_cached,)) of a
    video's cached frames; None for what cannot be known (the file is gone or changed so
    that the count no longer matches; times of a frame folder)."""
    from attribnet.data.preprocess import frame_indices

    path = Path(path)
    try:
        if path.is_dir():
            count = sum(1 for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            count = probe_frame_count(path)
    except (VideoError, OSError):
        return None, None
    indices = frame_indices(count, max_frames)
    if len(indices) != num_cached:
        return None, None
    rate = None if path.is_dir() else frame_rate(path)
    return indices, (indices / rate if rate else None)
