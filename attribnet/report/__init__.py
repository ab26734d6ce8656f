"""Evaluation outputs: confusion matrices, heatmaps and t-SNE plots (PNG, matplotlib Agg),
CSV tables, and the ``report.md`` of each ``python -m attribnet.evaluate`` command.

Every file is written atomically (temp file + rename). Numbers come in as the JSON-ready
``metrics`` dicts of :mod:`attribnet.evaluate` (undefined values are ``None``).

- :mod:`.tables`         table cells, Markdown tables, CSV files
- :mod:`.plots`          confusion matrix, heatmap and t-SNE PNGs
- :mod:`.run`            ``evaluate run``
- :mod:`.cross_quality`  ``evaluate cross-quality``
- :mod:`.compare`        ``evaluate compare``
- :mod:`.training`       the Training section of the table commands
"""

from attribnet.report.compare import compare_header, compare_markdown, compare_rows
from attribnet.report.cross_quality import (
    cross_quality_header,
    cross_quality_markdown,
    cross_quality_rows,
    drop_cell,
)
from attribnet.report.plots import (
    colours,
    plot_confusion,
    plot_heatmap,
    plot_tsne,
    pyplot,
    save_figure,
)
from attribnet.report.run import run_markdown
from attribnet.report.tables import confusion_csv, fmt, md_table, write_csv
from attribnet.report.training import training_section

__all__ = [
    "compare_header",
    "compare_rows",
    "compare_markdown",
    "colours",
    "confusion_csv",
    "cross_quality_header",
    "cross_quality_markdown",
    "cross_quality_rows",
    "drop_cell",
    "fmt",
    "md_table",
    "plot_confusion",
    "plot_heatmap",
    "plot_tsne",
    "pyplot",
    "run_markdown",
    "save_figure",
    "training_section",
    "write_csv",
]
