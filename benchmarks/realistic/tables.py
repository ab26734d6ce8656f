"""bench_realistic's tables: accuracies pooled over folds and seeds with a bootstrap interval
over test trainings (or source segments), the cross-instance goals, and the accuracy by test
pair of faces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from common import markdown_table

from attribnet.metrics import grouped_accuracy, paired_accuracy_drop

QUALITIES = ("crf0", "crf10", "crf23")
BASELINE = "DFT baseline"
TARGETS = {"crf0": 0.85, "crf10": 0.75, "crf23": 0.60}
MARGIN, HALF_WIDTH = 0.20, 0.06


def cell_videos(metrics: dict[str, Any], quality: str, baseline: bool) -> dict[str, list]:
    """The per-video results of one model (or its baseline) at one test quality."""
    row = metrics["train_rows"][0]
    if baseline:
        return metrics["baseline"]["rows"][row]["tests"][quality]["videos"]
    return metrics["cells"][row][quality]["videos"]


def summary(runs: Sequence[dict[str, Any]], quality: str, baseline: bool, protocol: str) -> dict:
    """Pooled accuracy over the runs (folds x seeds) at one quality with its interval over
    test trainings (folds) or source segments (paper), and each run's accuracy."""
    videos = [cell_videos(m, quality, baseline) for m in runs]
    correct = np.concatenate([v["correct"] for v in videos]).astype(bool)
    labels = np.concatenate([v["label"] for v in videos])
    if protocol == "folds":  # a pair's replicas share its faces: resampled together
        groups = [i.split("@")[0] for v in videos for i in v["instance"]]
    else:
        groups = np.concatenate([v["group"] for v in videos])
    out = grouped_accuracy(
        correct,
        [f"{lb}/{g}" for lb, g in zip(labels, groups, strict=True)],
        labels,
        n_resamples=4999,
    )
    out.pop("per_group")
    out["per_run"] = [float(np.mean(v["correct"])) for v in videos]
    if protocol == "folds":  # every architecture's trainings of one pair of faces, pooled
        pairs = np.array(groups)
        out["per_pair"] = {p: float(correct[pairs == p].mean()) for p in dict.fromkeys(groups)}
    return out


def gaps_to(runs: dict[str, Sequence[dict[str, Any]]], best: str) -> dict[str, dict]:
    """Each recipe's accuracy, averaged over the test qualities, minus ``best``'s on the same
    videos, with a paired bootstrap interval over trainings (a pair's replicas together):
    what the trainings make hard for both cancels, so two recipes' gap is measured more
    tightly than either accuracy. ``drop`` of :func:`paired_accuracy_drop` is that gap."""

    def videos(ms: Sequence[dict[str, Any]], key: str, quality: str = "crf0") -> list:
        return [x for m in ms for x in cell_videos(m, quality, False)[key]]

    labels, instances = videos(runs[best], "label"), videos(runs[best], "instance")
    groups = [f"{lb}/{i.split('@')[0]}" for lb, i in zip(labels, instances, strict=True)]
    ref = [videos(runs[best], "correct", q) for q in QUALITIES]
    out = {}
    for recipe, ms in runs.items():
        if videos(ms, "label") != labels or videos(ms, "instance") != instances:
            raise ValueError(f"{recipe} and {best} were not evaluated on the same videos")
        out[recipe] = paired_accuracy_drop(
            [videos(ms, "correct", q) for q in QUALITIES], ref, groups
        )
    return out


def cell(s: dict[str, Any]) -> str:
    return f"{s['accuracy']:.3f} [{s['low']:.2f}, {s['high']:.2f}]"


def protocol_table(records: dict[str, dict[str, dict]], protocol: str) -> str:
    headers = ["recipe", *(f"test {q}" for q in QUALITIES), "per run at crf0"]
    rows = [
        [
            label,
            *(cell(r[q]) for q in QUALITIES),
            " ".join(f"{a:.2f}" for a in r["crf0"]["per_run"]),
        ]
        for label, r in records.items()
    ]
    return markdown_table(headers, rows)


def pair_table(records: dict[str, dict[str, dict]], quality: str = "crf0") -> str:
    """Cross-instance accuracy at ``quality`` by test pair of faces (columns: the records)."""
    labels = list(records)
    pairs = list(records[labels[0]][quality]["per_pair"])
    rows = [[p, *(f"{records[lb][quality]['per_pair'][p]:.2f}" for lb in labels)] for p in pairs]
    return markdown_table([f"test pair ({quality})", *labels], rows)


def goals(records: dict[str, dict[str, dict]]) -> list[str]:
    base = records[BASELINE]
    lines = []
    for label, r in records.items():
        if label == BASELINE:
            continue
        for q in QUALITIES:
            s, margin = r[q], r[q]["accuracy"] - base[q]["accuracy"]
            half = (s["high"] - s["low"]) / 2
            ok = s["accuracy"] >= TARGETS[q] and margin >= MARGIN and half <= HALF_WIDTH
            lines.append(
                f"- {label} at {q}: {'yes' if ok else 'NO'} (accuracy {s['accuracy']:.3f}"
                f" vs {TARGETS[q]:.2f}; {100 * margin:+.1f} points over the baseline vs "
                f"+{100 * MARGIN:.0f}; interval half-width {100 * half:.1f} points vs "
                f"{100 * HALF_WIDTH:.0f})"
            )
    return lines
