"""``evaluate cross-quality``, the paper's Table 5: models trained per quality (or one on
every quality), each tested on every quality's test split."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from attribnet import report
from attribnet.config import Recipe
from attribnet.data.manifest import ManifestRow
from attribnet.errors import DataError
from attribnet.evaluate.baseline import NAME as BASELINE_NAME
from attribnet.evaluate.baseline import BaselineScorer
from attribnet.evaluate.loaded_model import load_checkpoint
from attribnet.evaluate.options import EvalOptions
from attribnet.evaluate.output import file_tag, json_ready, write_confusion
from attribnet.evaluate.run import RunResult, evaluate_model
from attribnet.evaluate.source import open_source
from attribnet.evaluate.training import ACTIONS, TrainedRun
from attribnet.files.atomic import write_json, write_text
from attribnet.metrics import paired_accuracy_drop

log = logging.getLogger(__name__)

CELL_LEVEL = "video"
CONFIDENCE = 0.95


def quality_variants(base: Recipe, qualities: Sequence[str], mode: str) -> dict[str, Recipe]:
    """Training recipes of the cross-quality table: row label -> recipe.

    ``per-quality``: one per quality q, trained and validated on q only, named
    ``<name>_<q>``. ``augmented``: one on every quality (with the recipe's compression
    augmentation), named ``<name>_augmented``.
    """
    if mode == "augmented":
        aug = base.data.augment
        if not (aug.h264_p or aug.jpeg_p):
            log.warning("augmented mode but data.augment.h264_p and jpeg_p are 0")
        data = replace(base.data, train_qualities=list(qualities), eval_qualities=list(qualities))
        return {"augmented": replace(base, name=f"{base.name}_augmented", data=data)}
    return {
        q: replace(
            base,
            name=f"{base.name}_{q}",
            data=replace(base.data, train_qualities=[q], eval_qualities=[q]),
        )
        for q in qualities
    }


def cross_quality(
    checkpoints: dict[str, Path], qualities: Sequence[str], opts: EvalOptions, device: str
) -> dict[str, Any]:
    """Metrics of the train -> test table: ``cells[row][quality]`` = {"clip", "video"}
    closed-set reports and ``videos`` (:func:`video_results`); ``matrix[level]`` (rows x
    qualities) overall accuracies; ``drops`` (:func:`quality_drops`)."""
    cells: dict[str, dict[str, Any]] = {}
    class_names: list[str] | None = None
    row_qualities: dict[str, list[str]] = {}
    for row, path in checkpoints.items():
        loaded = load_checkpoint(path, device)
        if class_names is not None and loaded.class_names != class_names:
            raise DataError(f"{path} knows classes {loaded.class_names}, not {class_names}")
        class_names = loaded.class_names
        row_qualities[row] = list(loaded.recipe.data.train_qualities)
        cells[row] = {}
        for q in qualities:
            result = evaluate_model(loaded, replace(opts, qualities=[q], closed_set_only=True))
            cells[row][q] = {**result.metrics["closed_set"], "videos": video_results(result)}
            log.info("%s -> %s: video accuracy %.4f", row, q, cells[row][q]["video"]["accuracy"])
    matrix = {
        level: [[cells[r][q][level]["accuracy"] for q in qualities] for r in checkpoints]
        for level in ("clip", "video")
    }
    image_size = loaded.recipe.data.image_size
    scorer = BaselineScorer(open_source(loaded.recipe, opts), class_names, image_size)
    tests = {q: [q] for q in qualities}
    baseline = {r: scorer.table(row_qualities[r] or None, tests, opts.split) for r in checkpoints}
    return {
        "class_names": class_names,
        "train_rows": list(checkpoints),
        "test_qualities": list(qualities),
        "split": opts.split,
        "clips_per_video": opts.clips_per_video,
        "checkpoints": {r: str(p) for r, p in checkpoints.items()},
        "matrix": matrix,
        "cells": cells,
        "drops": quality_drops([cells]),
        "baseline": {
            "name": BASELINE_NAME,
            "rows": baseline,
            "matrix": {
                "video": [
                    [baseline[r]["tests"][q]["accuracy"] for q in qualities] for r in checkpoints
                ]  # fmt: skip
            },
        },
    }


def pairing_key(row: ManifestRow) -> str:
    """What a test video shares with its renderings at the other qualities: its class,
    source and file name (the quality lives in its folder)."""
    return f"{row.label}/{row.source_id}/{Path(row.path).name}"


def video_results(result: RunResult) -> dict[str, list]:
    """Per test video of one cell: ``key`` (:func:`pairing_key`), ``group`` (its source,
    which the paired bootstrap resamples whole), ``label``, ``instance`` (the generator
    training that made it: what an interval over trainings resamples) and ``correct``
    (video-level prediction right)."""
    out, videos = result.test
    rows = [out.entries[v].row for v in videos.video]
    return {
        "key": [pairing_key(r) for r in rows],
        "group": [r.source_id or r.path for r in rows],
        "label": [r.label for r in rows],
        "instance": [r.instance for r in rows],
        "correct": (videos.probs.argmax(axis=1) == videos.label).tolist(),
    }


def quality_drops(models: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """``drops[row][quality]``: how far a model trained on quality ``row`` falls from its own
    quality's accuracy (the row's diagonal) on ``quality``: ``drop`` with a paired bootstrap
    interval (:func:`attribnet.metrics.paired_accuracy_drop`, ``CONFIDENCE``) over the test
    videos present at both qualities.

    ``models``: the ``cells`` of one or more cross-quality tables of the same test data
    (e.g. one per training seed); ``drop`` is then the mean over them, and the resampling
    keeps a video's results in every table together. Rows that are not a test quality
    (``augmented`` mode) have no diagonal and no drops.
    """
    drops: dict[str, Any] = {}
    for row, tests in models[0].items():
        if row not in tests:
            continue
        drops[row] = {}
        for q in tests:
            if q == row:
                continue
            pairs = [(_by_key(m[row][row]), _by_key(m[row][q])) for m in models]
            keys = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
            if not keys:
                log.warning("%s: no test video is both at %s and at %s: no drop", row, row, q)
                continue
            reference = [[a[k][0] for k in keys] for a, _ in pairs]
            other = [[b[k][0] for k in keys] for _, b in pairs]
            groups = [pairs[0][0][k][1] for k in keys]
            drops[row][q] = paired_accuracy_drop(
                reference, other, groups, confidence=CONFIDENCE, seed=seed
            )
    return drops


def _by_key(cell: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """``{key: (correct, group)}`` of a cell's videos; a key that is not unique (two test
    videos that :func:`pairing_key` cannot tell apart) is left out."""
    videos = cell["videos"]
    count = Counter(videos["key"])
    return {
        k: (bool(c), g)
        for k, g, c in zip(videos["key"], videos["group"], videos["correct"], strict=True)
        if count[k] == 1
    }


def training_summary(
    runs: dict[str, TrainedRun],
    changes: dict[str, dict[str, Any]],
    recipe: str | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """``metrics["training"]``: the base recipe and its ``--set`` overrides; per row its
    run, what was done to it (:data:`~attribnet.evaluate.training.ACTIONS`) and the row's
    own ``changes`` to the recipe (``key=value``); ``counts`` per action."""
    rows = {
        row: {
            "name": run.name,
            "run_dir": str(run.run_dir),
            "action": run.action,
            "recipe_changes": [f"{k}={_setting(v)}" for k, v in changes.get(row, {}).items()],
            "differs": list(run.differs),
        }
        for row, run in runs.items()
    }
    counts = {action: sum(run.action == action for run in runs.values()) for action in ACTIONS}
    return {"recipe": recipe, "overrides": list(overrides), "runs": rows, "counts": counts}


def _setting(value: Any) -> str:
    """A recipe value as ``--set`` takes it (YAML): lists as ``[a, b]``, None as ``null``."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_setting, value)) + "]"
    return value if isinstance(value, str) else json.dumps(value)


def write_cell_confusions(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """confusion_<train>_to_<test>.png/.csv (video level) of every cell; returns
    ``{train: {test: {"png", "csv"}}}`` file names."""
    names = metrics["class_names"]
    files: dict[str, Any] = {}
    for row, cells in metrics["cells"].items():
        files[row] = {}
        for quality, cell in cells.items():
            stem = f"confusion_{file_tag(row)}_to_{file_tag(quality)}"
            title = f"train {row} -> test {quality}, {CELL_LEVEL} level"
            png, csv = write_confusion(out_dir, stem, title, cell[CELL_LEVEL], names)
            files[row][quality] = {"png": png, "csv": csv}
    return files


def write_cross_quality(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """cross_quality.png (video-level heatmap), cross_quality.csv, one confusion matrix
    PNG + CSV per cell, metrics.json, report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    confusions = write_cell_confusions(out_dir, metrics)
    metrics = json_ready(metrics)
    title = f"video-level accuracy, train -> test ({metrics['train_mode']})"
    rows, tests = metrics["train_rows"], metrics["test_qualities"]
    heatmap = out_dir / "cross_quality.png"
    report.plot_heatmap(metrics["matrix"]["video"], rows, tests, heatmap, title)
    table = [
        [level, *row]
        for level in ("video", "clip")
        for row in report.cross_quality_rows(metrics, level)
    ]
    report.write_csv(
        out_dir / "cross_quality.csv", ["level", *report.cross_quality_header(metrics)], table
    )
    metrics["files"] = {
        "heatmap": heatmap.name,
        "csv": "cross_quality.csv",
        "confusion": confusions,
    }
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "report.md", report.cross_quality_markdown(metrics))
    return metrics
