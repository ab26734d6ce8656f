"""The training data of a run: the manifest's videos through the face cache into clip
datasets (:func:`prepare_data`), and the loaders that draw each epoch's batches in an
order fixed by (seed, epoch) (:func:`train_loader`), so a resumed run sees the same batches.
"""

from __future__ import annotations

import difflib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions as pml_common
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Subset

from attribnet.config import DataConfig, Recipe
from attribnet.data.augment import ClipAugment, CompressionAugment, Normalize
from attribnet.data.cache import CacheEntry, FaceCache
from attribnet.data.clips import ClipDataset, select_entries
from attribnet.data.h264_variants import H264Variants
from attribnet.data.instance_batches import InstanceMixedBatches
from attribnet.data.manifest import ManifestRow, class_names
from attribnet.data.pretext import build_pretext
from attribnet.data.sources import preprocess_rows, read_rows, recipe_cache_dir, training_manifest
from attribnet.errors import DataError
from attribnet.runtime.distributed import RankBatches, barrier, is_main, rank_and_world, shard
from attribnet.training.state import SkipBatches

log = logging.getLogger(__name__)


@dataclass
class Data:
    """What the loop needs from the data side."""

    class_names: list[str]
    train: ClipDataset
    val: ClipDataset | None

    @property
    def instance_names(self) -> list[str]:
        """The generator trainings of the training videos (manifest column ``instance``)."""
        return self.train.instance_names


def prepare_data(recipe: Recipe) -> Data:
    """Manifest -> splits -> face cache (made or completed here) -> datasets.

    The classes are ``data.classes``, else every label but ``data.outlier_classes``; each
    needs videos to learn and measure it (:func:`check_class_videos`). Outlier videos enter
    the training set only (label -1), from the train split. With ``data.pretext`` the
    classes are the pretext task's and every video is used, in its split.
    """
    cfg = recipe.data
    manifest = training_manifest(recipe)
    rows = read_rows(manifest, recipe.train.seed)
    outliers = list(cfg.outlier_classes)
    pretext = build_pretext(cfg.pretext)
    if pretext is None:
        names = _class_names(rows, cfg, manifest)
        rows = [r for r in rows if r.label in names or (r.label in outliers and r.split == "train")]
    else:
        names = pretext.names
    cache_dir = recipe_cache_dir(recipe)
    cache = preprocess_rows(rows, cache_dir, recipe)  # under torchrun: rank 0, the others wait
    wanted = {r.path for r in rows}
    normalize = Normalize(cfg.mean, cfg.std)
    aug = cfg.augment
    common = {
        "num_frames": cfg.num_frames,
        "sampling": cfg.sampling,
        "normalize": normalize,
        "image_size": cfg.image_size,
        "resize": cfg.resize,
        "seed": recipe.train.seed,
        "pretext": pretext,
    }

    def entries(split: str, qualities: list[str]) -> list:
        found = select_entries(cache, split=split, qualities=qualities or None)
        return [e for e in found if e.row.path in wanted]

    train_entries = entries("train", cfg.train_qualities)
    if not train_entries:
        raise DataError(f"no training videos in cache {cache_dir} (see its report.json)")
    num_outliers = sum(e.row.label in outliers for e in train_entries)
    if outliers and not num_outliers:
        raise DataError(f"no training videos of data.outlier_classes {outliers} in {cache_dir}")
    train = ClipDataset(
        cache,
        train_entries,
        names,
        spatial=ClipAugment(
            cfg.image_size,
            hflip=aug.hflip,
            crop_scale=aug.crop_scale,
            color_jitter=aug.color_jitter,
            resize=cfg.resize,
            random_crop=aug.random_crop,
        ),
        compression=CompressionAugment(
            h264_p=aug.h264_p,
            crf_choices=aug.h264_crf,
            jpeg_p=aug.jpeg_p,
            jpeg_quality=aug.jpeg_quality,
        ),
        outlier_labels=outliers,
        variants=_h264_variants(cache, train_entries, recipe),
        **common,
    )
    val_entries = entries("val", cfg.eval_qualities)
    val = ClipDataset(cache, val_entries, names, **common) if val_entries else None
    log.info(
        "data: %d classes %s, %d train clips, %d val clips",
        len(names),
        names,
        len(train),
        len(val) if val else 0,
    )
    if outliers:
        log.info(
            "outlier exposure: %d train clips of %s as 'none of the known'", num_outliers, outliers
        )
    return Data(names, train, val)


def _class_names(rows: list[ManifestRow], cfg: DataConfig, manifest: str | Path) -> list[str]:
    """The run's generator classes: ``data.classes``, else every label but
    ``data.outlier_classes``; each checked for videos (:func:`check_class_videos`)."""
    outliers, present = list(cfg.outlier_classes), {r.label for r in rows}
    names = list(cfg.classes) or [c for c in class_names(rows) if c not in outliers]
    both = sorted(set(names) & set(outliers))
    if both:
        raise DataError(f"{both} are in data.classes and in data.outlier_classes")
    for key, labels in (("classes", names), ("outlier_classes", outliers)):
        absent = sorted(set(labels) - present)
        if absent:
            raise DataError(f"data.{key} {absent} have no videos in the manifest")
    held_out = sorted(present - set(names) - set(outliers))
    if held_out:
        # data.classes names a subset: the other generators are held out (open-set runs)
        log.warning("holding out generators not in data.classes: %s", held_out)
    check_class_videos(rows, names, cfg.train_qualities, cfg.eval_qualities,
                       manifest, named=bool(cfg.classes))  # fmt: skip
    return names


def _h264_variants(
    cache: FaceCache, entries: list[CacheEntry], recipe: Recipe
) -> H264Variants | None:
    """With ``data.augment.h264_cache``: the H.264 variants of the training clips, the
    missing ones made here (under torchrun by rank 0 while the others wait)."""
    aug = recipe.data.augment
    if not (aug.h264_cache and aug.h264_p):
        return None
    variants = H264Variants(cache, aug.h264_crf)
    if is_main():
        variants.make(entries)
    barrier()
    return variants


def check_class_videos(
    rows: Sequence[ManifestRow],
    names: Sequence[str],
    train_qualities: Sequence[str],
    eval_qualities: Sequence[str],
    manifest: str | Path,
    *,
    named: bool = False,
) -> None:
    """DataError (one line) naming every class of ``names`` with too few videos, and the
    nearest label (difflib) of a class that has enough: most often a typo in a label.

    A class needs at least one TRAIN video (of ``train_qualities``, empty: all): without
    one nothing teaches the model the class, and its classifier row and ArcFace centre stay
    random. When the run validates (some class has a VAL video of ``eval_qualities``), each
    class also needs one VAL video: without one its validation accuracy is nan and
    checkpoint selection cannot see it. Counting manifest rows, this refuses before the
    face cache is made. ``named``: the classes came from ``data.classes`` (not the labels).
    """

    def count(split: str, qualities: Sequence[str]) -> Counter[str]:
        return Counter(
            r.label for r in rows if r.split == split and (not qualities or r.quality in qualities)
        )

    train, val = count("train", train_qualities), count("val", eval_qualities)
    validates = any(val[name] for name in names)
    short = [name for name in names if not train[name] or (validates and not val[name])]
    if not short:
        return
    enough = [name for name in names if name not in short]
    described = []
    for name in short:
        near = difflib.get_close_matches(name, enough, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        described.append(f"'{name}' ({train[name]} train, {val[name]} val{hint})")
    need = "one training and one validation video" if validates else "one training video"
    fix = (
        "give it videos or take it out of data.classes"
        if named
        else "correct the label in the manifest, or list the classes to train in data.classes"
    )
    raise DataError(
        f"too few videos of class {', '.join(described)} in {manifest}: every class needs at "
        f"least {need}; {fix}"
    )


def train_loader(
    data: Data, recipe: Recipe, epoch: int, skip: int = 0, device: torch.device | None = None
) -> DataLoader:
    """This rank's batches of the epoch, in an order fixed by (seed, epoch), less the first
    ``skip``. Every rank draws the same batches and takes its share of them
    (:class:`~attribnet.runtime.distributed.RankBatches`): under torchrun an epoch is shared out,
    not repeated on every rank. Batches for a CUDA ``device`` come in pinned memory, so
    their copies to it need not wait (:class:`~attribnet.runtime.prefetch.DevicePrefetcher`)."""
    tc = recipe.train
    generator = torch.Generator().manual_seed(tc.seed * 1000 + epoch)
    mine = RankBatches(_epoch_batches(data, recipe, epoch, generator), *rank_and_world())
    return DataLoader(
        data.train,
        batch_sampler=SkipBatches(mine, skip),
        generator=generator,
        num_workers=recipe.data.num_workers,
        pin_memory=device is not None and device.type == "cuda",
        persistent_workers=False,
    )


def _epoch_batches(data: Data, recipe: Recipe, epoch: int, generator: torch.Generator) -> Any:
    """The epoch's batches (index lists), fixed by (seed, epoch): instance-mixed
    (``train.instances_per_class``), m per class (``train.m_per_class``) or shuffled."""
    tc = recipe.train
    if tc.instances_per_class:
        return InstanceMixedBatches(
            data.train.labels,
            data.train.instances,
            tc.batch_size,
            tc.m_per_class,
            tc.instances_per_class,
            np.random.default_rng([tc.seed, epoch]),
        )
    if tc.m_per_class:
        # PML's sampler draws from its module-level RandomState: re-seed it per epoch so a
        # resumed run draws the same batches as an uninterrupted one.
        pml_common.NUMPY_RANDOM = np.random.RandomState(tc.seed * 100_003 + epoch * 101)
        sampler: Any = MPerClassSampler(
            data.train.labels,
            tc.m_per_class,
            batch_size=tc.batch_size,
            length_before_new_iter=len(data.train),
        )
    else:  # what shuffle=True builds, drawing from the same generator
        sampler = RandomSampler(data.train, generator=generator)
    return BatchSampler(sampler, tc.batch_size, drop_last=len(data.train) > tc.batch_size)


def eval_loader(dataset: ClipDataset, recipe: Recipe, sharded: bool = False) -> DataLoader:
    """The dataset in order; with ``sharded``, only this rank's block of it
    (:func:`~attribnet.runtime.distributed.shard`)."""
    part: Any = Subset(dataset, shard(len(dataset))) if sharded else dataset
    return DataLoader(part, batch_size=recipe.train.batch_size, num_workers=recipe.data.num_workers)
