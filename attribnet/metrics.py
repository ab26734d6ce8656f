"""Evaluation metrics for generator attribution: closed-set, detection, open-set, embeddings.

Pure functions: numpy arrays in, plain Python floats / lists / numpy arrays out. Labels stay
generator ids ``0..K-1`` throughout; nothing here binarises attribution labels. Detection
metrics take an explicit ``is_fake`` mask that the caller derives from its ``real`` class.

Score conventions:
- detection scores: higher = more fake; a sample is called fake iff ``score >= threshold``.
- open-set scores ("knownness", e.g. max similarity or max softmax): higher = more likely
  a known generator; a sample is accepted as known iff ``score >= threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import bootstrap
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    auc,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

__all__ = [
    "aggregate_by_video",
    "closed_set_report",
    "detection_metrics",
    "embedding_protocols",
    "open_set_metrics",
    "oscr",
    "paired_accuracy_drop",
    "softmax",
]


def _as_1d(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def _as_labels(name: str, values: Any, num_classes: int | None = None) -> np.ndarray:
    array = _as_1d(name, values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer generator ids, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if num_classes is not None and array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"{name} holds ids outside 0..{num_classes - 1}: min {array.min()}, max {array.max()}"
        )
    return array


def _as_scores(name: str, values: Any) -> np.ndarray:
    array = _as_1d(name, values).astype(np.float64)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _as_mask(name: str, values: Any) -> np.ndarray:
    array = _as_1d(name, values)
    if array.dtype != np.bool_:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1)")
        array = array.astype(bool)
    return array


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"length mismatch: {lengths}")


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
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
    truth = _as_labels("y_true", y_true, num_classes)
    pred = _as_labels("y_pred", y_pred, num_classes)
    _same_length(y_true=truth, y_pred=pred)
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
        "macro_f1": _macro_f1(truth, pred),
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
    ids = _as_1d("video_ids", video_ids)
    clip_labels = _as_labels("labels", labels)
    _same_length(clip_scores=scores, video_ids=ids, labels=clip_labels)
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


def paired_accuracy_drop(
    reference: Any,
    other: Any,
    groups: Any = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy drop from ``reference`` to ``other`` on the same videos, with a paired
    bootstrap confidence interval.

    The cross-quality question "how much worse is this model on crf23 than on crf10" compares
    one test set rendered twice, so the drop is estimated from per-video differences: a
    video right at both qualities adds nothing to the uncertainty. The bootstrap
    (:func:`scipy.stats.bootstrap`, percentile interval) resamples whole ``groups`` (e.g. a
    video's ``source_id``: the renderings of one source segment are not independent
    samples) and keeps every model's results of a resampled video together.

    Args:
        reference: (V,) or (S, V) per-video correctness (bool or 0/1) of S models, e.g. S
            training seeds; column ``v`` of ``reference`` and ``other`` is the same video.
        other: the same shape as ``reference``.
        groups: (V,) group of each video; None: every video is its own group.
        confidence: the interval's confidence level.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling.

    Returns:
        ``drop``: mean over the S models of accuracy(reference) - accuracy(other), a
        fraction; ``low``, ``high``: the interval (NaN with fewer than two groups);
        ``videos``, ``groups``: V and the number of groups; ``confidence``.
    """
    ref = np.atleast_2d(np.asarray(reference))
    oth = np.atleast_2d(np.asarray(other))
    if ref.ndim != 2 or ref.shape != oth.shape:
        raise ValueError(
            f"reference and other must be (V,) or (S, V) alike: {ref.shape}, {oth.shape}"
        )
    if ref.shape[1] == 0 or ref.shape[0] == 0:
        raise ValueError("no videos to compare")
    ref = _as_mask("reference correctness", ref.ravel()).reshape(ref.shape)
    oth = _as_mask("other correctness", oth.ravel()).reshape(oth.shape)
    diff = ref.mean(axis=0) - oth.mean(axis=0)
    group = np.arange(diff.size) if groups is None else _as_1d("groups", groups)
    _same_length(videos=diff, groups=group)
    _, group_id = np.unique(group, return_inverse=True)
    sums = np.bincount(group_id, weights=diff)
    counts = np.bincount(group_id).astype(np.float64)
    low = high = float("nan")
    if sums.size >= 2:
        interval = bootstrap(
            (sums, counts),
            lambda s, n, axis: s.sum(axis=axis) / n.sum(axis=axis),
            paired=True,
            vectorized=True,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
        low, high = float(interval.low), float(interval.high)
    return {
        "drop": float(diff.mean()),
        "low": low,
        "high": high,
        "videos": int(diff.size),
        "groups": int(sums.size),
        "confidence": confidence,
    }


def detection_metrics(
    val_scores: np.ndarray,
    val_is_fake: np.ndarray,
    test_scores: np.ndarray,
    test_is_fake: np.ndarray,
    target_fpr: float = 0.10,
) -> dict[str, float]:
    """Real-vs-fake detection: test AUC, and test FPR/FNR/HTER at a validation threshold.

    Scores: higher = more fake; a sample is called fake iff ``score >= threshold``.
    FPR = fraction of real samples called fake; FNR = fraction of fake samples called real;
    HTER = (FPR + FNR) / 2.

    The threshold is chosen on the validation split only: among the distinct validation
    scores (plus +inf, which calls nothing fake), the one with the largest validation TPR
    whose validation FPR is ``<= target_fpr``. Ties: samples with equal scores always fall
    on the same side of the threshold, so a group of tied real scores that would push the
    FPR over the target is excluded as a whole (the achieved FPR may then be below the
    target). The same threshold is then applied to the test split.

    Args:
        val_scores, val_is_fake: (M,) validation scores and boolean fake mask; both real
            and fake samples must be present.
        test_scores, test_is_fake: (N,) test scores and boolean fake mask; likewise.
        target_fpr: the validation FPR to stay at or below, in [0, 1).

    Returns:
        ``threshold``, ``val_fpr``, ``val_tpr``, ``test_auc``, ``test_fpr``, ``test_fnr``,
        ``test_hter``; ``threshold`` may be ``inf``.
    """
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    v_scores = _as_scores("val_scores", val_scores)
    v_fake = _as_mask("val_is_fake", val_is_fake)
    t_scores = _as_scores("test_scores", test_scores)
    t_fake = _as_mask("test_is_fake", test_is_fake)
    _same_length(val_scores=v_scores, val_is_fake=v_fake)
    _same_length(test_scores=t_scores, test_is_fake=t_fake)
    for split, mask in (("validation", v_fake), ("test", t_fake)):
        if mask.all() or not mask.any():
            raise ValueError(f"the {split} split needs both real and fake samples")

    fpr, tpr, thresholds = roc_curve(v_fake, v_scores, drop_intermediate=False)
    best = int(np.flatnonzero(fpr <= target_fpr)[-1])
    threshold = float(thresholds[best])

    called_fake = t_scores >= threshold
    test_fpr = float(called_fake[~t_fake].mean())
    test_fnr = float((~called_fake[t_fake]).mean())
    return {
        "threshold": threshold,
        "val_fpr": float(fpr[best]),
        "val_tpr": float(tpr[best]),
        "test_auc": float(roc_auc_score(t_fake, t_scores)),
        "test_fpr": test_fpr,
        "test_fnr": test_fnr,
        "test_hter": (test_fpr + test_fnr) / 2.0,
    }


def oscr(known_scores: np.ndarray, unknown_scores: np.ndarray, known_correct: np.ndarray) -> float:
    """Open-Set Classification Rate (Dhamija et al. 2018; Vaze et al. 2022).

    Area under the curve of CCR(t) against FPR(t) over all thresholds t, where a sample is
    accepted iff ``score >= t``: CCR(t) = fraction of known samples that are accepted and
    correctly classified, FPR(t) = fraction of unknown samples accepted. The curve runs from
    (0, 0) (t = +inf) to (1, closed-set accuracy) (t = lowest score), so OSCR <= accuracy.
    Samples with equal scores enter together (one curve point per distinct score), so a tie
    between a known and an unknown sample adds a straight diagonal segment, as ties do in
    ROC AUC. Area by the trapezoidal rule.

    Args:
        known_scores: (Nk,) knownness of samples from known generators.
        unknown_scores: (Nu,) knownness of samples from unseen generators.
        known_correct: (Nk,) bool, whether each known sample's predicted generator is right.
    """
    known = _as_scores("known_scores", known_scores)
    unknown = _as_scores("unknown_scores", unknown_scores)
    correct = _as_mask("known_correct", known_correct)
    _same_length(known_scores=known, known_correct=correct)

    scores = np.concatenate([known, unknown])
    is_correct = np.concatenate([correct, np.zeros(unknown.size, dtype=bool)])
    is_unknown = np.concatenate([np.zeros(known.size, dtype=bool), np.ones(unknown.size, bool)])
    order = np.argsort(-scores, kind="stable")
    scores, is_correct, is_unknown = scores[order], is_correct[order], is_unknown[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1]
    ccr = np.r_[0.0, np.cumsum(is_correct)[last_of_group] / known.size]
    fpr = np.r_[0.0, np.cumsum(is_unknown)[last_of_group] / unknown.size]
    return float(auc(fpr, ccr))


def open_set_metrics(
    known_scores: np.ndarray,
    unknown_scores: np.ndarray,
    known_correct: np.ndarray,
    tpr_target: float = 0.95,
) -> dict[str, float]:
    """Open-set metrics: known-vs-unknown separation and the open-set classification rate.

    Scores are knownness (higher = more likely a known generator); a sample is accepted as
    known iff ``score >= threshold``. Known samples are the positive class.

    Args:
        known_scores: (Nk,) knownness of samples from generators seen in training.
        unknown_scores: (Nu,) knownness of samples from unseen generators.
        known_correct: (Nk,) bool, whether each known sample was attributed correctly.
        tpr_target: TPR over known samples at which TNR is reported.

    Returns:
        ``auroc``: ROC AUC of known (positive) vs unknown, ties count one half.
        ``tnr_at_95tpr`` (named for the default target): fraction of unknown samples
        rejected at the highest threshold whose TPR over known samples is ``>= tpr_target``;
        tied scores stay together, so the achieved TPR may exceed the target.
        ``threshold_at_95tpr``: that threshold.
        ``oscr``: see :func:`oscr`.
        ``known_accuracy``: closed-set accuracy on the known samples (OSCR's upper bound).
    """
    known = _as_scores("known_scores", known_scores)
    unknown = _as_scores("unknown_scores", unknown_scores)
    correct = _as_mask("known_correct", known_correct)
    _same_length(known_scores=known, known_correct=correct)
    if not 0.0 < tpr_target <= 1.0:
        raise ValueError(f"tpr_target must be in (0, 1], got {tpr_target}")

    is_known = np.r_[np.ones(known.size, dtype=bool), np.zeros(unknown.size, dtype=bool)]
    scores = np.r_[known, unknown]
    fpr, tpr, thresholds = roc_curve(is_known, scores, drop_intermediate=False)
    at_target = int(np.flatnonzero(tpr >= tpr_target)[0])
    return {
        "auroc": float(roc_auc_score(is_known, scores)),
        "tnr_at_95tpr": float(1.0 - fpr[at_target]),
        "threshold_at_95tpr": float(thresholds[at_target]),
        "oscr": oscr(known, unknown, correct),
        "known_accuracy": float(correct.mean()),
    }


def embedding_protocols(
    train_emb: np.ndarray,
    train_y: np.ndarray,
    test_emb: np.ndarray,
    test_y: np.ndarray,
    k: int = 14,
    seed: int = 0,
) -> dict[str, Any]:
    """Embedding-space protocols of Korshunov et al. (ICASSP 2022): kNN, LogReg, linear SVM.

    Each classifier is fit on ``train_emb`` (callers pass validation-split embeddings, never
    test) and scored on ``test_emb``. kNN uses cosine distance with ``min(k, n_train)``
    neighbours; logistic regression and the linear SVM use sklearn defaults on the raw
    embeddings (pass them L2-normalised, as the embedding heads produce them).
    Deterministic for a given ``seed``.

    Args:
        train_emb: (M, D) embeddings to fit on; train_y: (M,) generator ids, >= 2 classes.
        test_emb: (N, D) embeddings to score; test_y: (N,) generator ids.
        k: number of neighbours before capping.
        seed: random state of the logistic regression and the SVM.

    Returns:
        ``{"knn": {...}, "logreg": {...}, "linear_svm": {...}, "knn_k": int}``, each inner
        dict holding ``accuracy`` and ``macro_f1`` (as in :func:`closed_set_report`).
    """
    x_train = np.asarray(train_emb, dtype=np.float64)
    x_test = np.asarray(test_emb, dtype=np.float64)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"embeddings must be (M, D) and (N, D), got {x_train.shape} and {x_test.shape}"
        )
    y_train, y_test = _as_labels("train_y", train_y), _as_labels("test_y", test_y)
    _same_length(train_emb=x_train, train_y=y_train)
    _same_length(test_emb=x_test, test_y=y_test)
    if np.unique(y_train).size < 2:
        raise ValueError("train_y must hold at least 2 classes")
    if y_test.size == 0:
        raise ValueError("test_y is empty")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")

    k_used = min(k, len(y_train))
    classifiers = {
        "knn": KNeighborsClassifier(n_neighbors=k_used, metric="cosine"),
        "logreg": LogisticRegression(max_iter=1000, random_state=seed),
        "linear_svm": LinearSVC(random_state=seed, max_iter=10000),
    }
    report: dict[str, Any] = {}
    for name, classifier in classifiers.items():
        y_pred = classifier.fit(x_train, y_train).predict(x_test)
        report[name] = {
            "accuracy": float(accuracy_score(y_test, y_pred)),
            "macro_f1": _macro_f1(y_test, y_pred),
        }
    report["knn_k"] = k_used
    return report
