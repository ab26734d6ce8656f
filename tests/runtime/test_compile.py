"""compile_training_forward: compiled in training, eager in eval, eager again on failure."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

from attribnet.runtime import compile as compile_module
from attribnet.runtime.compile import CompiledForward, compile_training_forward


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).relu().mean((2, 3))


def fake_compile(calls: list, fail: bool):
    """A torch.compile stand-in: records calls and fails like a missing compiler, or runs
    the function."""

    def compile_(fn):
        def compiled(*args, **kwargs):
            calls.append(args[0])
            if fail:
                raise RuntimeError("InductorError: CppCompileError: C++ compile error\nmore")
            return fn(*args, **kwargs)

        return compiled

    return compile_


def test_a_failing_compiler_warns_once_and_the_module_runs_eagerly(monkeypatch, caplog):
    calls: list = []
    monkeypatch.setattr(torch, "compile", fake_compile(calls, fail=True))
    torch.manual_seed(0)
    net = Net()
    reference = copy.deepcopy(net)
    wrapper = compile_training_forward(net)
    assert isinstance(wrapper, CompiledForward)
    x = torch.randn(2, 3, 8, 8)
    with caplog.at_level(logging.WARNING, logger=compile_module.__name__):
        first, second = net(x), net(x)
    assert torch.equal(first, reference(x)) and torch.equal(second, reference(x))
    assert len(calls) == 1  # tried once, eager since
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "torch.compile of Net failed (RuntimeError: InductorError" in warnings[0]
    assert wrapper.failed is not None and wrapper.failed.startswith("RuntimeError")


def test_compiled_in_training_only_with_the_same_parameters(monkeypatch):
    calls: list = []
    monkeypatch.setattr(torch, "compile", fake_compile(calls, fail=False))
    net = Net()
    keys = list(net.state_dict())
    compile_training_forward(net)
    assert list(net.state_dict()) == keys
    net(torch.randn(2, 3, 8, 8))
    net.eval()
    net(torch.randn(2, 3, 8, 8))
    assert calls == [net]
    twin = copy.deepcopy(net).train()
    twin(torch.randn(2, 3, 8, 8))
    assert calls == [net, twin]  # a copy runs itself, not the original


def test_a_torch_compile_that_refuses_at_once_leaves_the_module_alone(monkeypatch, caplog):
    def refuse(fn):
        raise RuntimeError("Dynamo is not supported on Python 3.99+")

    monkeypatch.setattr(torch, "compile", refuse)
    net = Net()
    with caplog.at_level(logging.WARNING, logger=compile_module.__name__):
        assert compile_training_forward(net) is None
    assert "forward" not in vars(net)
    assert "torch.compile is not available here (RuntimeError: Dynamo" in caplog.text


@pytest.mark.slow
def test_really_compiled_it_trains_as_eager_does():
    """The real compiler (a C++ compiler on the CPU): forward and gradients close to eager."""
    torch.manual_seed(0)
    net = Net()
    eager = copy.deepcopy(net)
    wrapper = compile_training_forward(net)
    x = torch.randn(4, 3, 8, 8)
    net(x).square().sum().backward()
    eager(x).square().sum().backward()
    if wrapper is not None and wrapper.failed:
        pytest.skip(f"torch.compile cannot run here: {wrapper.failed}")
    for a, b in zip(net.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)
