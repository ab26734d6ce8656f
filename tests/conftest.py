"""Shared fixtures: a tiny generated demo dataset and overrides that make any recipe tiny."""

from __future__ import annotations

from pathlib import Path

import pytest

from attribnet.data.synthetic import generate_demo


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """5 toy generators x 6 sources x 2 qualities, 8 frames of 32x32: the manifest path."""
    root = tmp_path_factory.mktemp("tiny_demo")
    return generate_demo(root, num_sources=6, num_frames=8, size=32, qualities=(0, 23))


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
