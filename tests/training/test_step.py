"""The training step as the loop runs it: reads from the device only at intervals, compile's
fallback, and (on a GPU) no synchronisation at all inside a step."""

from __future__ import annotations

import pytest
import torch

from attribnet.cli import train
from attribnet.config import load_recipe
from attribnet.files.checkpoints import read_checkpoint
from attribnet.models import build_model
from attribnet.training import loop
from attribnet.training.data import prepare_data, train_loader
from attribnet.training.optim import build_optimizer
from attribnet.training.task import AttributionTask
from attribnet.training.totals import LossTotals
from tests.builders import REPO, tiny_overrides

DEMO = REPO / "recipes/demo.yaml"


def run(manifest, out, **extra) -> int:
    sets = tiny_overrides(manifest, out, **{"train.max_steps_per_epoch": 5, **extra})
    return train.main([str(DEMO)] + [a for s in sets for a in ("--set", s)])


def test_losses_are_read_back_every_log_interval_and_at_the_epoch_end(
    tiny_demo, tmp_path, monkeypatch
):
    reads: list[int] = []
    real_read = LossTotals.read

    def counted(self):
        reads.append(self.progress.steps)
        return real_read(self)

    monkeypatch.setattr(LossTotals, "read", counted)
    assert run(tiny_demo, tmp_path, **{"train.log_every_steps": 2, "train.epochs": 2}) == 0
    assert reads == [2, 4, 5, 2, 4, 5]


def test_a_failing_compiler_warns_and_trains_as_without_compiling(
    tiny_demo, tmp_path, monkeypatch, capsys
):
    assert run(tiny_demo, tmp_path / "eager") == 0
    capsys.readouterr()

    def no_compiler(fn):
        def compiled(*args, **kwargs):
            raise RuntimeError("CppCompileError: C++ compile error (no cc found)")

        return compiled

    monkeypatch.setattr(torch, "compile", no_compiler)
    assert run(tiny_demo, tmp_path / "compiled", **{"train.compile": True}) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "torch.compile" in line]
    assert len(warned) == 1, err
    assert "torch.compile of ClipEncoder failed (RuntimeError: CppCompileError" in warned[0]
    eager = read_checkpoint(tmp_path / "eager/runs/demo/last.pt")
    compiled = read_checkpoint(tmp_path / "compiled/runs/demo/last.pt")
    for key, value in eager["model"].items():
        assert torch.equal(value, compiled["model"][key]), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_training_step_never_waits_for_the_gpu(tiny_demo, tmp_path, monkeypatch):
    """CUDA's sync debug mode raises at any synchronisation in the steps of an epoch, the
    reads of the loss sums (every log interval) excepted."""
    on_gpu = {"train.device": "cuda", "train.log_every_steps": 1000,
              "train.max_steps_per_epoch": 4}  # fmt: skip
    sets = tiny_overrides(tiny_demo, tmp_path, **on_gpu)
    recipe = load_recipe(DEMO, sets)
    device = torch.device("cuda")
    data = prepare_data(recipe)
    model = build_model(recipe.model, len(data.class_names))
    loss = loop._build_loss(recipe, data, model.encoder.feature_dim)
    task = AttributionTask(model, loss).to(device)
    optimizer = build_optimizer(task, recipe)
    real_read = LossTotals.read

    def read_allowed(self):
        torch.cuda.set_sync_debug_mode(0)
        try:
            return real_read(self)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(LossTotals, "read", read_allowed)
    loader = train_loader(data, recipe, 0, device=device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = loop.train_one_epoch(task, task, loader, optimizer, recipe, device, 0)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert stats["train_total"] > 0
