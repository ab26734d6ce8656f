"""The ``report.md`` and CSV rows of ``evaluate cross-quality`` (train quality -> test
quality)."""

from __future__ import annotations

from typing import Any

from attribnet.report.tables import md_table
from attribnet.report.training import training_section


def cross_quality_rows(metrics: dict[str, Any], level: str) -> list[list[Any]]:
    """Long table: one row per (train, test) cell with per-class accuracy, overall, F1."""
    names = metrics["class_names"]
    rows = []
    for train, cells in metrics["cells"].items():
        for test, cell in cells.items():
            r = cell[level]
            rows.append(
                [
                    train,
                    test,
                    *(r["per_class_accuracy"][n] for n in names),
                    r["accuracy"],
                    r["macro_f1"],
                    sum(r["support"].values()),
                ]
            )
    return rows


def cross_quality_header(metrics: dict[str, Any]) -> list[str]:
    """Header of :func:`cross_quality_rows`."""
    return ["train", "test", *metrics["class_names"], "overall", "macro_f1", "count"]


def _cell_confusion_section(metrics: dict[str, Any]) -> list[str]:
    """Links to the confusion matrix (PNG, CSV) of every train -> test cell."""
    files = metrics["files"].get("confusion")
    if not files:
        return []
    tests = metrics["test_qualities"]
    rows = [
        [row, *(f"[PNG]({files[row][q]['png']}), [CSV]({files[row][q]['csv']})" for q in tests)]
        for row in metrics["train_rows"]
    ]
    return [
        "## Confusion matrices per cell (video level)",
        "",
        "Rows of each matrix = true class, columns = predicted class.",
        "",
        md_table(["train \\ test", *tests], rows),
        "",
    ]


def drop_cell(drop: dict[str, Any] | None) -> str:
    """A :func:`attribnet.metrics.paired_accuracy_drop` in points: ``drop [low, high]``;
    ``-`` for none (a diagonal cell)."""
    if drop is None:
        return "-"
    return f"{100 * drop['drop']:.1f} [{100 * drop['low']:.1f}, {100 * drop['high']:.1f}]"


def _drops_section(metrics: dict[str, Any]) -> list[str]:
    """Per row, each cell's video-level drop from the row's diagonal with its interval."""
    drops = {row: cells for row, cells in (metrics.get("drops") or {}).items() if cells}
    if not drops:
        return []
    tests = metrics["test_qualities"]
    first = next(d for cells in drops.values() for d in cells.values())
    return [
        "## Drop from the training quality (video level, points)",
        "",
        "Accuracy on the row's own quality minus accuracy on the column's, on the same test "
        f"videos, with a {100 * first['confidence']:.0f}% paired bootstrap interval that "
        f"resamples source groups ({first['videos']} videos in {first['groups']} groups). "
        "Positive = worse than on the training quality.",
        "",
        md_table(
            ["train \\ test", *tests],
            [[row, *(drop_cell(cells.get(q)) for q in tests)] for row, cells in drops.items()],
        ),
        "",
    ]


def _baseline_section(metrics: dict[str, Any], header: list[str]) -> list[str]:
    """The non-deep baseline's video-level matrix, fit on each row's training videos."""
    baseline = metrics.get("baseline")
    if not baseline:
        return []
    rows = zip(metrics["train_rows"], baseline["matrix"]["video"], strict=True)
    return [
        f"## Baseline: {baseline['name']}, video-level accuracy",
        "",
        "Fit on the same training videos as each row's model, tested on the same videos. A "
        "model below it has not learnt more than the spectrum's traces.",
        "",
        md_table(header, [[r, *m] for r, m in rows]),
        "",
    ]


def cross_quality_markdown(metrics: dict[str, Any]) -> str:
    """The ``report.md`` of ``evaluate cross-quality``."""
    tests, rows = metrics["test_qualities"], metrics["train_rows"]
    header = ["train \\ test", *tests]
    lines = [
        "# Cross-quality attribution (train quality -> test quality)",
        "",
        f"Mode: `{metrics['train_mode']}`. Each cell: accuracy on the test split of the column's "
        f"quality, up to {metrics['clips_per_video']} clips per video, video level = mean of clip "
        "probabilities.",
        "",
        "## Video-level accuracy",
        "",
        md_table(header, [[r, *m] for r, m in zip(rows, metrics["matrix"]["video"], strict=True)]),
        "",
        f"![cross-quality heatmap]({metrics['files']['heatmap']})",
        "",
        *_baseline_section(metrics, header),
        "## Clip-level accuracy",
        "",
        md_table(header, [[r, *m] for r, m in zip(rows, metrics["matrix"]["clip"], strict=True)]),
        "",
        "## Per-class video-level accuracy",
        "",
        md_table(cross_quality_header(metrics), cross_quality_rows(metrics, "video")),
        "",
        *_drops_section(metrics),
        *_cell_confusion_section(metrics),
        *training_section(metrics),
        "Checkpoints: " + ", ".join(f"{r} = `{p}`" for r, p in metrics["checkpoints"].items()),
        "",
        f"Tables: [CSV]({metrics['files']['csv']}), [metrics.json](metrics.json).",
        "",
    ]
    return "\n".join(lines)
