"""Closed-set attribution: per-class accuracy, macro-F1 and confusion matrix, and the
video-level scores that average a video's clips."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from attribnet.metrics.inputs import as_1d, as_labels, same_length


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes present in ``y_true`` or ``y_pred``; 0 where undefined."""
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable. (N, K) -> (N, K), rows sum to 1."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def closed_set_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Closed-set attribution report: the rows of the paper's per-class accuracy tables.

    Args:
        y_true: (N,) true generator ids in ``0..K-1``.
        y_pred: (N,) predicted generator ids in ``0..K-1``.
        class_names: K names; ``class_names[i]`` names generator id ``i``.

    Returns:
        ``accuracy``: overall accuracy (the paper's "Overall" row).
        ``per_class_accuracy``: ``{name: recall of that class}``; NaN for a class with no
        true samples.
        ``support``: ``{name: number of true samples}``.
        ``macro_f1``: unweighted mean F1 over the classes present in ``y_true`` or
        ``y_pred`` (a class with no predictions scores F1 = 0).
        ``confusion_matrix``: K x K nested list of ints, rows = true, columns = predicted,
        always all K labels in id order.
        ``class_names``: the names, as a list.
    """
    names = list(class_names)
    num_classes = len(names)
    if num_classes == 0 or len(set(names)) != num_classes:
        raise ValueError(f"class_names must be non-empty and unique, got {names}")
    truth = as_labels("y_true", y_true, num_classes)
    pred = as_labels("y_pred", y_pred, num_classes)
    same_length(y_true=truth, y_pred=pred)
    if truth.size == 0:
        raise ValueError("y_true is empty")
    labels = np.arange(num_classes)
    recalls = recall_score(truth, pred, labels=labels, average=None, zero_division=np.nan)
    support = np.bincount(truth, minlength=num_classes)
    matrix = confusion_matrix(truth, pred, labels=labels)
    return {
        "accuracy": float(accuracy_score(truth, pred)),
        "per_class_accuracy": {name: float(r) for name, r in zip(names, recalls, strict=True)},
        "support": {name: int(s) for name, s in zip(names, support, strict=True)},
        "macro_f1": macro_f1(truth, pred),
        "confusion_matrix": matrix.astype(int).tolist(),
        "class_names": names,
    }


def aggregate_by_video(
    clip_scores: np.ndarray,
    video_ids: np.ndarray,
    labels: np.ndarray,
    *,
    from_logits: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Video-level scores: the mean of the clip softmax probabilities of each video.

    Args:
        clip_scores: (N, K) per-clip logits (``from_logits=True``, softmax applied per clip
            before averaging) or probabilities (``from_logits=False``, rows must be
            non-negative and sum to 1).
        video_ids: (N,) video identifier of each clip (ints or strings).
        labels: (N,) generator id of each clip; all clips of a video must agree.

    Returns:
        ``(video_scores (V, K), video_labels (V,), video_ids (V,))``: videos in order of
        first appearance in ``video_ids``; ``video_scores`` rows are probabilities.

    Raises:
        ValueError: on shape mismatches, invalid probabilities, or a video whose clips
            carry different labels.
    """
    scores = np.asarray(clip_scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"clip_scores must be (N, K) with N > 0, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("clip_scores holds NaN or infinite values")
    ids = as_1d("video_ids", video_ids)
    clip_labels = as_labels("labels", labels)
    same_length(clip_scores=scores, video_ids=ids, labels=clip_labels)
    if from_logits:
        probs = softmax(scores)
    else:
        if scores.min() < 0 or not np.allclose(scores.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError("clip_scores are not probabilities; pass from_logits=True")
        probs = scores

    unique_ids, first_index, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first_index, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    video_of_clip = rank[inverse.reshape(-1)]
    num_videos = order.size

    lowest = np.full(num_videos, np.iinfo(np.int64).max)
    highest = np.full(num_videos, np.iinfo(np.int64).min)
    np.minimum.at(lowest, video_of_clip, clip_labels)
    np.maximum.at(highest, video_of_clip, clip_labels)
    conflicting = np.flatnonzero(lowest != highest)
    if conflicting.size:
        shown = [str(v) for v in unique_ids[order][conflicting][:5]]
        raise ValueError(f"clips of the same video carry different labels: videos {shown}")

    sums = np.zeros((num_videos, probs.shape[1]))
    np.add.at(sums, video_of_clip, probs)
    counts = np.bincount(video_of_clip, minlength=num_videos)
    return sums / counts[:, None], lowest, unique_ids[order]
