"""Shared fixtures: a tiny generated demo dataset, and a tiny query world (videos, a
checkpoint and its generator index; see :mod:`tests.world`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from attribnet.data.synthetic import generate_demo
from tests.world import build_world


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """5 toy generators x 6 sources x 2 qualities, 8 frames of 32x32: the manifest path."""
    root = tmp_path_factory.mktemp("tiny_demo")
    return generate_demo(root, num_sources=6, num_frames=8, size=32, qualities=(0, 23))


@pytest.fixture(scope="session")
def tiny_demo_instances(tmp_path_factory) -> Path:
    """5 toy generators x 5 trainings (instances) each x 10 sources, crf0, 8 frames of 32x32,
    split by instance: the manifest path (for what needs the instance column)."""
    root = tmp_path_factory.mktemp("tiny_demo_instances")
    return generate_demo(root, num_sources=10, num_frames=8, size=32, qualities=(0,), instances=5)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny query world of :func:`tests.world.build_world`: paths under ``root``,
    ``manifest``, ``checkpoint``, ``index`` and ``queries``."""
    return build_world(tmp_path_factory.mktemp("world"))
