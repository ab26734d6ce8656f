"""The ``report.md`` and CSV rows of ``evaluate ablations`` (the paper's Table 3)."""

from __future__ import annotations

from typing import Any

from attribnet.report.tables import md_table


def ablation_rows(metrics: dict[str, Any], level: str) -> list[list[Any]]:
    """One row per recipe: attention settings, per-class accuracy, overall, macro-F1."""
    names = metrics["class_names"]
    rows = []
    for entry in metrics["recipes"]:
        m, r = entry["model"], entry[level]
        rows.append(
            [
                entry["name"],
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
                *(r["per_class_accuracy"][n] for n in names),
                r["accuracy"],
                r["macro_f1"],
            ]
        )
    return rows


def ablation_header(metrics: dict[str, Any]) -> list[str]:
    """Header of :func:`ablation_rows`."""
    return [
        "recipe",
        "sam",
        "channel_attention",
        "fusion",
        *metrics["class_names"],
        "overall",
        "macro_f1",
    ]


def ablations_markdown(metrics: dict[str, Any]) -> str:
    """The ``report.md`` of ``evaluate ablations`` (the paper's Table 3)."""
    header = ablation_header(metrics)
    qualities = ", ".join(metrics["qualities"]) or "each recipe's eval_qualities (else all)"
    demo = " Demo-sized variants (`--demo`)." if metrics["demo"] else ""
    lines = [
        "# Ablations (per-class test accuracy)",
        "",
        f"Test split, qualities: {qualities}; up to {metrics['clips_per_video']} clips per "
        f"video.{demo}",
        "",
        "## Video level",
        "",
        md_table(header, ablation_rows(metrics, "video")),
        "",
        "## Clip level",
        "",
        md_table(header, ablation_rows(metrics, "clip")),
        "",
        "Checkpoints: "
        + ", ".join(f"{e['name']} = `{e['checkpoint']}`" for e in metrics["recipes"]),
        "",
        f"Tables: [CSV]({metrics['files']['csv']}), [metrics.json](metrics.json).",
        "",
    ]
    return "\n".join(lines)
