"""Building the generator index of a trained run: embed, index, choose the open-set score.

Videos are embedded by :func:`attribnet.predict.predict_videos`: the same face cache and
normalisation as training, periodic sampling, and up to ``clips_per_video`` phase-shifted clips
per video whose embeddings are averaged and re-normalised. The open-set score is chosen
on the validation videos, against stand-in unknowns (:mod:`attribnet.openset.choice`): the
same videos re-synthesised by random generator-like nets (:func:`_simulated_unknowns`) and,
when the recipe has ``data.outlier_classes``, their validation videos (:func:`_outlier_videos`).

Under torchrun (``torchrun --nproc_per_node N [--nnodes M ...] -m attribnet.index build``)
every rank embeds a contiguous share of the videos on its own device, rank 0 gathers the
shares in order over the process group (no shared file system needed), makes the
simulated unknowns, and builds and writes the index: the same index one process builds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from attribnet.data.eval_clips import DEFAULT_CLIPS_PER_VIDEO
from attribnet.data.sources import run_videos, split_videos
from attribnet.errors import CheckpointError, DataError
from attribnet.files.checkpoints import resolve_checkpoint
from attribnet.index.faiss_store import DEFAULT_IVF_THRESHOLD
from attribnet.index.store import GeneratorIndex
from attribnet.openset.choice import Unknowns
from attribnet.predict import VideoPrediction, predict_videos, stack
from attribnet.runtime.device import resolve_device
from attribnet.runtime.distributed import gather, shard

if TYPE_CHECKING:
    from attribnet.config import Recipe
    from attribnet.data.cache import CacheEntry, FaceCache
    from attribnet.models import AttributionModel

log = logging.getLogger(__name__)

SIMULATED_NETS = 8
SIMULATED_SEED = 10_000  # training draws its pools from pool_seed(train.seed, epoch), never this


def build_index_for_run(
    checkpoint_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    manifest: str | os.PathLike[str] | None = None,
    *,
    clips_per_video: int = DEFAULT_CLIPS_PER_VIDEO,
    ivf_threshold: int = DEFAULT_IVF_THRESHOLD,
    nprobe: int | None = None,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
) -> Path:
    """Build and save the generator index of a trained model; returns ``out_dir``.

    Embeds the TRAIN split (the recipe's ``train_qualities``) into the index and calibrates
    the open-set threshold on the VAL split (``eval_qualities``); videos of classes the
    model does not know are left out. Data: the recipe's face cache, or ``manifest``'s rows.
    In a process group every rank must call it: each embeds its share, rank 0 writes.
    ``batch_size`` (clips per model pass; default the recipe's ``train.batch_size``) and
    ``precision`` go to :func:`~attribnet.predict.predict_videos`: on a GPU, 64 to 256 clips
    in bf16 keep it busy.
    """
    from attribnet.files.checkpoints import file_sha256
    from attribnet.models.restore import load_model

    path = resolve_checkpoint(checkpoint_path)
    model, recipe, names, _ = load_model(path)
    if not model.embedding_dim:
        raise CheckpointError(
            f"{path}: the model has no embedding head (model.embedding_dim is 0); "
            "train with model.embedding_dim > 0 to build an index"
        )
    cache, pairs = run_videos(recipe, manifest)
    data = recipe.data
    entries, labels, rows = split_videos(
        pairs, "train", data.train_qualities, names, data.num_frames
    )
    if not entries:
        raise DataError(f"no training videos of classes {names} in cache {cache.root}")
    kwargs = {
        "clips_per_video": clips_per_video,
        "device": resolve_device(device),
        "progress": True,
        "batch_size": batch_size,
        "precision": precision,
    }
    log.info("embedding %d training videos for the index", len(entries))
    train = _embed(model, cache, entries, recipe, kwargs)
    val_entries, val_labels, _ = split_videos(
        pairs, "val", data.eval_qualities, names, data.num_frames
    )
    val = _embed(model, cache, val_entries, recipe, kwargs)
    classifier = recipe.loss.ce_weight > 0  # else the classifier head was never trained
    outliers = _outlier_videos(model, recipe, manifest, kwargs, classifier)
    if train is None or val is None:  # not rank 0: its share is on rank 0 now
        return Path(out_dir)
    index = GeneratorIndex.build(
        stack(train, "embedding"),
        np.asarray(labels),
        names,
        video_ids=[r.video_id for r in rows],
        qualities=[r.quality for r in rows],
        checkpoint_sha256=file_sha256(path),
        checkpoint_path=str(path),
        ivf_threshold=ivf_threshold,
        nprobe=nprobe,
    )
    if val:
        unknowns = {"simulated unknowns": _simulated_unknowns(
            model, cache, val_entries, recipe, kwargs, classifier)}  # fmt: skip
        if outliers is not None:
            unknowns["outlier videos"] = outliers
        _choose_score(index, val, val_labels, classifier, split="val", unknowns=unknowns)
    else:
        log.warning("no validation videos: open-set score chosen and calibrated on the TRAIN "
                    "split, each video scored leave-self-out")  # fmt: skip
        _choose_score(index, train, labels, classifier, split="train")
    return index.save(out_dir)


def index_built_from(
    out_dir: str | os.PathLike[str], checkpoint_path: str | os.PathLike[str]
) -> bool:
    """Whether ``out_dir`` holds a whole, readable index built from this checkpoint file
    (its sidecar names the file's sha256): then :func:`build_index_for_run` would build
    it again from the same model, and need not. False when anything is missing or corrupt."""
    from attribnet.files.checkpoints import file_sha256

    path = resolve_checkpoint(checkpoint_path)
    if not path.is_file() or not Path(out_dir).is_dir():
        return False
    try:
        index = GeneratorIndex.load(out_dir, use_gpu=False)
    except DataError:
        return False
    return index.checkpoint_sha256 == file_sha256(path)


def _embed(
    model: AttributionModel,
    cache: FaceCache,
    entries: list[CacheEntry],
    recipe: Recipe,
    kwargs: dict[str, Any],
) -> list[VideoPrediction] | None:
    """:func:`predict_videos` of ``entries``; in a process group each rank runs its share
    and rank 0 gets them all in order (the others get None)."""
    mine = [entries[i] for i in shard(len(entries))]
    return gather(predict_videos(model, cache, mine, recipe, **kwargs))


def _outputs(videos: list[VideoPrediction], classifier: bool, made: str = "") -> Unknowns:
    """Videos' outputs as stand-in unknowns (the classifier's only when it was trained)."""
    return Unknowns(
        stack(videos, "embedding"),
        probabilities=stack(videos, "probabilities") if classifier else None,
        logits=stack(videos, "logits") if classifier else None,
        made=made,
    )


def _simulated_unknowns(
    model: AttributionModel,
    cache: FaceCache,
    entries: list[CacheEntry],
    recipe: Recipe,
    kwargs: dict[str, Any],
    classifier: bool,
) -> Unknowns:
    """The validation videos with each clip re-synthesised by one of
    :data:`SIMULATED_NETS` random generator-like nets (a pool drawn from
    :data:`SIMULATED_SEED`, which training's pools never use; clip ``i`` of the split gets
    net ``i`` mod the pool), through the model: unknowns with known content and new traces
    for the score choice. Run by the process that writes the index, on all the videos, so
    the nets a clip gets do not depend on how many processes embedded the split."""
    from attribnet.data.open_space import OpenSpaceSimulator

    data = recipe.data
    nets = OpenSpaceSimulator(SIMULATED_NETS, mean=data.mean, std=data.std, seed=SIMULATED_SEED)
    nets = nets.to(kwargs["device"])

    def transform(clips: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return nets(clips, items % SIMULATED_NETS)

    log.info("embedding %d validation videos re-synthesised by %d random nets (simulated "
             "unknowns for the open-set score)", len(entries), SIMULATED_NETS)  # fmt: skip
    videos = predict_videos(model, cache, entries, recipe, **kwargs, transform=transform)
    made = (f"each of the {len(entries)} validation videos' clips re-synthesised by one of "
            f"{SIMULATED_NETS} random generator-like nets (attribnet.data.open_space, pool "
            f"seed {SIMULATED_SEED})")  # fmt: skip
    return _outputs(videos, classifier, made)


def _outlier_videos(
    model: AttributionModel,
    recipe: Recipe,
    manifest: str | os.PathLike[str] | None,
    kwargs: dict[str, Any],
    classifier: bool,
) -> Unknowns | None:
    """The VALIDATION videos of ``data.outlier_classes`` (known unknowns: real videos,
    other tools' fakes; training crops only their training videos, so these are cropped
    now when missing) through the model; None without any. Every rank calls it (each
    embeds a share); the others get None."""
    from attribnet.data.sources import (
        preprocess_rows,
        read_rows,
        recipe_cache_dir,
        recipe_manifest,
        with_rows,
    )

    data = recipe.data
    path = manifest or recipe_manifest(recipe)
    if not data.outlier_classes or path is None:
        return None
    rows = [
        r
        for r in read_rows(path, recipe.train.seed)
        if r.label in data.outlier_classes and r.split == "val"
    ]
    entries: list[CacheEntry] = []
    if rows:
        cache = preprocess_rows(rows, recipe_cache_dir(recipe), recipe)
        pairs = [(e, e.row) for e in with_rows(cache, rows)]
        entries, _, _ = split_videos(
            pairs, "val", data.eval_qualities, data.outlier_classes, data.num_frames
        )
    if not entries:
        log.warning("no validation videos of data.outlier_classes %s: the open-set score is "
                    "chosen without them", data.outlier_classes)  # fmt: skip
        return None
    log.info("embedding %d validation videos of %s (outlier videos for the open-set score)",
             len(entries), data.outlier_classes)  # fmt: skip
    videos = _embed(model, cache, entries, recipe, kwargs)
    if videos is None:
        return None
    made = f"the {len(entries)} validation videos of data.outlier_classes {data.outlier_classes}"
    return _outputs(videos, classifier, made)


def _choose_score(
    index: GeneratorIndex,
    videos: list[VideoPrediction],
    labels: Sequence[int],
    classifier: bool,
    split: str,
    unknowns: dict[str, Unknowns] | None = None,
) -> None:
    """:meth:`~attribnet.openset.policy.OpenSetPolicy.choose_score` on ``videos`` of
    ``split`` (the indexed training videos themselves, in index order, when ``split`` is
    ``train``), with the stand-in ``unknowns`` given; the classifier scores are candidates
    only when ``classifier`` (its head was trained)."""
    index.open_set.choose_score(
        index,
        stack(videos, "embedding"),
        np.asarray(labels, dtype=np.int64),
        probabilities=stack(videos, "probabilities") if classifier else None,
        logits=stack(videos, "logits") if classifier else None,
        split=split,
        self_rows=np.arange(len(labels)) if split == "train" else None,
        unknowns=unknowns,
    )
