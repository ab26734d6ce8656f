"""Evaluation clips for embedding: several deterministic periodic clips per cached video."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from attribnet.data.augment import ClipAugment, Normalize
from attribnet.data.cache import CacheEntry, FaceCache
from attribnet.data.sampling import clip_indices, clips_for

DEFAULT_CLIPS_PER_VIDEO = 4
"""Clips embedded and averaged per video, everywhere (``--clips-per-video``)."""


class EvalClips(Dataset):
    """Deterministic evaluation clips of cached videos: ``{"clip" (T, 3, S, S), "label",
    "index"}``, several per video (:func:`attribnet.data.sampling.clip_indices`, up to
    ``clips_per_video``, one per full stride); ``video_of[i]`` is the
    position in ``entries`` of item ``i``. No augmentation; frames of another size than
    ``image_size`` are resized as training resizes them. ``resize`` > 0 (``data.resize``):
    every frame is resized to ``resize`` x ``resize``, then centre-cropped to
    ``image_size`` (:class:`attribnet.data.augment.ClipAugment`)."""

    def __init__(
        self,
        cache: FaceCache,
        entries: Sequence[CacheEntry],
        labels: Sequence[int],
        *,
        num_frames: int,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        clips_per_video: int = DEFAULT_CLIPS_PER_VIDEO,
        resize: int = 0,
    ):
        self.cache, self.entries, self.labels = cache, list(entries), list(labels)
        self.num_frames, self.image_size = num_frames, image_size
        self.normalize = Normalize(mean, std)
        self.resize = ClipAugment(image_size, hflip=0.0, crop_scale=None, resize=resize)
        self.items: list[tuple[int, np.ndarray]] = []
        for v, entry in enumerate(self.entries):
            n = clips_for(entry.num_frames, num_frames, clips_per_video)
            self.items.extend((v, idx) for idx in clip_indices(entry.num_frames, num_frames, n))
        self.video_of = np.array([v for v, _ in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        v, indices = self.items[i]
        frames = np.asarray(self.cache.load(self.entries[v])[indices])
        if self.resize.changes(frames):
            frames = self.resize(frames)
        return {"clip": self.normalize(frames), "label": self.labels[v], "index": i}
