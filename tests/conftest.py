"""Shared fixtures: a tiny generated demo dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from attribnet.data.synthetic import generate_demo


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """5 toy generators x 6 sources x 2 qualities, 8 frames of 32x32: the manifest path."""
    root = tmp_path_factory.mktemp("tiny_demo")
    return generate_demo(root, num_sources=6, num_frames=8, size=32, qualities=(0, 23))
