"""Checkpoint files: ``{"model", "loss", "optimizer", "lr_scheduler", "epoch", "args", ...}``,
written atomically and read with ``weights_only=True``; torch only, no attribnet model.
(:mod:`attribnet.models.restore` builds a model from one.)"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from attribnet import __version__
from attribnet.errors import CheckpointError
from attribnet.files.atomic import atomic_path


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or ``<run dir>/best.pt`` for a run folder."""
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Save ``state`` (plus the library version) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({**state, "version": __version__}, tmp)


def load_tensors_file(path: str | os.PathLike[str], what: str) -> Any:
    """``torch.load`` on the CPU with ``weights_only=True`` (tensors and plain containers,
    never arbitrary pickles); CheckpointError naming ``what`` (one line) when the file is
    missing or cannot be read so."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"cannot read {what} {path} (weights_only=True: tensors only): {first}"
        ) from exc


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint dict on the CPU; CheckpointError if missing or unreadable."""
    path = resolve_checkpoint(path)
    state = load_tensors_file(path, "checkpoint")
    if not isinstance(state, dict) or "model" not in state or "args" not in state:
        raise CheckpointError(f"{path} is not an attribnet checkpoint (no model/args)")
    return state


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
