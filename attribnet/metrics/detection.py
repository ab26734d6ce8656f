"""Real-vs-fake detection metrics.

They take an explicit ``is_fake`` mask that the caller derives from its ``real`` class.
Detection scores: higher = more fake; a sample is called fake iff ``score >= threshold``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from attribnet.metrics.inputs import as_mask, as_scores, same_length


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
    v_scores = as_scores("val_scores", val_scores)
    v_fake = as_mask("val_is_fake", val_is_fake)
    t_scores = as_scores("test_scores", test_scores)
    t_fake = as_mask("test_is_fake", test_is_fake)
    same_length(val_scores=v_scores, val_is_fake=v_fake)
    same_length(test_scores=t_scores, test_is_fake=t_fake)
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
