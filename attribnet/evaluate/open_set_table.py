"""``evaluate open-set``: leave one generator out, over every class of a recipe's data.

For each class c, a model trained on the other classes (trained, resumed or reused like the
cross-quality table's runs, named ``<recipe>_logo_<c>``) is evaluated with c's TEST-split
videos as the unknowns and the other classes' test videos as the knowns. Splits keep a
source in one split, and an unknown whose source is in a training or validation video of a
known class is left out anyway, so no unknown shares source content with what the model saw.
Per held-out class and on average: AUROC, OSCR and TNR at 95% TPR of every knownness score
the evaluation computes (:func:`attribnet.evaluate.protocols.open_set`), with the score of
the unknown verdict (``primary``, the run's generator index's when it has one) marked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from attribnet import report
from attribnet.config import Recipe
from attribnet.data.manifest import ManifestRow, class_names, write_manifest
from attribnet.data.sources import read_rows, training_manifest
from attribnet.errors import ConfigError, DataError, IndexMismatchError
from attribnet.evaluate.cross_quality_table import training_summary
from attribnet.evaluate.loaded_model import load_checkpoint, resolve_device
from attribnet.evaluate.options import EvalOptions
from attribnet.evaluate.output import file_tag, json_ready
from attribnet.evaluate.run import evaluate_model
from attribnet.evaluate.source import recipe_data
from attribnet.evaluate.training import TrainedRun, prepare_run, recipe_changes
from attribnet.files.atomic import write_json, write_text
from attribnet.index import GeneratorIndex, build_index_for_run

log = logging.getLogger(__name__)

MIN_CLASSES = 3
UNKNOWN_SPLIT = "test"
SEEN_SPLITS = ("train", "val")
METRIC_KEYS = ("auroc", "oscr", "tnr_at_95tpr")
METRIC_TITLES = {"auroc": "AUROC", "oscr": "OSCR", "tnr_at_95tpr": "TNR@95TPR"}
MEAN_ROW = "mean"


def recipe_rows(base: Recipe) -> list[ManifestRow]:
    """The rows the recipe trains on, with training's splits (the demo set is generated
    when missing)."""
    return read_rows(training_manifest(base), base.train.seed)


def check_classes(names: Sequence[str]) -> None:
    """Raises ConfigError for a repeated class or fewer than :data:`MIN_CLASSES` classes
    (holding one out must leave two known)."""
    if len(set(names)) != len(names):
        raise ConfigError(f"data.classes repeats a class: {list(names)}")
    if len(names) < MIN_CLASSES:
        raise ConfigError(
            f"open-set needs at least {MIN_CLASSES} classes, got {len(names)} {list(names)}: "
            f"holding one out would leave {max(len(names) - 1, 0)} known"
        )


def recipe_classes(base: Recipe, rows: Sequence[ManifestRow]) -> list[str]:
    """The classes to hold out in turn: ``data.classes``, else every label of ``rows`` but
    the recipe's ``data.outlier_classes`` (trained on as "none of the known", so never a
    class and never an unseen generator) (:func:`check_classes`; ConfigError as well for
    a class without videos)."""
    present = {r.label for r in rows}
    outliers = set(base.data.outlier_classes)
    names = list(base.data.classes) or [n for n in class_names(list(rows)) if n not in outliers]
    absent = [n for n in names if n not in present]
    if absent:
        raise ConfigError(
            f"data.classes names {absent}, which the manifest has no videos of "
            f"(it has {sorted(present)})"
        )
    check_classes(names)
    return names


def holdout_recipe(base: Recipe, names: Sequence[str], held_out: str) -> Recipe:
    """The recipe trained without ``held_out``: ``data.classes`` = the others (in
    ``names``'s order), named ``<name>_logo_<held_out>``."""
    known = [n for n in names if n != held_out]
    return replace(
        base,
        name=f"{base.name}_logo_{file_tag(held_out)}",
        data=replace(base.data, classes=known),
    )


def unknown_rows(
    rows: Sequence[ManifestRow],
    held_out: str,
    known: Sequence[str],
    qualities: Sequence[str] | None,
) -> tuple[list[ManifestRow], int]:
    """The unknowns of one hold-out: ``held_out``'s test-split rows (at ``qualities``, all
    when None) whose source is in no train/val row of a ``known`` class; returns them and
    how many test rows were left out for sharing a source.

    Raises DataError when none is left."""
    seen = {r.source_id for r in rows if r.label in known and r.split in SEEN_SPLITS}
    test = [
        r
        for r in rows
        if r.label == held_out
        and r.split == UNKNOWN_SPLIT
        and (not qualities or r.quality in qualities)
    ]
    kept = [r for r in test if not r.source_id or r.source_id not in seen]
    if len(kept) < len(test):
        log.warning(
            "%s: leaving out %d test video(s) whose source is in a known class's train/val video",
            held_out,
            len(test) - len(kept),
        )
    if not kept:
        raise DataError(
            f"no {UNKNOWN_SPLIT} videos of {held_out!r} to hold out"
            + (f" at qualities {list(qualities)}" if qualities else "")
            + (" whose source no training video shares" if test else "")
        )
    return kept, len(test) - len(kept)


def run_index(recipe: Recipe, run: TrainedRun, device: str) -> dict[str, str] | None:
    """The generator index of a run, whose verdict score is the row's ``primary``: the one
    training wrote (``found``), else built now (``built``). None when the recipe makes no
    index (no embedding head, or ``train.build_index`` false)."""
    if not (recipe.model.embedding_dim and recipe.train.build_index):
        return None
    folder = Path(recipe.train.index_dir) / recipe.name
    try:
        GeneratorIndex.load(folder, run.checkpoint, use_gpu=False)
        return {"path": str(folder), "action": "found"}
    except (DataError, IndexMismatchError) as exc:
        log.info("building the generator index %s (%s)", folder, exc)
    build_index_for_run(run.checkpoint, folder, device=resolve_device(device))
    return {"path": str(folder), "action": "built"}


def evaluate_holdout(
    recipe: Recipe,
    held_out: str,
    run: TrainedRun,
    index: dict[str, str] | None,
    unknown_manifest: Path,
    opts: EvalOptions,
    device: str,
) -> dict[str, Any]:
    """One row of the table: the open-set metrics of the run trained without ``held_out``,
    with ``unknown_manifest``'s videos as the unknowns."""
    loaded = load_checkpoint(run.checkpoint, device)
    if held_out in loaded.class_names:
        raise DataError(f"{run.checkpoint} was trained on {held_out!r}: delete {run.run_dir}")
    cell = replace(
        recipe_data(recipe, opts),
        unknown_manifest=str(unknown_manifest),
        index=index["path"] if index else None,
        tsne=False,
    )
    result = evaluate_model(loaded, cell)
    ops = result.metrics["open_set"]
    return {
        "known_classes": loaded.class_names,
        "run": run.name,
        "checkpoint": str(run.checkpoint),
        "index": index,
        "unknown_manifest": unknown_manifest.name,
        "known_videos": ops["known_videos"],
        "unknown_videos": ops["unknown_videos"],
        "known_accuracy": result.metrics["closed_set"]["video"]["accuracy"],
        "qualities": result.metrics["data"]["qualities"],
        "prototypes_from": ops.get("prototypes_from"),
        "primary": ops["primary"],
        "scores": {name: ops[name] for name in ops["scores"]},
    }


def leave_one_out(
    base: Recipe,
    opts: EvalOptions,
    device: str,
    out_dir: Path,
    recipe_path: str | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Train (or reuse) and evaluate one model per held-out class; the unknown manifests
    (``unknown_<class>.csv``) are written into ``out_dir``. Everything is checked before
    the first training (an explicit ``data.classes`` before the demo set is generated)."""
    if base.data.classes:
        check_classes(base.data.classes)
    rows = recipe_rows(base)
    names = recipe_classes(base, rows)
    qualities = opts.qualities or base.data.eval_qualities or None
    opts = replace(opts, qualities=qualities)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipes, manifests, left_out = {}, {}, {}
    for c in names:
        recipes[c] = holdout_recipe(base, names, c)
        unknown, left_out[c] = unknown_rows(rows, c, recipes[c].data.classes, qualities)
        manifests[c] = out_dir / f"unknown_{file_tag(c)}.csv"
        write_manifest(unknown, manifests[c])
    runs, table = {}, {}
    for c in names:
        runs[c] = prepare_run(recipes[c])
        index = run_index(recipes[c], runs[c], device)
        table[c] = evaluate_holdout(recipes[c], c, runs[c], index, manifests[c], opts, device)
        table[c]["shared_source_left_out"] = left_out[c]
        log.info("held out %s: primary %s, %s", c, table[c]["primary"], _auroc_text(table[c]))
    changes = {c: recipe_changes(base, r) for c, r in recipes.items()}
    table = json_ready(table)
    scores = score_names(table)
    return {
        "classes": names,
        "unknown_split": UNKNOWN_SPLIT,
        "qualities": qualities or [],
        "clips_per_video": opts.clips_per_video,
        "score_names": scores,
        "metric_keys": list(METRIC_KEYS),
        "rows": table,
        "mean": mean_scores(table, scores),
        "verdict_mean": verdict_mean(table),
        "training": training_summary(runs, changes, recipe_path, overrides),
    }


def _auroc_text(row: dict[str, Any]) -> str:
    return ", ".join(f"{s} AUROC {report.fmt(m.get('auroc'))}" for s, m in row["scores"].items())


def score_names(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Every score some row computed, in the order the rows name them."""
    out: list[str] = []
    for row in rows.values():
        out += [s for s in row["scores"] if s not in out]
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _mean(values: Sequence[Any]) -> float | None:
    numbers = [v for v in map(_number, values) if v is not None]
    return float(np.mean(numbers)) if numbers else None


def mean_scores(rows: dict[str, dict[str, Any]], scores: Sequence[str]) -> dict[str, Any]:
    """Per score: the mean of each :data:`METRIC_KEYS` over the held-out classes where it
    is defined (None where it is nowhere), and ``held_out`` = how many rows have the score."""
    out: dict[str, Any] = {}
    for score in scores:
        have = [row["scores"][score] for row in rows.values() if score in row["scores"]]
        out[score] = {k: _mean([m.get(k) for m in have]) for k in METRIC_KEYS}
        out[score]["held_out"] = len(have)
    return out


def verdict_mean(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The mean of each row's ``primary`` score's metrics (what the unknown verdict gets,
    whichever score each row's index chose)."""
    have = [row["scores"].get(row["primary"], {}) for row in rows.values()]
    return {k: _mean([m.get(k) for m in have]) for k in METRIC_KEYS}


def table_header(scores: Sequence[str]) -> list[str]:
    """Columns of the report's table: the row, its counts and verdict, then per score its
    :data:`METRIC_KEYS`."""
    head = ["held out", "unknown videos", "known videos", "known accuracy", "verdict score"]
    return head + [f"{s} {METRIC_TITLES[k]}" for s in scores for k in METRIC_KEYS]


def table_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """One row per held-out class (its verdict score's cells in bold), then the mean."""
    scores, out = metrics["score_names"], []
    for name, row in metrics["rows"].items():
        cells = []
        for score in scores:
            values = row["scores"].get(score, {})
            bold = score == row["primary"]
            cells += [_cell(values.get(k), bold) for k in METRIC_KEYS]
        counts = [row["unknown_videos"], row["known_videos"], row["known_accuracy"]]
        out.append([name, *counts, row["primary"], *cells])
    primaries = sorted({row["primary"] for row in metrics["rows"].values()})
    mean = [metrics["mean"][s][k] for s in scores for k in METRIC_KEYS]
    out.append([f"**{MEAN_ROW}**", "", "", "", " / ".join(primaries), *mean])
    return out


def _cell(value: Any, bold: bool) -> str:
    text = report.fmt(value)
    return f"**{text}**" if bold and value is not None else text


def open_set_markdown(metrics: dict[str, Any]) -> str:
    """The ``report.md`` of ``evaluate open-set``."""
    verdict, rows = metrics["verdict_mean"], metrics["rows"].values()
    qualities = ", ".join(metrics["qualities"]) or "all"
    lines = [
        "# Open set: leave one generator out",
        "",
        f"Each row: a model trained without the held-out class, evaluated with that class's "
        f"**{metrics['unknown_split']}-split** videos as the unknowns (none shares a source "
        "with a training or validation video of the known classes) and the known classes' "
        f"test videos as the knowns; video level, up to {metrics['clips_per_video']} clips per "
        f"video, qualities: {qualities}. Knownness scores as `evaluate run` computes them; "
        "the row's unknown-verdict score (the index's, else the evaluation's primary) is in "
        "bold. The mean row averages over the held-out classes.",
        "",
        report.md_table(table_header(metrics["score_names"]), table_rows(metrics)),
        "",
        "Mean over held-out classes of each row's verdict score: "
        + ", ".join(f"{METRIC_TITLES[k]} {report.fmt(verdict[k])}" for k in METRIC_KEYS)
        + ".",
        "",
        *report.training_section(metrics),
        "Unknown manifests: "
        + ", ".join(f"[{m}]({m})" for m in (r["unknown_manifest"] for r in rows))
        + ". Numbers: [metrics.json](metrics.json).",
        "",
    ]
    return "\n".join(lines)


def write_open_set(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json and report.md of ``evaluate open-set``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = json_ready(metrics)
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "report.md", open_set_markdown(metrics))
    return metrics
