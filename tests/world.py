"""A tiny query world built in seconds on CPU: videos of three toy classes, a manifest, an
untrained checkpoint, its generator index (built through the command line) and a folder
of queries (videos, a frame folder, a corrupt file, a text file). Used by the ``world``
fixture of ``tests/conftest.py``."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

from attribnet.cli.index import main as index_main
from attribnet.data.codec import write_video
from tests.builders import texture_video, tiny_recipe, write_checkpoint

NAMES = ["alpha", "beta", "gamma"]
SPLITS = ["train", "train", "val", "test"]
FRAMES, SIZE, T, DIM = 12, 32, 4, 16


def build_world(root: Path) -> dict[str, Path]:
    """Videos (3 classes x train/train/val/test), a manifest, a checkpoint, its index and a
    query folder with a frame folder and a corrupt file, all under ``root``."""
    rng = np.random.default_rng(0)
    rows = []
    for label, name in enumerate(NAMES):
        for i, split in enumerate(SPLITS):
            path = root / "videos" / name / f"s{i}.mp4"
            write_video(path, texture_video(rng, label, FRAMES, SIZE))
            rows.append([str(path), name, "crf23", f"s{i}", split])
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "quality", "source_id", "split"], *rows])

    queries = root / "queries"
    for name in NAMES:
        (queries / "deep").mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "videos" / name / "s3.mp4", queries / "deep" / f"{name}.mp4")
    frames = queries / "frame_folder"
    frames.mkdir()
    for i, frame in enumerate(texture_video(rng, 0, FRAMES, SIZE)):
        cv2.imwrite(str(frames / f"frame{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    good = (root / "videos" / NAMES[0] / "s0.mp4").read_bytes()
    (queries / "corrupt.mp4").write_bytes(good[: len(good) // 2])
    (queries / "notes.txt").write_text("not a video\n")

    recipe = tiny_recipe(root / "cache", manifest, num_frames=T, size=SIZE, embedding_dim=DIM)
    checkpoint = write_checkpoint(root / "run" / "best.pt", recipe, NAMES, seed=0)
    index_dir = root / "indexes" / "tiny"
    argv = ["build", "--checkpoint", str(checkpoint), "--manifest", str(manifest)]
    assert index_main([*argv, "--out", str(index_dir)]) == 0
    return {
        "root": root,
        "manifest": manifest,
        "checkpoint": checkpoint,
        "index": index_dir,
        "queries": queries,
    }


def other_checkpoint(world: dict[str, Path]) -> Path:
    """A checkpoint of the same recipe with other weights: not the one that built the
    world's index."""
    recipe = tiny_recipe(
        world["root"] / "cache", world["manifest"], num_frames=T, size=SIZE, embedding_dim=DIM
    )
    return write_checkpoint(world["root"] / "mismatch" / "best.pt", recipe, NAMES, seed=1)
