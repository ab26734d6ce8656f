"""Video embeddings: a model's unit clip embeddings, averaged per video.

Videos are embedded from the same face cache and normalisation as training, with up to
``max_clips`` phase-shifted periodic clips per video (:class:`EvalClips`); the clips' unit
embeddings are averaged and re-normalised, their softmax probabilities and their logits
averaged (the logits for open-set scores such as energy).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from attribnet.data.eval_clips import DEFAULT_MAX_CLIPS, EvalClips
from attribnet.errors import CheckpointError
from attribnet.inference import default_device, run_model
from attribnet.metrics import softmax

if TYPE_CHECKING:
    from attribnet.config import Recipe
    from attribnet.data.cache import CacheEntry, FaceCache
    from attribnet.models import AttributionModel


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D) float32, C-contiguous, rows scaled to unit length (zero rows stay 0).

    Raises ValueError for a non-2-D array or non-finite values.
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected embeddings of shape (N, D), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings hold NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


@dataclass
class VideoEmbeddings:
    """A model's per-video outputs: ``embeddings`` (V, D) unit float32 (mean of the unit
    clip embeddings, re-normalised), ``probabilities`` (V, K) (mean of the clip softmax),
    ``logits`` (V, K) (mean of the clip logits) and ``num_clips`` (V,)."""

    embeddings: np.ndarray
    probabilities: np.ndarray
    logits: np.ndarray
    num_clips: np.ndarray


def video_embeddings(
    model: AttributionModel,
    recipe: Recipe,
    cache: FaceCache,
    entries: Sequence[CacheEntry],
    labels: Sequence[int] | None = None,
    *,
    max_clips: int = DEFAULT_MAX_CLIPS,
    device: torch.device | None = None,
    progress: bool = False,
) -> VideoEmbeddings:
    """Embed cached videos (``FaceCache`` entries) with an AttributionModel.

    Each video gives up to ``max_clips`` clips (:class:`EvalClips`); their L2-normalised
    embeddings are averaged and re-normalised, their softmax probabilities and their
    logits averaged (:class:`VideoEmbeddings`).
    """
    if not model.embedding_dim:
        raise CheckpointError("the model has no embedding head (model.embedding_dim is 0)")
    if not entries:
        empty = np.zeros((0, model.num_classes), np.float32)
        no_videos = np.zeros((0, model.embedding_dim), np.float32)
        return VideoEmbeddings(no_videos, empty, empty.copy(), np.zeros(0, np.int64))
    data = recipe.data
    dataset = EvalClips(
        cache,
        entries,
        labels if labels is not None else [-1] * len(entries),
        num_frames=data.num_frames,
        image_size=data.image_size,
        mean=data.mean,
        std=data.std,
        max_clips=max_clips,
    )
    device = device or default_device()
    loader = DataLoader(
        dataset,
        batch_size=recipe.train.batch_size,
        shuffle=False,
        num_workers=data.num_workers,
        pin_memory=device.type == "cuda",
    )
    bar = tqdm(loader, desc="embed", unit="batch", disable=not (progress and sys.stderr.isatty()))
    out = run_model(model.to(device), bar, device)
    return _per_video(dataset.video_of[out["index"]], out["embedding"], out["logits"])


def _per_video(video_of: np.ndarray, embeddings: np.ndarray, logits: np.ndarray) -> VideoEmbeddings:
    """Clip outputs -> per-video outputs; ``video_of`` (N,) maps clips to videos 0..V-1,
    ``embeddings`` (N, D), ``logits`` (N, K)."""
    num_videos = int(video_of.max()) + 1 if video_of.size else 0
    counts = np.bincount(video_of, minlength=num_videos)

    def mean(values: np.ndarray) -> np.ndarray:
        sums = np.zeros((num_videos, values.shape[1]), dtype=np.float64)
        np.add.at(sums, video_of, values)
        return sums / counts[:, None]

    emb = l2_normalize(mean(l2_normalize(embeddings)))
    prob = mean(softmax(logits)).astype(np.float32)
    return VideoEmbeddings(emb, prob, mean(logits).astype(np.float32), counts)
