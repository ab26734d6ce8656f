"""Metrics against small examples whose expected values are worked out by hand below."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attribnet.metrics import (
    aggregate_by_video,
    closed_set_report,
    detection_metrics,
    embedding_protocols,
    grouped_accuracy,
    open_set_metrics,
    oscr,
    paired_accuracy_drop,
)


def test_closed_set_report_three_classes_one_never_predicted() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 0, 1, 1])  # class 2 (IAE) is never predicted
    report = closed_set_report(y_true, y_pred, ["FS", "LW", "IAE"])

    # Rows = true, columns = predicted: true FS -> 2x FS, 1x LW; true LW -> 1x FS, 1x LW;
    # true IAE -> 1x FS, 2x LW. The IAE column is present although IAE is never predicted.
    assert report["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [1, 2, 0]]
    assert report["accuracy"] == pytest.approx(3 / 8)
    assert report["per_class_accuracy"] == pytest.approx({"FS": 2 / 3, "LW": 1 / 2, "IAE": 0.0})
    assert report["support"] == {"FS": 3, "LW": 2, "IAE": 3}
    # F1(FS): P = 2/4, R = 2/3 -> 4/7. F1(LW): P = 1/4, R = 1/2 -> 1/3. F1(IAE) = 0.
    assert report["macro_f1"] == pytest.approx((4 / 7 + 1 / 3 + 0.0) / 3)
    assert report["class_names"] == ["FS", "LW", "IAE"]


def test_closed_set_report_class_absent_from_truth_is_nan_and_keeps_k_columns() -> None:
    report = closed_set_report([0, 1, 1], [0, 1, 3], ["FS", "LW", "IAE", "DFL"])
    assert report["confusion_matrix"] == [[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert math.isnan(report["per_class_accuracy"]["IAE"])
    assert math.isnan(report["per_class_accuracy"]["DFL"])
    assert report["per_class_accuracy"]["LW"] == pytest.approx(0.5)


def test_closed_set_report_rejects_ids_outside_range() -> None:
    with pytest.raises(ValueError, match="outside 0..2"):
        closed_set_report([0, 1, 3], [0, 1, 2], ["FS", "LW", "IAE"])


def test_aggregate_by_video_means_probabilities_in_first_appearance_order() -> None:
    # Videos c (3 clips), a (2 clips), b (1 clip), interleaved.
    video_ids = np.array(["c", "a", "c", "b", "a", "c"])
    labels = np.array([2, 0, 2, 1, 0, 2])
    probs = np.array(
        [
            [0.7, 0.2, 0.1],  # c
            [0.6, 0.3, 0.1],  # a
            [0.5, 0.4, 0.1],  # c
            [0.1, 0.1, 0.8],  # b
            [0.2, 0.5, 0.3],  # a
            [0.3, 0.3, 0.4],  # c
        ]
    )
    scores, video_labels, ids = aggregate_by_video(probs, video_ids, labels, from_logits=False)

    # c: (0.7+0.5+0.3, 0.2+0.4+0.3, 0.1+0.1+0.4) / 3 = (0.5, 0.3, 0.2)
    # a: (0.6+0.2, 0.3+0.5, 0.1+0.3) / 2 = (0.4, 0.4, 0.2);  b: its one clip.
    expected = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]])
    assert ids.tolist() == ["c", "a", "b"]
    assert video_labels.tolist() == [2, 0, 1]
    np.testing.assert_allclose(scores, expected, atol=1e-12)


def test_aggregate_by_video_softmaxes_logits_before_averaging() -> None:
    # Clip 1 logits (0, ln 3) -> probs (1/4, 3/4); clip 2 logits (ln 3 + 5, 5) -> (3/4, 1/4).
    # Mean of probabilities = (1/2, 1/2); the mean of the logits would give something else.
    logits = np.array([[0.0, math.log(3.0)], [math.log(3.0) + 5.0, 5.0]])
    scores, _, _ = aggregate_by_video(logits, np.array([7, 7]), np.array([1, 1]))
    np.testing.assert_allclose(scores, [[0.5, 0.5]], atol=1e-12)


def test_aggregate_by_video_rejects_conflicting_labels() -> None:
    probs = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="different labels.*'a'"):
        aggregate_by_video(probs, np.array(["a", "b", "a"]), np.array([0, 1, 1]), from_logits=False)


def test_detection_metrics_threshold_from_validation_at_10_percent_fpr() -> None:
    val_real = [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.90]
    val_fake = [0.20, 0.42, 0.50, 0.55, 0.60, 0.70, 0.80, 0.85, 0.92, 0.95]
    # Validation: FPR <= 10% allows only the real at 0.90 above threshold, so the threshold
    # must exceed the real at 0.45; the lowest such score is the fake at 0.50:
    # val FPR = 1/10, val TPR = 8/10 (fakes 0.20 and 0.42 fall below).
    test_real = [0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.52, 0.58, 0.65, 0.75]
    test_fake = [0.45, 0.60, 0.70, 0.80, 0.85, 0.90, 0.92, 0.95, 0.97, 0.99]
    # Test at 0.50 (>= is fake): reals 0.50, 0.52, 0.58, 0.65, 0.75 -> FPR 5/10;
    # fakes below: 0.45 -> FNR 1/10; HTER 0.3. (A test-optimal threshold of 0.76 would
    # give FPR 0, FNR 3/10, HTER 0.15: the validation threshold is not the test-optimal one.)
    # Test AUC: reals below each fake: 0.45 -> 5, 0.60 -> 8, 0.70 -> 9, the other 7 -> 10
    # each: (5 + 8 + 9 + 70) / 100 = 0.92.
    result = detection_metrics(
        np.array(val_real + val_fake),
        np.array([False] * 10 + [True] * 10),
        np.array(test_real + test_fake),
        np.array([False] * 10 + [True] * 10),
        target_fpr=0.10,
    )
    assert result["threshold"] == 0.50
    assert result["val_fpr"] == pytest.approx(0.1)
    assert result["val_tpr"] == pytest.approx(0.8)
    assert result["test_fpr"] == pytest.approx(0.5)
    assert result["test_fnr"] == pytest.approx(0.1)
    assert result["test_hter"] == pytest.approx(0.3)
    assert result["test_auc"] == pytest.approx(0.92)


def test_detection_metrics_tied_reals_that_would_exceed_target_are_excluded() -> None:
    # Two reals tie at 0.9: accepting them gives FPR 2/10 > 10%, so the threshold stays
    # above 0.9, at the fake 0.95: val FPR 0, TPR 1/4. On the test split the real at 0.9
    # is below 0.95 (FPR 0) and fakes 0.5 and 0.9 are missed (FNR 2/3).
    val_scores = np.array([0.1] * 8 + [0.9, 0.9] + [0.95, 0.8, 0.7, 0.6])
    val_is_fake = np.array([False] * 10 + [True] * 4)
    result = detection_metrics(
        val_scores, val_is_fake, np.array([0.9, 0.2, 0.5, 0.9, 0.99]), [0, 0, 1, 1, 1]
    )
    assert result["threshold"] == 0.95
    assert result["val_fpr"] == 0.0
    assert result["val_tpr"] == pytest.approx(0.25)
    assert result["test_fpr"] == 0.0
    assert result["test_fnr"] == pytest.approx(2 / 3)
    assert result["test_hter"] == pytest.approx(1 / 3)


def test_oscr_hand_computed_with_tie() -> None:
    known = np.array([0.9, 0.8, 0.6, 0.4])
    correct = np.array([True, False, True, True])
    unknown = np.array([0.7, 0.6, 0.2])  # 0.6 ties with a correct known sample
    # Thresholds high to low -> (FPR, CCR), Nk = 4, Nu = 3:
    #   +inf (0, 0); 0.9 (0, 1/4); 0.8 (0, 1/4) [wrong known]; 0.7 (1/3, 1/4);
    #   0.6 (2/3, 2/4) [tie: known and unknown enter together]; 0.4 (2/3, 3/4); 0.2 (1, 3/4).
    # Trapezoids: 1/3 * 1/4 + 1/3 * (1/4 + 2/4) / 2 + 0 + 1/3 * 3/4
    #           = 1/12 + 1/8 + 1/4 = 11/24.
    # (Breaking the tie known-first would give 1/2, unknown-first 5/12.)
    assert oscr(known, unknown, correct) == pytest.approx(11 / 24)

    result = open_set_metrics(known, unknown, correct)
    assert result["oscr"] == pytest.approx(11 / 24)
    assert result["known_accuracy"] == pytest.approx(3 / 4)
    # AUROC: knowns beating each unknown: 0.9 -> 3, 0.8 -> 3, 0.6 -> 1 + 0.5 tie, 0.4 -> 1.
    assert result["auroc"] == pytest.approx(8.5 / 12)


def test_oscr_perfect_separation_equals_accuracy() -> None:
    # All knowns above all unknowns: the curve climbs to CCR = accuracy at FPR 0.
    assert oscr([0.9, 0.8, 0.7], [0.1, 0.2], [True, False, True]) == pytest.approx(2 / 3)


def test_open_set_auroc_and_tnr_at_95_tpr() -> None:
    known = np.arange(1, 21) / 20  # 0.05, 0.10, ..., 1.00
    unknown = np.array([0.0, 0.02, 0.07, 0.10, 0.50])
    # TPR >= 95% needs 19 of 20 knowns accepted -> threshold 0.10. Unknowns rejected
    # (score < 0.10): 0.0, 0.02, 0.07; 0.10 ties and is accepted. TNR = 3/5.
    # AUROC: knowns above each unknown: 20, 20, 19, 18 + 0.5 tie, 10 + 0.5 tie = 88 / 100.
    result = open_set_metrics(known, unknown, np.ones(20, dtype=bool))
    assert result["threshold_at_95tpr"] == pytest.approx(0.10)
    assert result["tnr_at_95tpr"] == pytest.approx(0.6)
    assert result["auroc"] == pytest.approx(0.88)


def _blobs(
    rng: np.random.Generator, per_class: int, spread: float
) -> tuple[np.ndarray, np.ndarray]:
    centers = 10.0 * np.eye(3, 8)
    labels = np.repeat(np.arange(3), per_class)
    points = centers[labels] + spread * rng.standard_normal((labels.size, 8))
    return points, labels


def test_embedding_protocols_separate_blobs_perfectly() -> None:
    rng = np.random.default_rng(0)
    train_x, train_y = _blobs(rng, per_class=10, spread=0.5)
    test_x, test_y = _blobs(rng, per_class=7, spread=0.5)
    result = embedding_protocols(train_x, train_y, test_x, test_y, k=14, seed=0)
    for protocol in ("knn", "logreg", "linear_svm"):
        assert result[protocol] == {"accuracy": 1.0, "macro_f1": 1.0}
    assert result["knn_k"] == 14


def test_embedding_protocols_caps_k_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    train_x, train_y = _blobs(rng, per_class=3, spread=8.0)  # 9 samples, overlapping
    test_x, test_y = _blobs(rng, per_class=20, spread=8.0)
    first = embedding_protocols(train_x, train_y, test_x, test_y, k=14, seed=3)
    second = embedding_protocols(train_x, train_y, test_x, test_y, k=14, seed=3)
    assert first["knn_k"] == 9
    assert first == second
    assert first["logreg"]["accuracy"] < 1.0  # overlapping blobs: a non-trivial result


# ----------------------------------------------------------------------------- paired drop


def test_paired_drop_of_identical_and_opposite_results() -> None:
    right = np.array([1, 1, 0, 1, 0, 1])
    same = paired_accuracy_drop(right, right)
    assert (same["drop"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    assert (same["videos"], same["groups"]) == (6, 6)
    flip = paired_accuracy_drop(np.ones(6, bool), np.zeros(6, bool))
    assert (flip["drop"], flip["low"], flip["high"]) == (1.0, 1.0, 1.0)


def test_paired_drop_cancels_videos_right_at_both_qualities() -> None:
    # 40 videos, 36 right at both qualities, 4 right only at the reference: the drop is
    # 0.1. Paired, only the 4 discordant videos vary between resamples, so the interval
    # is bounded by 0 below; an unpaired reading (two accuracies 1.0 and 0.9 with their
    # own resampling) would reach below 0.
    ref = np.ones(40, bool)
    other = ref.copy()
    other[:4] = False
    d = paired_accuracy_drop(ref, other)
    assert d["drop"] == pytest.approx(0.1)
    assert d["low"] >= 0.0 and 0.1 < d["high"] < 0.25


def test_paired_drop_resamples_groups_whole() -> None:
    # The same 4 discordant videos, now all from one source of 10 (4 videos each): a
    # resample holds that source 0, 1, 2, ... times, so the interval is wider than with
    # 40 independent videos (binomial 97.5% points: 3 of 10 groups = 0.3 vs 8 of 40 = 0.2).
    ref = np.ones(40, bool)
    other = ref.copy()
    other[:4] = False
    groups = np.repeat(np.arange(10), 4)
    grouped = paired_accuracy_drop(ref, other, groups)
    single = paired_accuracy_drop(ref, other)
    assert grouped["groups"] == 10 and grouped["drop"] == pytest.approx(0.1)
    assert grouped["low"] == 0.0 and grouped["high"] == pytest.approx(0.3)
    assert single["high"] == pytest.approx(0.2)


def test_paired_drop_averages_models_over_the_same_videos() -> None:
    ref = np.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    other = np.array([[1, 0, 1, 1], [0, 1, 1, 0]])
    d = paired_accuracy_drop(ref, other)
    assert d["drop"] == pytest.approx((0.25 + 0.25) / 2) and d["videos"] == 4
    assert d["low"] <= d["drop"] <= d["high"]


def test_paired_drop_is_seeded() -> None:
    rng = np.random.default_rng(3)
    ref, other = rng.random(30) < 0.8, rng.random(30) < 0.6
    assert paired_accuracy_drop(ref, other, seed=1) == paired_accuracy_drop(ref, other, seed=1)


def test_paired_drop_needs_two_groups_for_an_interval() -> None:
    d = paired_accuracy_drop([1, 1, 0], [0, 1, 0], groups=["a", "a", "a"])
    assert d["drop"] == pytest.approx(1 / 3) and d["groups"] == 1
    assert math.isnan(d["low"]) and math.isnan(d["high"])


@pytest.mark.parametrize(
    ("reference", "other", "groups", "message"),
    [
        ([1, 0, 1], [1, 0], None, "alike"),
        ([], [], None, "no videos"),
        ([1, 2, 0], [1, 0, 0], None, "correctness"),
        ([1, 0, 1], [1, 0, 0], ["a", "b"], "length mismatch"),
    ],
)
def test_paired_drop_rejects_bad_input(reference, other, groups, message) -> None:
    with pytest.raises(ValueError, match=message):
        paired_accuracy_drop(reference, other, groups)


def test_grouped_accuracy_resamples_whole_trainings_within_each_class():
    # class a: trainings a1 (all right) and a2 (all wrong); class b: b1, b2 both half right
    groups = ["a1"] * 4 + ["a2"] * 4 + ["b1"] * 4 + ["b2"] * 4
    strata = ["a"] * 8 + ["b"] * 8
    correct = [1] * 4 + [0] * 4 + [1, 1, 0, 0] * 2
    out = grouped_accuracy(correct, groups, strata, n_resamples=4000, seed=1)
    assert out["accuracy"] == 0.5 and out["groups"] == 4 and out["videos"] == 16
    assert out["per_group"] == {"a1": 1.0, "a2": 0.0, "b1": 0.5, "b2": 0.5}
    # a resample holds two trainings of a (0, 1 or 2 right ones) and two of b (always half):
    # accuracy 0.25, 0.5 or 0.75, the extremes with probability 1/4 each
    assert out["low"] == 0.25 and out["high"] == 0.75
    one_each = grouped_accuracy(correct[:4] + correct[8:12], groups[:4] + groups[8:12],
                                strata[:4] + strata[8:12])  # fmt: skip
    assert np.isnan(one_each["low"]) and np.isnan(one_each["high"])
    with pytest.raises(ValueError, match="spans more than one stratum"):
        grouped_accuracy([1, 0], ["g", "g"], ["a", "b"])
