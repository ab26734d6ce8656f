"""``evaluate run``: everything measured for one checkpoint (:func:`evaluate_model`) and
the output folder it writes (:func:`write_run`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attribnet import report
from attribnet.config import Recipe, to_dict
from attribnet.data.manifest import read_manifest
from attribnet.data.sources import recipe_manifest
from attribnet.errors import ConfigError, DataError
from attribnet.evaluate.baseline import BaselineScorer
from attribnet.evaluate.loaded_model import LoadedModel
from attribnet.evaluate.options import EvalOptions, eval_seed
from attribnet.evaluate.output import json_ready, write_confusions
from attribnet.evaluate.predictions import (
    Outputs,
    VideoOutputs,
    evaluate_entries,
    prediction_rule,
)
from attribnet.evaluate.protocols import (
    REAL,
    closed_set_metrics,
    detection,
    embedding_metrics,
    index_metrics,
    open_set,
    quality_order,
)
from attribnet.evaluate.source import EvalSource, manifest_source, open_source, select
from attribnet.files.atomic import write_json, write_text
from attribnet.files.checkpoints import file_sha256
from attribnet.index import GeneratorIndex
from attribnet.metrics.vectors import l2_normalize

log = logging.getLogger(__name__)

UNKNOWN = "unknown"


@dataclass
class RunResult:
    """``metrics`` (JSON-ready after :func:`json_ready`) and the arrays plots need."""

    metrics: dict[str, Any]
    test: tuple[Outputs, VideoOutputs]
    unknown: tuple[Outputs, VideoOutputs] | None = None


def _data_summary(
    source: EvalSource, out: Outputs, videos: VideoOutputs, recipe: Recipe, opts: EvalOptions
) -> dict[str, Any]:
    return {
        "cache": str(source.cache.root),
        "manifest": opts.manifest or str(recipe_manifest(recipe) or ""),
        "split": opts.split,
        "qualities": quality_order(list(videos.quality), opts.qualities),
        "videos": int(len(videos.label)),
        "clips": int(len(out.label)),
        "clips_per_video": opts.clips_per_video,
        "num_frames": recipe.data.num_frames,
        "sampling": "periodic",
        "image_size": recipe.data.image_size,
        "seed": eval_seed(recipe, opts),
    }


def _checkpoint_summary(loaded: LoadedModel) -> dict[str, Any]:
    return {
        "path": str(loaded.path),
        "sha256": file_sha256(loaded.path),
        "epoch": int(loaded.state.get("epoch", -1)) + 1,
        "recipe_name": loaded.recipe.name,
        "model": to_dict(loaded.recipe)["model"],
    }


def evaluate_model(loaded: LoadedModel, opts: EvalOptions) -> RunResult:
    """Everything ``evaluate run`` measures for one loaded checkpoint."""
    recipe, names = loaded.recipe, loaded.class_names
    torch.manual_seed(eval_seed(recipe, opts))
    source = open_source(recipe, opts)
    entries = select(source, opts.split, opts.qualities, names)
    if not entries:
        raise DataError(
            f"no {opts.split} videos of classes {names} in cache {source.cache.root}"
            + (f" at qualities {opts.qualities}" if opts.qualities else "")
        )
    test = evaluate_entries(loaded, source, entries, names, opts)
    metrics: dict[str, Any] = {
        "checkpoint": _checkpoint_summary(loaded),
        "data": _data_summary(source, *test, recipe, opts),
        "class_names": names,
        "prediction": prediction_rule(loaded),
        "closed_set": closed_set_metrics(*test, names, opts.qualities),
    }
    if opts.closed_set_only:
        return RunResult(metrics, test)
    scorer = BaselineScorer(source, names, recipe.data.image_size)
    train = recipe.data.train_qualities or None
    if scorer.training_videos(train):
        metrics["baseline"] = scorer.table(train, {"test": opts.qualities}, opts.split)
    else:
        metrics["baseline"] = {"skipped": "no training videos in the evaluated data"}
    index = _index(loaded, opts)
    val = _validation(loaded, source, opts)
    metrics["embedding"] = embedding_metrics(val, test, opts.k, eval_seed(recipe, opts))
    if index is not None and test[1].embedding is not None:
        metrics["embedding"]["index"] = index_metrics(index, test[1], opts.k, str(opts.index))
    if REAL in names:
        metrics["detection"] = detection(val, test, names)
    unknown = None
    if opts.unknown_manifest:
        unknown = _unknown(loaded, opts)
        reference, origin = None, ""
        if test[1].embedding is not None:
            reference, origin = _reference(loaded, source, opts, index)
        verdict = index.open_set.score if index is not None else None
        metrics["open_set"] = open_set(test, unknown, reference, origin, verdict)
        metrics["open_set"]["unknown_labels"] = sorted({e.row.label for e in unknown[0].entries})
    return RunResult(metrics, test, unknown)


def _index(loaded: LoadedModel, opts: EvalOptions) -> GeneratorIndex | None:
    """The ``--index`` of this checkpoint (IndexMismatchError for another model's)."""
    if not opts.index:
        return None
    if not loaded.model.embedding_dim:
        raise ConfigError("--index needs a model with an embedding head")
    return GeneratorIndex.load(opts.index, loaded.path, use_gpu=False)


def _validation(
    loaded: LoadedModel, source: EvalSource, opts: EvalOptions
) -> tuple[Outputs, VideoOutputs] | None:
    """Validation outputs (same qualities as the test selection), or None when there are
    no validation videos or the evaluated split is itself ``val``."""
    if opts.split == "val":
        log.warning("evaluating the val split: validation-fitted protocols are skipped")
        return None
    present = {e.row.quality for e in source.entries if e.row.split == "val"}
    qualities = [q for q in opts.qualities if q in present] if opts.qualities else None
    if opts.qualities and not qualities:
        return None
    entries = select(source, "val", qualities, loaded.class_names)
    if not entries:
        return None
    return evaluate_entries(loaded, source, entries, loaded.class_names, opts)


def _unknown(loaded: LoadedModel, opts: EvalOptions) -> tuple[Outputs, VideoOutputs]:
    """Outputs over the unknown manifest's videos (every split; the selected qualities;
    rows of classes the model knows are left out)."""
    recipe, names = loaded.recipe, loaded.class_names
    source = manifest_source(read_manifest(opts.unknown_manifest), recipe, opts)
    entries = [
        e
        for e in source.entries
        if e.row.label not in names and (not opts.qualities or e.row.quality in opts.qualities)
    ]
    if not entries:
        raise DataError(
            f"--unknown-manifest {opts.unknown_manifest}: no usable videos of generators "
            f"outside {names}" + (f" at qualities {opts.qualities}" if opts.qualities else "")
        )
    extra = sorted({e.row.label for e in entries})
    return evaluate_entries(loaded, source, entries, [*names, *extra], opts)


def _reference(
    loaded: LoadedModel, source: EvalSource, opts: EvalOptions, index: GeneratorIndex | None
) -> tuple[GeneratorIndex, str]:
    """The training videos the open-set reference scores compare with, as a generator
    index, and where they come from: the ``--index``, else an in-memory index of the
    training videos (at the recipe's training qualities) embedded here."""
    if index is not None:
        return index, f"training videos in index {opts.index}"
    names, wanted = loaded.class_names, set(loaded.recipe.data.train_qualities)
    entries = [
        e
        for e in source.entries
        if e.row.split == "train"
        and e.row.label in names
        and (not wanted or e.row.quality in wanted)
    ]
    if not entries:
        raise DataError(
            f"no training videos in cache {source.cache.root} to build class prototypes "
            "from (pass --index)"
        )
    _, videos = evaluate_entries(loaded, source, entries, names, opts)
    training = GeneratorIndex.build(videos.embedding, videos.label, names, use_gpu=False)
    return training, "training videos"


def _write_tsne(out_dir: Path, result: RunResult, names: list[str], seed: int) -> dict[str, str]:
    """tsne.png of the test clip embeddings (and the unknown videos' clips, if any)."""
    out = result.test[0]
    if out.embedding is None:
        return {}
    parts = [(l2_normalize(out.embedding), out.label, out.scores.argmax(1))]
    true_names = list(names)
    if result.unknown is not None:
        u = result.unknown[0]
        unknown_true = np.full(len(u.label), len(names))
        parts.append((l2_normalize(u.embedding), unknown_true, u.scores[:, : len(names)].argmax(1)))
        true_names.append(UNKNOWN)
    emb, true, pred = (np.concatenate(p) for p in zip(*parts, strict=True))
    title = f"t-SNE of {len(emb)} clip embeddings (colour = predicted, marker = true)"
    path = report.plot_tsne(emb, true, true_names, pred, names, out_dir / "tsne.png", title, seed)
    return {"tsne": "tsne.png"} if path is not None else {}


def write_run(out_dir: Path, result: RunResult, opts: EvalOptions) -> dict[str, Any]:
    """Write the plots, CSVs, metrics.json and report.md of ``evaluate run``."""
    metrics, names = result.metrics, result.metrics["class_names"]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = write_confusions(out_dir, metrics["closed_set"], names)
    if opts.tsne and not opts.closed_set_only:
        files.update(_write_tsne(out_dir, result, names, metrics["data"]["seed"]))
    metrics["files"] = files
    metrics = json_ready(metrics)
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "report.md", report.run_markdown(metrics))
    return metrics
