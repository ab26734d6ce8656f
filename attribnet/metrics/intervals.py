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
