"""Optimisation of a run: the optimizer over the task's parameters, the learning-rate
schedule, and the open-space simulator the loss trains against."""

from __future__ import annotations

import math

import torch

from attribnet.config import Recipe
from attribnet.data.open_space import OpenSpaceSimulator, pool_seed


def build_optimizer(task: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD (the paper's) or AdamW over every trainable parameter of the task."""
    oc = recipe.optim
    params = [p for p in task.parameters() if p.requires_grad]
    if oc.name == "sgd":
        return torch.optim.SGD(params, lr=oc.lr, momentum=oc.momentum, weight_decay=oc.weight_decay)
    return torch.optim.AdamW(params, lr=oc.lr, weight_decay=oc.weight_decay)


def build_open_space(recipe: Recipe) -> OpenSpaceSimulator | None:
    """The open-space simulator when ``loss.open_space_weight`` > 0 (frozen: no parameters;
    its pool is re-drawn every epoch by :func:`train_one_epoch`)."""
    lc = recipe.loss
    if not lc.open_space_weight:
        return None
    return OpenSpaceSimulator(
        lc.open_space_nets,
        lc.open_space_fraction,
        mean=recipe.data.mean,
        std=recipe.data.std,
        seed=pool_seed(recipe.train.seed, 0),
    )


def lr_factor(recipe: Recipe, epoch: int) -> float:
    """Multiplier of the base lr in ``epoch`` (0-based): warm-up, then step/cosine/constant."""
    oc, total = recipe.optim, recipe.train.epochs
    if epoch < oc.warmup_epochs:
        return (epoch + 1) / (oc.warmup_epochs + 1)
    if oc.schedule == "step":
        return oc.gamma ** (epoch // oc.step_epochs)
    if oc.schedule == "cosine":
        span = max(total - oc.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - oc.warmup_epochs) / span))
    return 1.0
