"""``python -m attribnet.evaluate {run,cross-quality,ablations} ... --out <dir>``

Robustness evaluation of attribution models; every command writes its numbers to
``<out>/metrics.json`` and a ``<out>/report.md`` that links its PNG plots.

``run --checkpoint <run>/best.pt [--manifest m.csv] [--split test] [--qualities crf0,crf23]
[--clips-per-video 3] [--unknown-manifest u.csv] [--index indexes/<name>]``
    Closed-set attribution on the test split of the checkpoint's data (its recipe's face
    cache, restricted to its recipe's manifest when that file exists; with ``--manifest``
    those rows, preprocessed first with the recipe's detector and face size): accuracy,
    per-class accuracy, macro-F1 and confusion matrix (PNG + CSV), at clip level and at
    video level (mean of the clip probabilities of a video), per quality as well when the
    test set holds several. With an embedding head: kNN (k = 14), logistic regression and
    linear SVM fit on VALIDATION embeddings and scored on test, and a t-SNE plot. With a
    class named ``real``: detection metrics, threshold at validation FPR 10%. With
    ``--unknown-manifest`` (videos of generators not in training): open-set AUROC, OSCR
    and TNR at 95% TPR.
``cross-quality --recipe r.yaml --qualities crf0,crf10,crf23 [--train-mode per-quality]``
    The paper's Table 5: one model per training quality (trained with ``train.fit``, or
    reused when its run already finished; an interrupted run is resumed), each tested on
    every quality's test split. ``--train-mode augmented`` trains one model on all
    qualities. ``--checkpoints crf0=a.pt,crf23=b.pt`` skips training.
``ablations --recipes recipes/ablations/*.yaml [--demo]``
    The paper's Table 3: train (or reuse) each recipe and tabulate its per-class test
    accuracy. ``--demo`` runs demo-sized variants on the built-in synthetic data.

Evaluation is deterministic: periodic frame sampling, no augmentation, ``clips_per_video``
phase-shifted periodic clips per video (training's frame stride), seeded classifiers and
t-SNE; the same command gives the same ``metrics.json``. Undefined numbers (a class
without test videos) are ``null`` there.

Exit codes: 0 done, 2 a user error (one line ``error: ...`` on stderr).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from attribnet import report
from attribnet.atomic import write_json, write_text
from attribnet.checkpoint import file_sha256, load_model, read_checkpoint
from attribnet.config import (
    Recipe,
    add_overrides_argument,
    apply_overrides,
    load_recipe,
    read_recipe_yaml,
    recipe_from_dict,
    to_dict,
)
from attribnet.data.augment import Normalize
from attribnet.data.cache import CacheEntry, FaceCache
from attribnet.data.clips import ClipDataset
from attribnet.data.manifest import ManifestRow, read_manifest
from attribnet.data.sources import (
    preprocess_rows,
    read_rows,
    recipe_cache_dir,
    recipe_manifest,
    recipe_videos,
    with_rows,
)
from attribnet.embedding import l2_normalize
from attribnet.errors import AttribnetError, ConfigError, DataError
from attribnet.index import GeneratorIndex, class_prototypes
from attribnet.inference import run_model
from attribnet.logs import setup_logging
from attribnet.metrics import (
    aggregate_by_video,
    closed_set_report,
    detection_metrics,
    embedding_protocols,
    open_set_metrics,
    softmax,
)
from attribnet.models import AttributionModel

log = logging.getLogger(__name__)

DEFAULT_K = 14
DEFAULT_CLIPS_PER_VIDEO = 3
DETECTION_FPR = 0.10
REAL = "real"
UNKNOWN = "unknown"
DEMO_SECTIONS = ("data", "optim", "train")
DEMO_MODEL_KEYS = ("backbone", "num_frames", "weights")


# ----------------------------------------------------------------------------- options


@dataclass
class EvalOptions:
    """How to evaluate one checkpoint (the command line of ``evaluate run``).

    ``qualities`` None = every quality of the split. ``seed``/``batch_size``/
    ``num_workers`` None = the recipe's. ``closed_set_only`` skips embeddings, detection,
    open set and plots (what the cross-quality and ablation tables need).
    """

    split: str = "test"
    qualities: list[str] | None = None
    clips_per_video: int = DEFAULT_CLIPS_PER_VIDEO
    manifest: str | None = None
    unknown_manifest: str | None = None
    cache: str | None = None
    index: str | None = None
    k: int = DEFAULT_K
    batch_size: int | None = None
    num_workers: int | None = None
    seed: int | None = None
    closed_set_only: bool = False
    tsne: bool = True


@dataclass
class LoadedModel:
    """A checkpoint's model (eval mode, on ``device``), recipe, class names and raw state."""

    path: Path
    model: AttributionModel
    recipe: Recipe
    class_names: list[str]
    state: dict[str, Any]
    device: torch.device


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def load_checkpoint(path: str | Path, device: str = "auto") -> LoadedModel:
    """Load a checkpoint (a file or a run folder holding best.pt) for evaluation."""
    path = Path(path)
    path = path / "best.pt" if path.is_dir() else path
    model, recipe, names, state = load_model(path)
    dev = resolve_device(device)
    return LoadedModel(path, model.to(dev).eval(), recipe, names, state, dev)


# ----------------------------------------------------------------------------- data


@dataclass
class EvalSource:
    """A face cache and its videos; each entry carries the authoritative manifest row
    (label, quality, split) of its video."""

    cache: FaceCache
    entries: list[CacheEntry]


def open_source(recipe: Recipe, opts: EvalOptions) -> EvalSource:
    """The videos to evaluate: ``opts.manifest``'s rows (preprocessed when missing), else
    the recipe's cached videos (:func:`attribnet.data.sources.recipe_videos`)."""
    if opts.manifest:
        return manifest_source(read_rows(opts.manifest, recipe.train.seed), recipe, opts)
    return EvalSource(*recipe_videos(recipe, opts.cache))


def manifest_source(rows: list[ManifestRow], recipe: Recipe, opts: EvalOptions) -> EvalSource:
    """``rows`` preprocessed into the evaluation cache (``--cache`` or the recipe's)."""
    cache = preprocess_rows(rows, opts.cache or recipe_cache_dir(recipe), recipe)
    return EvalSource(cache, with_rows(cache, rows))


def select(
    source: EvalSource, split: str, qualities: Sequence[str] | None, class_names: Sequence[str]
) -> list[CacheEntry]:
    """Entries of one split and the given qualities whose label the model knows.

    Raises DataError when a requested quality has no video in the split.
    """
    in_split = [e for e in source.entries if e.row.split == split]
    if qualities:
        present = {e.row.quality for e in in_split}
        absent = [q for q in qualities if q not in present]
        if absent:
            raise DataError(
                f"no {split} videos of quality {', '.join(absent)} in cache "
                f"{source.cache.root} (it has {', '.join(sorted(present)) or 'none'})"
            )
        in_split = [e for e in in_split if e.row.quality in qualities]
    known = [e for e in in_split if e.row.label in class_names]
    strays = sorted({e.row.label for e in in_split} - set(class_names))
    if strays:
        log.warning(
            "leaving out %d %s video(s) of labels the model does not know: %s",
            len(in_split) - len(known),
            split,
            strays,
        )
    return known


def clip_dataset(
    source: EvalSource,
    entries: Sequence[CacheEntry],
    class_names: Sequence[str],
    recipe: Recipe,
    opts: EvalOptions,
) -> ClipDataset:
    """Evaluation clips: ``clips_per_video`` phase-shifted periodic clips per video
    (:func:`attribnet.data.sampling.clip_indices`), the recipe's frame count, face size and
    normalisation, no augmentation."""
    data = recipe.data
    return ClipDataset(
        source.cache,
        entries,
        class_names,
        num_frames=data.num_frames,
        sampling="periodic",
        normalize=Normalize(data.mean, data.std),
        image_size=data.image_size,
        seed=_seed(recipe, opts),
        clips_per_video=opts.clips_per_video,
    )


def _seed(recipe: Recipe, opts: EvalOptions) -> int:
    return recipe.train.seed if opts.seed is None else opts.seed


# ----------------------------------------------------------------------------- inference


@dataclass
class Outputs:
    """Per-clip outputs over a dataset, in dataset order.

    ``scores`` (N, K): class scores whose softmax is the class probability (the logits, or
    the scaled cosine to the ArcFace class centres); ``embedding`` (N, D) or None;
    ``label`` (N,) ids into the dataset's class names; ``video`` (N,) position of the
    clip's video in ``entries``.
    """

    scores: np.ndarray
    embedding: np.ndarray | None
    label: np.ndarray
    video: np.ndarray
    entries: list[CacheEntry]


@dataclass
class VideoOutputs:
    """Per-video outputs, videos in order of first clip: ``probs`` (V, K) mean of clip
    probabilities; ``label`` (V,); ``quality`` (V,) str; ``embedding`` (V, D) mean of the
    unit clip embeddings, re-normalised, or None."""

    probs: np.ndarray
    label: np.ndarray
    quality: np.ndarray
    embedding: np.ndarray | None


def prediction_rule(loaded: LoadedModel) -> str:
    """``classifier`` (argmax of the logits) unless the model was trained without CE and
    has ArcFace class centres: then ``arcface_centres`` (nearest centre by cosine)."""
    centres = (loaded.state.get("loss") or {}).get("arcface.W")
    if loaded.recipe.loss.ce_weight or centres is None or not loaded.model.embedding_dim:
        return "classifier"
    return "arcface_centres"


def class_scores(loaded: LoadedModel, out: dict[str, np.ndarray]) -> np.ndarray:
    """(N, K) class scores of :class:`Outputs` from ``run_model``'s outputs."""
    if prediction_rule(loaded) == "classifier":
        return out["logits"].astype(np.float64)
    centres = loaded.state["loss"]["arcface.W"].float().numpy().T
    cosine = l2_normalize(out["embedding"]) @ l2_normalize(centres).T
    return loaded.recipe.loss.arcface_scale * cosine.astype(np.float64)


def infer(loaded: LoadedModel, dataset: ClipDataset, opts: EvalOptions) -> Outputs:
    """Run the model over every clip of ``dataset``."""
    recipe = loaded.recipe
    loader = DataLoader(
        dataset,
        batch_size=opts.batch_size or recipe.train.batch_size,
        shuffle=False,
        num_workers=recipe.data.num_workers if opts.num_workers is None else opts.num_workers,
        pin_memory=loaded.device.type == "cuda",
    )
    out = run_model(loaded.model, loader, loaded.device, amp=recipe.train.amp)
    return Outputs(
        scores=class_scores(loaded, out),
        embedding=out.get("embedding"),
        label=out["label"].astype(np.int64),
        video=dataset.video_indices[out["index"]],
        entries=list(dataset.entries),
    )


def to_videos(out: Outputs) -> VideoOutputs:
    """Aggregate clip outputs per video (:func:`attribnet.metrics.aggregate_by_video`)."""
    probs, labels, videos = aggregate_by_video(out.scores, out.video, out.label)
    quality = np.array([out.entries[v].row.quality for v in videos], dtype=object)
    embedding = None
    if out.embedding is not None:
        position = {int(v): i for i, v in enumerate(videos)}
        rows = np.array([position[int(v)] for v in out.video])
        sums = np.zeros((len(videos), out.embedding.shape[1]))
        np.add.at(sums, rows, l2_normalize(out.embedding))
        embedding = l2_normalize(sums)
    return VideoOutputs(probs, labels, quality, embedding)


def evaluate_entries(
    loaded: LoadedModel,
    source: EvalSource,
    entries: Sequence[CacheEntry],
    class_names: Sequence[str],
    opts: EvalOptions,
) -> tuple[Outputs, VideoOutputs]:
    """Clip and video outputs of the model over ``entries``."""
    dataset = clip_dataset(source, entries, class_names, loaded.recipe, opts)
    out = infer(loaded, dataset, opts)
    return out, to_videos(out)


# ----------------------------------------------------------------------------- metrics


def quality_order(present: Sequence[str], requested: Sequence[str] | None) -> list[str]:
    """The qualities present, in the requested order (else sorted)."""
    found = set(present)
    return [q for q in requested if q in found] if requested else sorted(found)


def closed_set_metrics(
    out: Outputs, videos: VideoOutputs, names: Sequence[str], qualities: Sequence[str] | None
) -> dict[str, Any]:
    """``{"clip", "video"}`` closed-set reports, plus ``per_quality`` {quality: {"clip",
    "video"}} when the test set holds more than one quality."""
    clip_pred, video_pred = out.scores.argmax(1), videos.probs.argmax(1)
    result: dict[str, Any] = {
        "clip": closed_set_report(out.label, clip_pred, names),
        "video": closed_set_report(videos.label, video_pred, names),
    }
    clip_quality = np.array([out.entries[v].row.quality for v in out.video], dtype=object)
    order = quality_order(list(videos.quality), qualities)
    if len(order) > 1:
        result["per_quality"] = {
            q: {
                "clip": closed_set_report(
                    out.label[clip_quality == q], clip_pred[clip_quality == q], names
                ),
                "video": closed_set_report(
                    videos.label[videos.quality == q], video_pred[videos.quality == q], names
                ),
            }
            for q in order
        }
    return result


def embedding_metrics(
    val: tuple[Outputs, VideoOutputs] | None,
    test: tuple[Outputs, VideoOutputs],
    k: int,
    seed: int,
) -> dict[str, Any]:
    """kNN / logistic regression / linear SVM fit on validation embeddings, scored on test,
    at clip and at video level; ``{"skipped": reason}`` when impossible."""
    if test[0].embedding is None:
        return {"skipped": "the model has no embedding head"}
    if val is None:
        return {"skipped": "no validation videos to fit the classifiers on"}
    if np.unique(val[1].label).size < 2:
        return {"skipped": "the validation split holds fewer than 2 classes"}
    clip = embedding_protocols(
        l2_normalize(val[0].embedding),
        val[0].label,
        l2_normalize(test[0].embedding),
        test[0].label,
        k=k,
        seed=seed,
    )
    video = embedding_protocols(
        val[1].embedding, val[1].label, test[1].embedding, test[1].label, k=k, seed=seed
    )
    return {"fit_on": "val", "clip": clip, "video": video}


def index_metrics(index: GeneratorIndex, test: VideoOutputs, k: int, path: str) -> dict[str, Any]:
    """Video-level accuracy of the generator index's kNN vote and nearest prototype."""
    knn_pred, _, _ = index.knn_predict(test.embedding, k)
    proto_pred, _ = index.prototype_predict(test.embedding)
    return {
        "path": path,
        "k": int(min(k, index.ntotal)),
        "knn_accuracy": float(np.mean(knn_pred == test.label)),
        "prototype_accuracy": float(np.mean(proto_pred == test.label)),
    }


def detection(
    val: tuple[Outputs, VideoOutputs] | None,
    test: tuple[Outputs, VideoOutputs],
    names: Sequence[str],
) -> dict[str, Any]:
    """Real-vs-fake metrics with score = 1 - p(real), threshold at validation FPR 10%, at
    clip and video level; ``{"skipped": reason}`` when impossible."""
    if val is None:
        return {"skipped": "no validation videos to choose the threshold on"}
    real = list(names).index(REAL)

    def scores(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return 1.0 - probs[:, real], labels != real

    result: dict[str, Any] = {"target_fpr": DETECTION_FPR}
    levels = {
        "clip": (softmax(val[0].scores), val[0].label, softmax(test[0].scores), test[0].label),
        "video": (val[1].probs, val[1].label, test[1].probs, test[1].label),
    }
    for level, (vp, vl, tp, tl) in levels.items():
        try:
            result[level] = detection_metrics(*scores(vp, vl), *scores(tp, tl), DETECTION_FPR)
        except ValueError as exc:
            return {"skipped": str(exc)}
    return result


def prototype_scores(
    embeddings: np.ndarray, prototypes: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Knownness (V,): max cosine of unit embeddings (V, D) to the prototypes (K, D) of
    classes with training videos (``counts`` (K,) > 0)."""
    sims = l2_normalize(embeddings) @ prototypes.T
    return np.where(counts > 0, sims, -np.inf).max(axis=1)


def open_set(
    test: VideoOutputs,
    unknown: VideoOutputs,
    prototypes: tuple[np.ndarray, np.ndarray, str] | None,
) -> dict[str, Any]:
    """Open-set metrics at video level, known = test videos, unknown = unseen generators.

    Knownness: ``prototype_cosine`` (max cosine to class prototypes; primary when
    ``prototypes`` = (prototypes (K, D), counts (K,), where from) is given) and
    ``max_softmax`` (largest class probability). ``known_correct`` = video prediction right.
    """
    correct = test.probs.argmax(1) == test.label
    result: dict[str, Any] = {
        "level": "video",
        "known_videos": int(len(test.label)),
        "unknown_videos": int(len(unknown.label)),
        "scores": ["max_softmax"],
        "primary": "max_softmax",
        "max_softmax": open_set_metrics(test.probs.max(1), unknown.probs.max(1), correct),
    }
    if prototypes is not None and test.embedding is not None:
        protos, counts, origin = prototypes
        known = prototype_scores(test.embedding, protos, counts)
        unseen = prototype_scores(unknown.embedding, protos, counts)
        result["prototype_cosine"] = open_set_metrics(known, unseen, correct)
        result["scores"] = ["prototype_cosine", "max_softmax"]
        result["primary"] = "prototype_cosine"
        result["prototypes_from"] = origin
    return result


# ----------------------------------------------------------------------------- evaluate run


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
        "seed": _seed(recipe, opts),
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
    torch.manual_seed(_seed(recipe, opts))
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
    index = _index(loaded, opts)
    val = _validation(loaded, source, opts)
    metrics["embedding"] = embedding_metrics(val, test, opts.k, _seed(recipe, opts))
    if index is not None and test[1].embedding is not None:
        metrics["embedding"]["index"] = index_metrics(index, test[1], opts.k, str(opts.index))
    if REAL in names:
        metrics["detection"] = detection(val, test, names)
    unknown = None
    if opts.unknown_manifest:
        unknown = _unknown(loaded, opts)
        protos = _prototypes(loaded, source, opts, index) if test[1].embedding is not None else None
        metrics["open_set"] = open_set(test[1], unknown[1], protos)
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


def _prototypes(
    loaded: LoadedModel, source: EvalSource, opts: EvalOptions, index: GeneratorIndex | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Class prototypes (K, D), counts (K,) and their origin: the index's with
    ``--index``, else the mean video embedding of each class's training videos (at the
    recipe's training qualities)."""
    if index is not None:
        return index.prototypes, index.prototype_counts, f"training videos in index {opts.index}"
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
    protos, counts = class_prototypes(videos.embedding, videos.label, len(names))
    return protos, counts, "training videos"


# ----------------------------------------------------------------------------- run outputs


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


def _file_tag(text: str) -> str:
    """``text`` made safe for a file name (``none`` when empty)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "none"


def _write_confusions(out_dir: Path, closed: dict[str, Any], names: list[str]) -> dict[str, str]:
    """confusion_<level>[_<quality>].png/.csv for every closed-set report."""
    reports = {level: (f"{level} level", closed[level]) for level in ("clip", "video")}
    for quality, levels in closed.get("per_quality", {}).items():
        for level, r in levels.items():
            reports[f"{level}_{_file_tag(quality)}"] = (f"{level} level, {quality}", r)
    files: dict[str, str] = {}
    for key, (title, r) in reports.items():
        stem = f"confusion_{key}"
        title = f"{title} (accuracy {r['accuracy']:.3f})"
        report.plot_confusion(r["confusion_matrix"], names, out_dir / f"{stem}.png", title)
        report.confusion_csv(r["confusion_matrix"], names, out_dir / f"{stem}.csv")
        files[stem], files[f"{stem}_csv"] = f"{stem}.png", f"{stem}.csv"
    return files


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
    files = _write_confusions(out_dir, metrics["closed_set"], names)
    if opts.tsne and not opts.closed_set_only:
        files.update(_write_tsne(out_dir, result, names, metrics["data"]["seed"]))
    metrics["files"] = files
    metrics = json_ready(metrics)
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "report.md", report.run_markdown(metrics))
    return metrics


# ----------------------------------------------------------------------------- training


def _flat(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _run_finished(last: Path, recipe: Recipe) -> bool:
    """Whether the run's last.pt (if any) reached the recipe's final epoch."""
    if not last.is_file():
        return True
    return int(read_checkpoint(last)["epoch"]) + 1 >= recipe.train.epochs


def _warn_if_recipe_differs(best: Path, recipe: Recipe) -> None:
    saved = _flat(read_checkpoint(best)["args"])
    wanted = _flat(to_dict(recipe))
    differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if differ:
        log.warning(
            "reusing %s although it was trained with other %s; delete its run folder to retrain",
            best,
            ", ".join(differ),
        )


def train_or_reuse(recipe: Recipe) -> Path:
    """The best.pt of the recipe's run (``train.out_dir/name``): reused when the run
    finished, resumed from last.pt when it was interrupted, else trained from scratch."""
    from attribnet.train import fit

    run_dir = Path(recipe.train.out_dir) / recipe.name
    best, last = run_dir / "best.pt", run_dir / "last.pt"
    if best.is_file() and _run_finished(last, recipe):
        _warn_if_recipe_differs(best, recipe)
        log.info("reusing the finished run %s", run_dir)
        return best
    resume = last.is_file()
    log.info("%s run %s", "resuming" if resume else "training", run_dir)
    fit(recipe, resume=resume)
    return best


# ----------------------------------------------------------------------------- cross-quality


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
    closed-set reports; ``matrix[level]`` (rows x qualities) overall accuracies."""
    cells: dict[str, dict[str, Any]] = {}
    class_names: list[str] | None = None
    for row, path in checkpoints.items():
        loaded = load_checkpoint(path, device)
        if class_names is not None and loaded.class_names != class_names:
            raise DataError(f"{path} knows classes {loaded.class_names}, not {class_names}")
        class_names = loaded.class_names
        cells[row] = {}
        for q in qualities:
            result = evaluate_model(loaded, replace(opts, qualities=[q], closed_set_only=True))
            cells[row][q] = result.metrics["closed_set"]
            log.info("%s -> %s: video accuracy %.4f", row, q, cells[row][q]["video"]["accuracy"])
    matrix = {
        level: [[cells[r][q][level]["accuracy"] for q in qualities] for r in checkpoints]
        for level in ("clip", "video")
    }
    return {
        "class_names": class_names,
        "train_rows": list(checkpoints),
        "test_qualities": list(qualities),
        "clips_per_video": opts.clips_per_video,
        "checkpoints": {r: str(p) for r, p in checkpoints.items()},
        "matrix": matrix,
        "cells": cells,
    }


def write_cross_quality(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """cross_quality.png (video-level heatmap), cross_quality.csv, metrics.json, report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
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
    metrics["files"] = {"heatmap": heatmap.name, "csv": "cross_quality.csv"}
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "report.md", report.cross_quality_markdown(metrics))
    return metrics


# ----------------------------------------------------------------------------- ablations


def default_demo_recipe() -> Path:
    """recipes/demo.yaml of the working directory, else of the source checkout."""
    here = Path("recipes/demo.yaml")
    if here.is_file():
        return here
    return Path(__file__).resolve().parent.parent / "recipes" / "demo.yaml"


def demo_variant(raw: dict[str, Any], demo: dict[str, Any]) -> dict[str, Any]:
    """An ablation recipe made demo-sized: the demo's data, optim and train sections and
    its model size (backbone, frames, weights), the ablation's attention settings
    (sam, channel_attention, fusion), loss and embedding head; name suffixed ``_demo``."""
    out = {**raw, "name": f"{raw.get('name', 'run')}_demo"}
    for section in DEMO_SECTIONS:
        if section in demo:
            out[section] = demo[section]
    model = dict(raw.get("model") or {})
    model.update({k: v for k, v in (demo.get("model") or {}).items() if k in DEMO_MODEL_KEYS})
    out["model"] = model
    return out


def ablation_recipe(path: str, overrides: list[str], demo: str | None) -> Recipe:
    """One ablation recipe, with ``--demo`` applied first and then the ``--set`` overrides."""
    raw = read_recipe_yaml(path)
    if demo is not None:
        raw = demo_variant(raw, read_recipe_yaml(demo or default_demo_recipe()))
    raw = apply_overrides(raw, overrides)
    source = path + (" (with --demo/--set)" if demo is not None or overrides else "")
    return recipe_from_dict(raw, source)


def ablations(recipes: list[Recipe], opts: EvalOptions, device: str, demo: bool) -> dict[str, Any]:
    """Train (or reuse) and evaluate each recipe: per-class closed-set reports per recipe."""
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ConfigError(f"ablation recipes must have distinct names, got {names}")
    entries, class_names = [], None
    for recipe in recipes:
        loaded = load_checkpoint(train_or_reuse(recipe), device)
        qualities = opts.qualities or loaded.recipe.data.eval_qualities or None
        result = evaluate_model(loaded, replace(opts, qualities=qualities, closed_set_only=True))
        closed = result.metrics["closed_set"]
        if class_names is not None and loaded.class_names != class_names:
            raise DataError(f"{recipe.name} knows classes {loaded.class_names}, not {class_names}")
        class_names = loaded.class_names
        model = loaded.recipe.model
        entries.append(
            {
                "name": recipe.name,
                "checkpoint": str(loaded.path),
                "model": {
                    "sam": model.sam,
                    "channel_attention": model.channel_attention,
                    "fusion": model.fusion,
                    "backbone": model.backbone,
                },
                "qualities": result.metrics["data"]["qualities"],
                "clip": closed["clip"],
                "video": closed["video"],
            }
        )
    return {
        "class_names": class_names,
        "qualities": opts.qualities or [],
        "clips_per_video": opts.clips_per_video,
        "demo": demo,
        "recipes": entries,
    }


def write_ablations(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """ablations.csv, metrics.json and report.md of ``evaluate ablations``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = json_ready(metrics)
    header = ["level", *report.ablation_header(metrics)]
    rows = [[lv, *r] for lv in ("video", "clip") for r in report.ablation_rows(metrics, lv)]
    report.write_csv(out_dir / "ablations.csv", header, rows)
    metrics["files"] = {"csv": "ablations.csv"}
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "report.md", report.ablations_markdown(metrics))
    return metrics


# ----------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ConfigErrors (one line, exit code 2)."""

    def error(self, message: str) -> Any:
        raise ConfigError(f"{message} (see --help)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (report.md, metrics.json)")
    parser.add_argument("--qualities", help="comma-separated qualities to test, e.g. crf0,crf23")
    parser.add_argument(
        "--clips-per-video", type=int, default=DEFAULT_CLIPS_PER_VIDEO, help="default 3"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers (recipe's)")
    parser.add_argument("--seed", type=int, help="default: the recipe's train.seed")
    parser.add_argument("-v", "--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m attribnet.evaluate``."""
    parser = _Parser(prog="python -m attribnet.evaluate", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="evaluate one checkpoint on its test split")
    run.add_argument("--checkpoint", required=True, help="<run>/best.pt or a run folder")
    run.add_argument("--manifest", help="evaluate these rows (preprocessed when needed)")
    run.add_argument("--split", choices=("train", "val", "test"), default="test")
    run.add_argument("--unknown-manifest", help="videos of unseen generators (open set)")
    run.add_argument("--index", help="generator index folder of this checkpoint")
    run.add_argument("--cache", help="face cache folder (default: the recipe's)")
    run.add_argument("--k", type=int, default=DEFAULT_K, help="kNN neighbours (default 14)")
    run.add_argument("--no-tsne", action="store_true", help="skip the t-SNE plot")
    _common(run)
    cq = sub.add_parser("cross-quality", help="train x test quality table (Table 5)")
    cq.add_argument("--recipe", help="recipe to train one model per quality from")
    cq.add_argument("--train-mode", choices=("per-quality", "augmented"), default="per-quality")
    cq.add_argument("--checkpoints", help="row=path,... of trained models (skips training)")
    add_overrides_argument(cq)
    _common(cq)
    ab = sub.add_parser("ablations", help="train/evaluate several recipes (Table 3)")
    ab.add_argument("--recipes", nargs="+", required=True, help="recipe YAML files")
    ab.add_argument(
        "--demo",
        nargs="?",
        const="",
        default=None,
        metavar="DEMO_YAML",
        help="demo-sized variants on the synthetic data (default recipes/demo.yaml)",
    )
    add_overrides_argument(ab)
    _common(ab)
    return parser


def _split_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"expected a comma-separated list, got {text!r}")
    return items


def _parse_checkpoints(text: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in _split_list(text) or []:
        row, sep, path = item.partition("=")
        if not sep or not row or not path:
            raise ConfigError(f"--checkpoints expects row=path,..., got {item!r}")
        out[row.strip()] = Path(path.strip())
    return out


def _options(args: argparse.Namespace) -> EvalOptions:
    if args.clips_per_video < 1:
        raise ConfigError(f"--clips-per-video must be >= 1, got {args.clips_per_video}")
    k = getattr(args, "k", DEFAULT_K)
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    return EvalOptions(
        split=getattr(args, "split", "test"),
        qualities=_split_list(args.qualities),
        clips_per_video=args.clips_per_video,
        manifest=getattr(args, "manifest", None),
        unknown_manifest=getattr(args, "unknown_manifest", None),
        cache=getattr(args, "cache", None),
        index=getattr(args, "index", None),
        k=k,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        tsne=not getattr(args, "no_tsne", False),
    )


def _run(args: argparse.Namespace, opts: EvalOptions) -> dict[str, Any]:
    loaded = load_checkpoint(args.checkpoint, args.device)
    result = evaluate_model(loaded, opts)
    return write_run(Path(args.out), result, opts)


def _cross_quality(args: argparse.Namespace, opts: EvalOptions) -> dict[str, Any]:
    if args.checkpoints:
        if args.recipe or args.overrides:
            log.warning("--checkpoints given: --recipe and --set are not used")
        checkpoints = _parse_checkpoints(args.checkpoints)
        qualities = opts.qualities or list(checkpoints)
    else:
        if not args.recipe or not opts.qualities:
            raise ConfigError("cross-quality needs --recipe and --qualities (or --checkpoints)")
        base = load_recipe(args.recipe, args.overrides)
        variants = quality_variants(base, opts.qualities, args.train_mode)
        checkpoints = {row: train_or_reuse(r) for row, r in variants.items()}
        qualities = opts.qualities
    metrics = cross_quality(checkpoints, qualities, opts, args.device)
    metrics["train_mode"] = args.train_mode if not args.checkpoints else "given checkpoints"
    return write_cross_quality(Path(args.out), metrics)


def _ablations(args: argparse.Namespace, opts: EvalOptions) -> dict[str, Any]:
    recipes = [ablation_recipe(p, args.overrides, args.demo) for p in args.recipes]
    metrics = ablations(recipes, opts, args.device, args.demo is not None)
    return write_ablations(Path(args.out), metrics)


COMMANDS = {"run": _run, "cross-quality": _cross_quality, "ablations": _ablations}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 done, 2 a user error (one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose)
        COMMANDS[args.command](args, _options(args))
    except (AttribnetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"evaluation written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
