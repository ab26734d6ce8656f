"""The optimizer's update kernels and the learning rate's batch scaling."""

from __future__ import annotations

import pytest
import torch

from attribnet.config import LossConfig, recipe_from_dict
from attribnet.losses import AttributionLoss
from attribnet.models import AttributionModel
from attribnet.models.encoder import ClipEncoder
from attribnet.training.optim import base_lr, build_optimizer, set_update_kernels, update_kernels
from attribnet.training.task import AttributionTask

CLASSES = ["a", "b", "c"]


def tiny_task() -> AttributionTask:
    torch.manual_seed(0)
    model = AttributionModel(ClipEncoder("resnet10", num_frames=2), 3, embedding_dim=8)
    loss = AttributionLoss(LossConfig(arcface_weight=0.5), CLASSES, 8)
    return AttributionTask(model, loss)


def trained(name: str, kernels: dict[str, bool] | None) -> list[torch.Tensor]:
    """Parameters after 3 steps of ``name`` (weight decay, momentum) with ``kernels``, or
    with torch's per-parameter loop (``foreach=False``) when None."""
    task = tiny_task()
    recipe = recipe_from_dict({"optim": {"name": name, "lr": 0.05, "weight_decay": 1e-3}})
    optimizer = build_optimizer(task, recipe)
    for group in optimizer.param_groups:
        group.update(kernels or {"foreach": False, "fused": None})
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        clips = torch.randn(4, 2, 3, 32, 32, generator=generator)
        _, losses = task(clips, torch.tensor([0, 1, 2, 0]))
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
    return [p.detach().clone() for p in task.parameters()]


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_the_cpu_kernels_give_bitwise_the_per_parameter_loop(name):
    kernels = update_kernels(torch.device("cpu"))
    assert kernels == {"foreach": True}
    loop, multi = trained(name, None), trained(name, kernels)
    assert all(torch.equal(a, b) for a, b in zip(loop, multi, strict=True))


def test_fused_on_cuda_and_restored_after_loading_a_cpu_checkpoint():
    assert update_kernels(torch.device("cuda")) == {"fused": True}
    task = tiny_task()
    optimizer = build_optimizer(task, recipe_from_dict({"optim": {"name": "adamw"}}))
    assert optimizer.param_groups[0]["foreach"] is True
    state = optimizer.state_dict()
    state["param_groups"][0].update({"fused": True, "foreach": None})  # written on a GPU
    optimizer.load_state_dict(state)
    set_update_kernels(optimizer)
    group = optimizer.param_groups[0]
    assert (group["foreach"], group["fused"]) == (True, None)


def test_lr_scales_with_the_batch_only_when_lr_batch_is_set():
    plain = recipe_from_dict({"optim": {"lr": 0.01}, "train": {"batch_size": 64}})
    assert base_lr(plain) == 0.01
    paper = recipe_from_dict({"optim": {"lr": 0.01, "lr_batch": 10}, "train": {"batch_size": 64}})
    assert base_lr(paper) == pytest.approx(0.064)
    optimizer = build_optimizer(tiny_task(), paper)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.064)
