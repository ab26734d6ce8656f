"""Which frames of a video make a clip of T frames."""

from __future__ import annotations

import numpy as np

from attribnet.config.choices import SAMPLING_MODES as MODES
from attribnet.errors import VideoError


def sample_indices(
    num_frames: int, t: int, mode: str = "periodic", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Indices of ``t`` frames out of ``num_frames``, increasing.

    - ``periodic``: evenly spaced over the whole video (the paper's sampling); the centre
      of each of ``t`` equal segments, so the result is deterministic.
    - ``random_segment``: ``t`` consecutive frames starting at a random position (needs
      ``rng``; falls back to the first frames without one).
    - ``all``: every frame (``t`` is ignored).

    Raises VideoError when the video has fewer than ``t`` frames.
    """
    if mode not in MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; use one of {MODES}")
    if mode == "all":
        if num_frames < 1:
            raise VideoError("video has no frames")
        return np.arange(num_frames)
    if t < 1:
        raise ValueError(f"clip length must be >= 1, got {t}")
    if num_frames < t:
        raise VideoError(f"video has {num_frames} frames, fewer than the {t} a clip needs")
    if mode == "periodic":
        return ((np.arange(t) + 0.5) * num_frames / t).astype(np.int64)
    start = int(rng.integers(0, num_frames - t + 1)) if rng is not None else 0
    return np.arange(start, start + t)


def clip_indices(num_frames: int, t: int, num_clips: int) -> np.ndarray:
    """Frame indices of ``num_clips`` periodic clips of ``t`` frames: (num_clips, t) int64.

    The evaluation rule: every clip has training's stride ``num_frames / t``; clip ``j``
    starts at phase ``(j + 0.5) / num_clips`` of a stride, so one clip is exactly
    training's periodic sample and several clips interleave without sharing frames (while
    the stride allows).
    """
    if num_frames < 1 or t < 1 or num_clips < 1:
        raise ValueError(f"need num_frames, t, num_clips >= 1, got {num_frames, t, num_clips}")
    phase = (np.arange(num_clips)[:, None] + 0.5) / num_clips
    positions = (np.arange(t)[None, :] + phase) * num_frames / t
    return np.minimum(positions.astype(np.int64), num_frames - 1)


def clips_for(num_frames: int, t: int, clips_per_video: int) -> int:
    """How many clips to take from a video: one per full stride of frames, 1..clips_per_video."""
    return int(min(max(num_frames // t, 1), max(clips_per_video, 1)))
