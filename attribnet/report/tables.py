"""Table cells, Markdown tables and CSV files (the confusion matrix's CSV included).

Numbers are shown with three decimals; ``-`` marks an undefined value (``None`` in the
JSON-ready metrics, e.g. the accuracy of a class without test videos). CSV files are
written atomically (temp file + rename) and keep full precision.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attribnet.files.atomic import write_text


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` decimals, ``-`` for None/NaN, else ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; cells go through :func:`fmt`."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(
    path: str | os.PathLike[str], header: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Path:
    """Write a CSV table atomically (None -> empty cell, floats at full precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if c is None else c for c in row] for row in rows])
    write_text(path, buffer.getvalue())
    return Path(path)


def confusion_csv(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | os.PathLike[str]
) -> Path:
    """Confusion matrix (K, K) as CSV: header ``true\\predicted,<names>``, one row per true
    class."""
    rows = [[name, *map(int, row)] for name, row in zip(class_names, matrix, strict=True)]
    return write_csv(path, ["true\\predicted", *class_names], rows)
