"""Robustness evaluation of attribution models: ``python -m attribnet.evaluate
{run,cross-quality,compare,open-set} ... --out <dir>`` (the command line: :mod:`.cli`).

One concept per module, in the order data flows through them:

- :mod:`.options`       :class:`EvalOptions`, how to evaluate (split, qualities, clips per video)
- :mod:`.loaded_model`  :class:`LoadedModel`, a checkpoint loaded for evaluation
- :mod:`.source`        :class:`EvalSource`, the videos to evaluate
- :mod:`.predictions`   model outputs per clip and per video (:func:`evaluate_entries`)
- :mod:`.protocols`     closed-set, embedding, index, detection and open-set metrics
- :mod:`.output`        JSON-ready metrics and confusion-matrix PNG + CSV files
- :mod:`.run`           ``evaluate run``: one checkpoint, its report folder
- :mod:`.training`      reuse / resume / train the runs behind the table commands
- :mod:`.cross_quality_table`  ``evaluate cross-quality`` (the paper's Table 5)
- :mod:`.compare_table`       ``evaluate compare`` (the paper's Tables 3 and 4)
- :mod:`.cli`           argument parsing and :func:`main`

Markdown, plots and CSV tables come from :mod:`attribnet.report`.
"""

from attribnet.evaluate.compare_table import (
    DEMO_MODEL_KEYS,
    DEMO_SECTIONS,
    compare,
    compare_recipe,
    default_demo_recipe,
    demo_variant,
    write_compare,
)
from attribnet.evaluate.cross_quality_table import (
    cross_quality,
    quality_variants,
    write_cross_quality,
)
from attribnet.evaluate.loaded_model import LoadedModel, load_checkpoint, resolve_device
from attribnet.evaluate.options import EvalOptions
from attribnet.evaluate.output import json_ready
from attribnet.evaluate.predictions import (
    Outputs,
    VideoOutputs,
    class_scores,
    evaluate_entries,
    prediction_rule,
    to_videos,
)
from attribnet.evaluate.protocols import (
    DETECTION_FPR,
    REAL,
    closed_set_metrics,
    detection,
    embedding_metrics,
    index_metrics,
    open_set,
    prototype_scores,
    quality_order,
)
from attribnet.evaluate.run import UNKNOWN, RunResult, evaluate_model, write_run
from attribnet.evaluate.source import (
    EvalSource,
    manifest_source,
    open_source,
    select,
)
from attribnet.evaluate.training import train_or_reuse

__all__ = [
    "DEMO_MODEL_KEYS",
    "DEMO_SECTIONS",
    "DETECTION_FPR",
    "REAL",
    "UNKNOWN",
    "EvalOptions",
    "EvalSource",
    "LoadedModel",
    "Outputs",
    "RunResult",
    "VideoOutputs",
    "compare_recipe",
    "compare",
    "class_scores",
    "closed_set_metrics",
    "cross_quality",
    "default_demo_recipe",
    "demo_variant",
    "detection",
    "embedding_metrics",
    "evaluate_entries",
    "evaluate_model",
    "index_metrics",
    "json_ready",
    "load_checkpoint",
    "manifest_source",
    "open_set",
    "open_source",
    "prediction_rule",
    "prototype_scores",
    "quality_order",
    "quality_variants",
    "resolve_device",
    "select",
    "to_videos",
    "train_or_reuse",
    "write_compare",
    "write_cross_quality",
    "write_run",
]
