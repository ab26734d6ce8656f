"""Optimisation of a run: the optimizer over the task's parameters, the learning-rate
schedule, and the open-space simulator the loss trains against."""

from __future__ import annotations

import math

import torch

from attribnet.config import Recipe
from attribnet.data.open_space import OpenSpaceSimulator, pool_seed
from attribnet.runtime.distributed import rank_and_world


def build_optimizer(task: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD (the paper's) or AdamW over every trainable parameter of the task, with the
    update kernels of :func:`update_kernels` for the parameters' device."""
    oc = recipe.optim
    params = [p for p in task.parameters() if p.requires_grad]
    kernels = update_kernels(params[0].device if params else torch.device("cpu"))
    lr = base_lr(recipe)
    if oc.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=oc.momentum,
                               weight_decay=oc.weight_decay, **kernels)  # fmt: skip
    return torch.optim.AdamW(params, lr=lr, weight_decay=oc.weight_decay, **kernels)


def base_lr(recipe: Recipe) -> float:
    """``optim.lr``, scaled linearly to the step's batch (``train.batch_size`` x processes)
    when ``optim.lr_batch`` names the batch it is for."""
    oc = recipe.optim
    if not oc.lr_batch:
        return oc.lr
    return oc.lr * recipe.train.batch_size * rank_and_world()[1] / oc.lr_batch


def update_kernels(device: torch.device) -> dict[str, bool]:
    """How the optimizer updates parameters on ``device``: on CUDA one fused kernel for all
    of them (``fused=True``); elsewhere the multi-tensor (``foreach``) kernels, which give
    bitwise the same parameters as torch's per-parameter loop on the CPU (its default
    there; tests/training/test_optim.py checks it), where fused CPU kernels would not."""
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def set_update_kernels(optimizer: torch.optim.Optimizer) -> None:
    """Restore :func:`update_kernels` after ``load_state_dict``: a checkpoint's param groups
    carry the kernels of the device that wrote it, and its step counts sit where those
    kernels want them (a fused kernel: on the parameter's device; else on the CPU)."""
    for group in optimizer.param_groups:
        device = group["params"][0].device if group["params"] else torch.device("cpu")
        group.update({"fused": None, "foreach": None, **update_kernels(device)})
        for param in group["params"]:
            step = optimizer.state.get(param, {}).get("step")
            if isinstance(step, torch.Tensor):
                where = param.device if group["fused"] else torch.device("cpu")
                optimizer.state[param]["step"] = step.to(where, torch.float32)


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
