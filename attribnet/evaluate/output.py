"""Writing helpers shared by the commands: JSON-ready metrics, and confusion matrices as
PNG + CSV pairs (:func:`attribnet.report.plot_confusion`, :func:`attribnet.report.confusion_csv`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from attribnet import report


def json_ready(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays as Python values and NaN/inf floats as None."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        return json_ready(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def file_tag(text: str) -> str:
    """``text`` made safe for a file name (``none`` when empty)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "none"


def write_confusions(out_dir: Path, closed: dict[str, Any], names: list[str]) -> dict[str, str]:
    """confusion_<level>[_<quality>].png/.csv for every closed-set report."""
    reports = {level: (f"{level} level", closed[level]) for level in ("clip", "video")}
    for quality, levels in closed.get("per_quality", {}).items():
        for level, r in levels.items():
            reports[f"{level}_{file_tag(quality)}"] = (f"{level} level, {quality}", r)
    files: dict[str, str] = {}
    for key, (title, r) in reports.items():
        stem = f"confusion_{key}"
        files[stem], files[f"{stem}_csv"] = write_confusion(out_dir, stem, title, r, names)
    return files


def write_confusion(
    out_dir: Path, stem: str, title: str, closed: dict[str, Any], names: list[str]
) -> tuple[str, str]:
    """<stem>.png (titled with the accuracy) and <stem>.csv of one closed-set report's
    confusion matrix; returns the two file names."""
    title = f"{title} (accuracy {closed['accuracy']:.3f})"
    report.plot_confusion(closed["confusion_matrix"], names, out_dir / f"{stem}.png", title)
    report.confusion_csv(closed["confusion_matrix"], names, out_dir / f"{stem}.csv")
    return f"{stem}.png", f"{stem}.csv"
