"""The videos to evaluate: :class:`EvalSource` (a face cache and the manifest rows of its
videos) and the selection of one split at some qualities."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from attribnet.config import Recipe
from attribnet.data.cache import CacheEntry, FaceCache
from attribnet.data.manifest import ManifestRow
from attribnet.data.sources import (
    preprocess_rows,
    read_rows,
    recipe_cache_dir,
    recipe_manifest,
    recipe_videos,
    with_rows,
)
from attribnet.errors import DataError
from attribnet.evaluate.options import EvalOptions

log = logging.getLogger(__name__)


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


def recipe_data(recipe: Recipe, opts: EvalOptions) -> EvalOptions:
    """``opts`` pointed at ``recipe``'s data, its face cache and (when that file exists) its
    manifest, unless ``opts`` names others. The cross-quality and ablation tables train
    or REUSE a run per recipe, and a reused run's checkpoint may record another
    ``data.cache``/``data.manifest`` (moved or renamed since): the table is of the data
    the recipe names now, not of whatever the checkpoint remembers."""
    manifest = recipe_manifest(recipe)
    return replace(
        opts,
        cache=opts.cache or str(recipe_cache_dir(recipe)),
        manifest=opts.manifest or (str(manifest) if manifest else None),
    )


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
