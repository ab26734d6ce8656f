"""The ``report.md`` and CSV rows of ``evaluate compare`` (the paper's Tables 3 and 4)."""

from __future__ import annotations

from typing import Any

from attribnet.report.tables import md_table


def compare_rows(metrics: dict[str, Any], level: str) -> list[list[Any]]:
    """One row per recipe: backbone, attention settings, per-class accuracy, overall,
    macro-F1; the non-deep baseline last (video level)."""
    names = metrics["class_names"]
    rows = []
    for entry in metrics["recipes"]:
        m, r = entry["model"], entry[level]
        rows.append(
            [
                entry["name"],
                m["backbone"],
                m["sam"],
                m["channel_attention"],
                m["fusion"],
                *(r["per_class_accuracy"][n] for n in names),
                r["accuracy"],
                r["macro_f1"],
            ]
        )
    baseline = metrics.get("baseline")
    if baseline and level == "video":
        r = baseline["video"]
        rows.append(
            [
                baseline["name"],
                "-",
                "-",
                "-",
                "-",
                *(r["per_class_accuracy"][n] for n in names),
                r["accuracy"],
                r["macro_f1"],
            ]
        )
    return rows


def compare_header(metrics: dict[str, Any]) -> list[str]:
    """Header of :func:`compare_rows`."""
    return [
        "recipe",
        "backbone",
        "sam",
        "channel_attention",
        "fusion",
        *metrics["class_names"],
        "overall",
        "macro_f1",
    ]


def compare_markdown(metrics: dict[str, Any]) -> str:
    """The ``report.md`` of ``evaluate compare`` (the paper's Tables 3 and 4)."""
    header = compare_header(metrics)
    qualities = ", ".join(metrics["qualities"]) or "each recipe's eval_qualities (else all)"
    demo = " Demo-sized variants (`--demo`)." if metrics["demo"] else ""
    lines = [
        "# Recipes compared (per-class test accuracy)",
        "",
        f"Test split, qualities: {qualities}; up to {metrics['clips_per_video']} clips per "
        f"video.{demo}",
        "",
        "## Video level",
        "",
        md_table(header, compare_rows(metrics, "video")),
        "",
        "## Clip level",
        "",
        md_table(header, compare_rows(metrics, "clip")),
        "",
        "Checkpoints: "
        + ", ".join(f"{e['name']} = `{e['checkpoint']}`" for e in metrics["recipes"]),
        "",
        f"Tables: [CSV]({metrics['files']['csv']}), [metrics.json](metrics.json).",
        "",
    ]
    return "\n".join(lines)
