"""Which frames of a video make a clip of T frames."""

from __future__ import annotations

import numpy as np

from attribnet.errors import VideoError

MODES = ("periodic", "random_segment", "all")


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
