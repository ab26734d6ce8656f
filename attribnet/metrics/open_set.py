"""Open-set metrics: known vs unseen generators, and the open-set classification rate.

Open-set scores ("knownness", e.g. max similarity or max softmax): higher = more likely a
known generator; a sample is accepted as known iff ``score >= threshold``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import auc, roc_auc_score, roc_curve

from attribnet.metrics.inputs import as_mask, as_scores, same_length


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
    known = as_scores("known_scores", known_scores)
    unknown = as_scores("unknown_scores", unknown_scores)
    correct = as_mask("known_correct", known_correct)
    same_length(known_scores=known, known_correct=correct)

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
    known = as_scores("known_scores", known_scores)
    unknown = as_scores("unknown_scores", unknown_scores)
    correct = as_mask("known_correct", known_correct)
    same_length(known_scores=known, known_correct=correct)
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
