"""A checkpoint loaded for evaluation (:class:`LoadedModel`) and the device it runs on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attribnet.checkpoint import load_model
from attribnet.config import Recipe
from attribnet.errors import ConfigError
from attribnet.models import AttributionModel


@dataclass
class LoadedModel:
    """A checkpoint's model (eval mode, on ``device``), recipe, class names and raw state."""

    path: Path
    model: AttributionModel
    recipe: Recipe
    class_names: list[str]
    state: dict[str, Any]
    device: torch.device


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def load_checkpoint(path: str | Path, device: str = "auto") -> LoadedModel:
    """Load a checkpoint (a file or a run folder holding best.pt) for evaluation."""
    path = Path(path)
    path = path / "best.pt" if path.is_dir() else path
    model, recipe, names, state = load_model(path)
    dev = resolve_device(device)
    return LoadedModel(path, model.to(dev).eval(), recipe, names, state, dev)
