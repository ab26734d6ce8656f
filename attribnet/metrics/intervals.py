"""Paired bootstrap confidence intervals: the accuracy drop between two renderings of the
same test videos."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import bootstrap

from attribnet.metrics.inputs import as_1d, as_mask, same_length


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
    ref = as_mask("reference correctness", ref.ravel()).reshape(ref.shape)
    oth = as_mask("other correctness", oth.ravel()).reshape(oth.shape)
    diff = ref.mean(axis=0) - oth.mean(axis=0)
    group = np.arange(diff.size) if groups is None else as_1d("groups", groups)
    same_length(videos=diff, groups=group)
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


def grouped_accuracy(
    correct: Any,
    groups: Any,
    strata: Any = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy of videos with a bootstrap interval over ``groups``, e.g. the generator
    trainings that made the test videos.

    A cross-instance accuracy generalises to trainings nobody trained on, so the trainings,
    not the videos, are the sample: each resample draws, within every stratum (e.g. a
    generator class, so that every class keeps its share), as many groups as the stratum
    has, with replacement, and pools their videos. With one group per stratum the interval
    is NaN: one training per class says nothing about the next one.

    Args:
        correct: (V,) per-video correctness (bool or 0/1).
        groups: (V,) the group (training) of each video.
        strata: (V,) the stratum of each video, constant within a group; None: one stratum.

    Returns:
        ``accuracy`` (over all videos), ``low``, ``high`` (percentile interval),
        ``videos``, ``groups``, ``per_group`` ({group: accuracy}), ``confidence``.
    """
    ok = as_mask("correctness", as_1d("correctness", correct))
    group = as_1d("groups", groups)
    stratum = np.zeros(len(group), dtype=np.int64) if strata is None else as_1d("strata", strata)
    same_length(correct=ok, groups=group, strata=stratum)
    if ok.size == 0:
        raise ValueError("no videos")
    names, group_id = np.unique(group, return_inverse=True)
    right = np.bincount(group_id, weights=ok.astype(np.float64))
    count = np.bincount(group_id).astype(np.float64)
    group_stratum = np.empty(len(names), dtype=object)
    for g, s in zip(group_id, stratum, strict=True):
        if group_stratum[g] is not None and group_stratum[g] != s:
            raise ValueError(f"group {names[g]!r} spans more than one stratum")
        group_stratum[g] = s
    members = [np.flatnonzero(group_stratum == s) for s in dict.fromkeys(group_stratum)]
    low = high = float("nan")
    if all(len(m) >= 2 for m in members):
        rng = np.random.default_rng(seed)
        drawn = np.concatenate(
            [m[rng.integers(len(m), size=(n_resamples, len(m)))] for m in members], axis=1
        )
        accs = right[drawn].sum(axis=1) / count[drawn].sum(axis=1)
        alpha = (1.0 - confidence) / 2.0
        low, high = (float(q) for q in np.quantile(accs, [alpha, 1.0 - alpha]))
    return {
        "accuracy": float(ok.mean()),
        "low": low,
        "high": high,
        "videos": int(ok.size),
        "groups": int(len(names)),
        "per_group": {str(n): float(r / c) for n, r, c in zip(names, right, count, strict=True)},
        "confidence": confidence,
    }
