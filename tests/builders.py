"""Builders shared by the tests: tiny videos, tiny recipes and checkpoints, overrides."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from attribnet.config import DataConfig, ModelConfig, Recipe, TrainConfig, to_dict
from attribnet.files.checkpoints import save_checkpoint
from attribnet.models import build_model

REPO = Path(__file__).resolve().parents[1]
"""The repository's root (recipes/, benchmarks/, pyproject.toml)."""


def texture_video(rng: np.random.Generator, label: int, frames: int, size: int) -> np.ndarray:
    """(frames, size, size, 3) uint8: noise blurred at a class-specific scale, drifting."""
    base = rng.normal(size=(size * 2, size * 2, 3)).astype(np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 0.5 + 1.5 * label)
    base = (base - base.min()) / (np.ptp(base) + 1e-6) * 255
    shifted = [np.roll(base, (i, 2 * i), axis=(0, 1))[:size, :size] for i in range(frames)]
    return np.stack(shifted).astype(np.uint8)


def tiny_recipe(
    cache: Path,
    manifest: Path | str = "",
    *,
    num_frames: int,
    size: int,
    embedding_dim: int,
    name: str = "tiny",
    batch_size: int = 4,
    build_index: bool = True,
) -> Recipe:
    """A CPU recipe: resnet10, mean fusion, detector none, no loader workers, and no face
    check (its videos are textures, see :func:`texture_video`)."""
    return Recipe(
        name=name,
        data=DataConfig(
            manifest=str(manifest),
            cache=str(cache),
            detector="none",
            face_check=False,
            num_frames=num_frames,
            image_size=size,
            max_frames=16,
            num_workers=0,
        ),
        model=ModelConfig(
            backbone="resnet10", fusion="mean", num_frames=num_frames, embedding_dim=embedding_dim
        ),
        train=TrainConfig(batch_size=batch_size, device="cpu", amp=False, build_index=build_index),
    )


def write_checkpoint(path: Path, recipe: Recipe, class_names: list[str], seed: int) -> Path:
    """An untrained model of ``recipe`` saved as a training checkpoint would be."""
    torch.manual_seed(seed)
    model = build_model(recipe.model, len(class_names))
    state = {
        "model": model.state_dict(),
        "loss": {},
        "optimizer": {},
        "lr_scheduler": {},
        "epoch": 0,
        "args": to_dict(recipe),
        "class_names": class_names,
    }
    save_checkpoint(path, state)
    return path


def tiny_overrides(manifest: Path, out: Path, **extra: object) -> list[str]:
    """--set overrides that point a recipe at the tiny demo and shrink model and loop."""
    values: dict[str, object] = {
        "data.demo": False,
        "data.manifest": str(manifest),
        "data.cache": str(manifest.parent / "cache"),
        "data.detector": "none",
        "data.classes": [],
        "data.num_frames": 4,
        "data.image_size": 32,
        "data.num_workers": 0,
        "model.backbone": "resnet10",
        "model.num_frames": 4,
        "model.weights": None,
        "train.epochs": 1,
        "train.batch_size": 5,
        "train.device": "cpu",
        "train.out_dir": str(out / "runs"),
        "train.index_dir": str(out / "indexes"),
        "train.build_index": False,
        **extra,
    }
    return [f"{k}={_yaml(v)}" for k, v in values.items()]


def _yaml(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def assert_predictions_close(expected: list, actual: list, atol: float) -> None:
    """Two runs of :func:`attribnet.predict.predict_videos` agree: logits, embeddings, and
    per clip the frames (exactly), the frame weights and the SAM maps (within ``atol``)."""
    for a, b in zip(expected, actual, strict=True):
        np.testing.assert_allclose(b.clip_logits, a.clip_logits, atol=atol)
        np.testing.assert_allclose(b.clip_embeddings, a.clip_embeddings, atol=atol)
        for ca, cb in zip(a.clips, b.clips, strict=True):
            np.testing.assert_array_equal(cb.frames, ca.frames)
            np.testing.assert_allclose(cb.weights, ca.weights, atol=atol)
            np.testing.assert_allclose(cb.sam, ca.sam, atol=atol)
