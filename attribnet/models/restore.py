"""A model from a checkpoint file: the architecture its recipe describes, its weights."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from attribnet.config import ModelConfig, Recipe, recipe_from_dict
from attribnet.errors import CheckpointError
from attribnet.files.checkpoints import read_checkpoint
from attribnet.models.attribution_model import AttributionModel, build_model


def load_model(
    path: str | os.PathLike[str],
) -> tuple[AttributionModel, Recipe, list[str], dict[str, Any]]:
    """The model of a checkpoint (eval mode, CPU), its recipe, class names and raw state.

    A checkpoint whose weights do not fit the architecture its recipe describes is a
    CheckpointError, not a crash.
    """
    state = read_checkpoint(path)
    recipe = recipe_from_dict(state["args"], source=f"recipe in {path}")
    class_names = list(state["class_names"])
    model = build_model(_without_weights(recipe), num_classes=len(class_names))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit the architecture of its recipe: {first}"
        ) from exc
    return model.eval(), recipe, class_names, state


def _without_weights(recipe: Recipe) -> ModelConfig:
    """The model config without pretrained weights: the checkpoint supplies them."""
    return replace(recipe.model, weights=None)
