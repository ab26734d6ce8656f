"""A checkpoint loaded for evaluation (:class:`LoadedModel`) on the device it runs on
(:func:`attribnet.runtime.device.resolve_device`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attribnet.config import Recipe
from attribnet.files.checkpoints import resolve_checkpoint
from attribnet.models import AttributionModel
from attribnet.models.restore import load_model
from attribnet.runtime.device import resolve_device


@dataclass
class LoadedModel:
    """A checkpoint's model (eval mode, on ``device``), recipe, class names and raw state."""

    path: Path
    model: AttributionModel
    recipe: Recipe
    class_names: list[str]
    state: dict[str, Any]
    device: torch.device


def load_checkpoint(path: str | Path, device: str = "auto") -> LoadedModel:
    """Load a checkpoint (a file or a run folder holding best.pt) for evaluation."""
    path = resolve_checkpoint(path)
    model, recipe, names, state = load_model(path)
    dev = resolve_device(device)
    return LoadedModel(path, model.to(dev).eval(), recipe, names, state, dev)
