"""LossTotals: loss sums on the device, read at intervals, NaN caught at the read."""

from __future__ import annotations

import pytest
import torch

from attribnet.training.state import EpochProgress
from attribnet.training.totals import LossTotals, NonFiniteLossError


def step_losses(generator: torch.Generator) -> dict[str, torch.Tensor]:
    ce, arcface = torch.rand(2, generator=generator) * 3
    return {"ce": ce, "arcface": arcface, "total": ce + 0.1 * arcface}


def test_the_sums_are_bitwise_those_of_python_floats_from_a_resumed_start():
    generator = torch.Generator().manual_seed(0)
    start = {"ce": 1.2345678901, "arcface": 0.5, "total": 1.3}
    progress = EpochProgress(3, steps=4, sums=dict(start))
    totals = LossTotals(progress, torch.device("cpu"))
    expected = dict(start)
    for _ in range(25):
        losses = step_losses(generator)
        totals.add(losses)
        for key, value in losses.items():
            expected[key] += float(value)
    assert progress.sums == start  # nothing read yet
    assert totals.read() == expected and progress.sums == expected
    assert progress.steps == 29


def test_a_nan_step_is_named_at_the_next_read():
    generator = torch.Generator().manual_seed(0)
    progress = EpochProgress(1)
    totals = LossTotals(progress, torch.device("cpu"))
    totals.add(step_losses(generator))
    totals.read()
    for step in range(2, 6):
        losses = step_losses(generator)
        if step >= 3:  # the first bad step is 3; later ones are bad too
            losses = {**losses, "total": losses["total"] * float("nan")}
        totals.add(losses)
    with pytest.raises(NonFiniteLossError) as caught:
        totals.read()
    message = str(caught.value)
    assert message.startswith("non-finite loss at epoch 2, step 3: {'ce': ")
    assert "'total': nan}; stopped, the last good checkpoint is kept" in message
    assert "\n" not in message


def test_an_infinite_total_is_caught_too():
    totals = LossTotals(EpochProgress(0), torch.device("cpu"))
    totals.add({"ce": torch.tensor(float("inf")), "total": torch.tensor(float("inf"))})
    with pytest.raises(NonFiniteLossError, match="at epoch 1, step 1: "):
        totals.read()


def test_no_step_reads_nothing():
    progress = EpochProgress(0, sums={"total": 2.0})
    assert LossTotals(progress, torch.device("cpu")).read() == {"total": 2.0}
