"""Where a recipe's videos come from: its manifest, its face cache, and the cached videos.

One place for what train, index and evaluate all need to agree on:

- the recipe's manifest: ``data.manifest``, or for a demo recipe
  ``<data.root or data/demo>/manifest.csv`` (generated, with seed 0 whatever
  ``train.seed`` is, only when training asks for it);
- the recipe's face cache: ``data.cache``, else ``<data.root or data/demo>/cache``;
- a manifest's rows with splits (unsplit rows get a 70/15/15 split by source_id);
- preprocessing rows into the cache with the recipe's detector, face margin and size,
  frame cap and face check (:func:`preprocess_settings`: queries use them too);
- the cached videos of a recipe, carrying their manifest rows, and one split's videos of
  given classes (:func:`run_videos`, :func:`split_videos`: what an index is built and a
  quantised model calibrated on).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from attribnet.config import Recipe
from attribnet.data.cache import CacheEntry, FaceCache
from attribnet.data.manifest import ManifestRow, assign_splits, read_manifest
from attribnet.errors import ConfigError
from attribnet.runtime.distributed import barrier, is_main

log = logging.getLogger(__name__)

DEMO_ROOT = "data/demo"


def recipe_root(recipe: Recipe) -> Path:
    """``data.root``, else ``data/demo``."""
    return Path(recipe.data.root or DEMO_ROOT)


def recipe_cache_dir(recipe: Recipe) -> Path:
    """The face cache of a recipe: ``data.cache``, else ``<data.root or data/demo>/cache``."""
    return Path(recipe.data.cache) if recipe.data.cache else recipe_root(recipe) / "cache"


def recipe_manifest(recipe: Recipe) -> Path | None:
    """The manifest a recipe trained on, when that file exists."""
    data = recipe.data
    if data.demo:
        path = recipe_root(recipe) / "manifest.csv"
    elif data.manifest:
        path = Path(data.manifest)
    else:
        return None
    return path if path.is_file() else None


def training_manifest(recipe: Recipe) -> Path:
    """The manifest to train on: the demo's (generated when missing) or ``data.manifest``.

    Raises ConfigError when ``data.manifest`` is empty or names no file.
    """
    data = recipe.data
    if data.demo:
        from attribnet.data.synthetic import generate_demo

        # the demo set is always made with seed 0: train.seed varies the model's run, not
        # the data (another seed would regenerate data/demo under runs that share it)
        return Path(generate_demo(recipe_root(recipe)))
    if not data.manifest:
        raise ConfigError("data.manifest is empty: set it in the recipe or with --set")
    path = Path(data.manifest)
    if not path.exists():
        raise ConfigError(
            f"data.manifest {path} does not exist. For DFDM, see README section "
            "'Getting DFDM'; or build one: python -m attribnet.data.manifest build <tree> "
            f"--out {path}"
        )
    return path


def read_rows(path: str | Path, seed: int) -> list[ManifestRow]:
    """A manifest's rows; unsplit rows get training's 70/15/15 split by source_id."""
    rows = read_manifest(path)
    if not all(r.split for r in rows):
        log.warning("manifest %s has rows without a split: assigning 70/15/15 by source_id", path)
        rows = assign_splits(rows, seed=seed)
    return rows


def preprocess_settings(recipe: Recipe) -> dict[str, Any]:
    """The keyword settings of :func:`attribnet.data.preprocess.run_preprocess` that crop faces
    as the recipe's training did: detector, face size (``data.cache_size``, else
    ``data.image_size``) and margin, frame cap, face check."""
    data = recipe.data
    return {
        "detector": data.detector,
        "size": data.cache_size or data.image_size,
        "margin": data.face_margin,
        "max_frames": data.max_frames,
        "face_check": data.face_check,
    }


def preprocess_rows(rows: list[ManifestRow], cache_dir: str | Path, recipe: Recipe) -> FaceCache:
    """Crop the faces of ``rows`` into ``cache_dir`` as the recipe's training did
    (:func:`preprocess_settings`); videos already cached are not redone. In a torchrun
    process group (every rank calls it) rank 0 crops while the others wait, then read."""
    from attribnet.data.preprocess import preprocess

    cache = preprocess(rows, cache_dir, **preprocess_settings(recipe)) if is_main() else None
    barrier()
    return cache if cache is not None else FaceCache(cache_dir)


def with_rows(cache: FaceCache, rows: Sequence[ManifestRow]) -> list[CacheEntry]:
    """The cache entries of ``rows`` (in row order, once each), carrying those rows."""
    entries, seen = [], set()
    for row in rows:
        entry = cache.entry_for(row.path)
        if entry is not None and row.path not in seen:
            seen.add(row.path)
            entries.append(replace(entry, row=row))
    _warn_missing(cache, len(set(r.path for r in rows)) - len(entries))
    return entries


def recipe_videos(
    recipe: Recipe, cache_dir: str | Path | None = None
) -> tuple[FaceCache, list[CacheEntry]]:
    """(cache, entries): the finished videos of the recipe's cache (or ``cache_dir``). With
    the recipe's manifest: its rows' videos in MANIFEST order, carrying those rows (splits as
    the manifest assigns them), so that training does not depend on the order in which the
    cache happened to be filled. Without one: every cached video, in cache order."""
    cache = FaceCache(cache_dir or recipe_cache_dir(recipe))
    manifest = recipe_manifest(recipe)
    if manifest is None:
        log.info("recipe manifest not found: using every video of cache %s", cache.root)
        return cache, list(cache.entries)
    return cache, with_rows(cache, read_rows(manifest, recipe.train.seed))


def run_videos(
    recipe: Recipe, manifest: str | os.PathLike[str] | None
) -> tuple[FaceCache, list[tuple[CacheEntry, ManifestRow]]]:
    """(cache, [(entry, row)]) for the videos to index and calibrate on.

    Without ``manifest``: the recipe's cached videos (:func:`recipe_videos`). With one: its
    rows (split by source_id when unsplit), preprocessed into the cache first when missing.
    """
    if manifest is None:
        cache, entries = recipe_videos(recipe)
    else:
        rows = read_rows(manifest, recipe.train.seed)
        cache = preprocess_rows(rows, recipe_cache_dir(recipe), recipe)
        entries = with_rows(cache, rows)
    return cache, [(e, e.row) for e in entries]


def split_videos(
    pairs: list[tuple[CacheEntry, ManifestRow]],
    split: str,
    qualities: Sequence[str],
    class_names: Sequence[str],
    t: int,
) -> tuple[list[CacheEntry], list[int], list[ManifestRow]]:
    """Entries, generator ids and rows of one split: known classes, the given qualities
    (all when empty), at least ``t`` cached frames (shorter ones are left out, as training
    leaves them out, with a warning)."""
    chosen = [
        (e, r)
        for e, r in pairs
        if r.split == split and r.label in class_names and (not qualities or r.quality in qualities)
    ]
    usable = [(e, r) for e, r in chosen if e.num_frames >= t]
    if len(usable) < len(chosen):
        log.warning("%s split: leaving out %d video(s) shorter than %d frames",
                    split, len(chosen) - len(usable), t)  # fmt: skip
    return (
        [e for e, _ in usable],
        [list(class_names).index(r.label) for _, r in usable],
        [r for _, r in usable],
    )


def _warn_missing(cache: FaceCache, missing: int) -> None:
    if missing > 0:
        log.warning("%d manifest video(s) are not in cache %s (skipped?)", missing, cache.root)
