"""Writing the demo dataset: every source through every generator, encoded at every
quality, the manifest last; a finished set made with the same parameters is kept."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from attribnet.data.codec import DFDM_CRFS, write_video
from attribnet.data.manifest import (
    DEFAULT_SPLIT,
    ManifestRow,
    assign_splits,
    read_manifest,
    write_manifest,
)
from attribnet.data.synthetic.generators import (
    ARCHITECTURES,
    DEMO_CLASSES,
    build_generator,
    render_fake,
)
from attribnet.data.synthetic.talking_heads import FPS, draw_source
from attribnet.errors import DataError
from attribnet.files.atomic import write_json

log = logging.getLogger(__name__)

REAL_CLASS = "real"
DEMO_FORMAT = 2


def quality_tag(crf: int) -> str:
    """Manifest quality tag of an H.264 crf, e.g. ``crf23``."""
    return f"crf{int(crf)}"


def _parameters(
    num_sources: int,
    num_frames: int,
    size: int,
    seed: int,
    qualities: Sequence[int],
    generators: Sequence[str],
    instances: int = 1,
) -> dict[str, object]:
    """Check the parameters and return them as stored in ``demo.json``."""
    if num_sources < 1 or num_frames < 1 or size < 8 or size % 8:
        raise ValueError(
            f"need num_sources >= 1, num_frames >= 1 and size a multiple of 8, got "
            f"{num_sources}, {num_frames}, {size}"
        )
    if not qualities or not generators:
        raise ValueError("need at least one quality and one generator")
    if len(set(qualities)) < len(qualities) or len(set(generators)) < len(generators):
        raise ValueError(f"duplicate qualities or generators: {qualities}, {generators}")
    for name in generators:
        if name not in ARCHITECTURES and name != REAL_CLASS:
            raise ValueError(
                f"unknown toy generator {name!r}; choose from {sorted(ARCHITECTURES)} or "
                f"{REAL_CLASS!r}"
            )
    if not 1 <= instances <= num_sources:
        raise ValueError(f"need 1 <= instances <= num_sources, got {instances}")
    params: dict[str, object] = {
        "format": DEMO_FORMAT,
        "num_sources": num_sources,
        "num_frames": num_frames,
        "size": size,
        "seed": seed,
        "qualities": [int(q) for q in qualities],
        "generators": list(generators),
    }
    if instances > 1:  # one instance: the parameters (and demo sets) made before instances
        params["instances"] = instances
    return params


def _is_complete(out_dir: Path, params: dict[str, object]) -> bool:
    """Whether ``out_dir`` holds a manifest, made with ``params``, whose videos all exist."""
    meta, manifest = out_dir / "demo.json", out_dir / "manifest.csv"
    if not (meta.is_file() and manifest.is_file()):
        return False
    try:
        if json.loads(meta.read_text()) != params:
            return False
        return all(Path(row.path).is_file() for row in read_manifest(manifest))
    except (json.JSONDecodeError, DataError):
        return False


def generate_demo(
    out_dir: str | os.PathLike[str],
    *,
    num_sources: int = 24,
    num_frames: int = 20,
    size: int = 64,
    seed: int = 0,
    qualities: Sequence[int] = DFDM_CRFS,
    generators: Sequence[str] = DEMO_CLASSES,
    instances: int = 1,
) -> Path:
    """Write the demo dataset into ``out_dir``; return the manifest path.

    Returns at once when ``out_dir`` already holds a finished set made with the same
    parameters. Otherwise every video is (re)written and the manifest comes last, so an
    interrupted run leaves no manifest and is redone by the next call. Add ``"unseen"``
    to ``generators`` to render the held-out sixth architecture.
    """
    out_dir = Path(out_dir)
    params = _parameters(num_sources, num_frames, size, seed, qualities, generators, instances)
    manifest = out_dir / "manifest.csv"
    if _is_complete(out_dir, params):
        log.info("demo dataset already complete: %s", manifest)
        return manifest
    manifest.unlink(missing_ok=True)
    started = time.perf_counter()
    rows = _write_videos(out_dir, params)
    write_json(out_dir / "demo.json", params)
    write_manifest(rows, manifest)
    log.info(
        "demo dataset: %d videos in %s (%.1f s)", len(rows), out_dir, time.perf_counter() - started
    )
    return manifest


def _write_videos(out_dir: Path, params: dict[str, object]) -> list[ManifestRow]:
    """Render every source through every generator (source i through instance i mod N of
    each) and encode it at every quality."""
    source_ids = [f"src{i:03d}" for i in range(int(params["num_sources"]))]
    n = int(params.get("instances", 1))
    generators = {
        (name, k): None if name == REAL_CLASS else build_generator(name, k)
        for name in params["generators"]
        for k in range(n)
    }
    seeds = np.random.SeedSequence(int(params["seed"])).spawn(len(source_ids))
    rows = []
    for i in tqdm(range(len(source_ids)), desc="demo", disable=None):
        source = draw_source(np.random.default_rng(seeds[i]), int(params["num_frames"]))
        real = source.render(int(params["num_frames"]), int(params["size"]))
        for name in params["generators"]:
            generator = generators[(name, i % n)]
            fake = real if generator is None else render_fake(generator, real)
            for crf in params["qualities"]:
                path = out_dir / quality_tag(crf) / name / f"{source_ids[i]}.mp4"
                write_video(path, fake, crf=crf, fps=FPS)
                instance = f"i{i % n}" if n > 1 else ""
                rows.append(
                    ManifestRow(str(path), name, quality_tag(crf), source_ids[i], "", instance)
                )
    group_by = "instance" if n > 1 else "source_id"
    return assign_splits(rows, DEFAULT_SPLIT, seed=int(params["seed"]), group_by=group_by)
