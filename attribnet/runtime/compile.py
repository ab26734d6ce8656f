"""``torch.compile`` of a module's training forward, with an eager fallback:
:func:`compile_training_forward`.

torch.compile fails on some machines, and only when the compiled code first runs: no C
compiler for the CPU backend, no Triton or an unsupported GPU for the CUDA one, a Python
that Dynamo does not support yet, or an operator the compiler cannot lower. A run asked to
compile must not die of that: the first failure is logged as one warning line and the
module runs eagerly from then on, so the run trains as it would without compiling.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


class CompiledForward:
    """A module's ``forward`` that runs compiled in training mode and eagerly in eval mode
    (validation: other batch sizes, no gradients; not worth a second compilation).

    The backward graph is compiled with the forward (not lazily at the first backward), so
    a backward the compiler cannot build fails here too, before anything ran. After the
    first failure :attr:`failed` holds its one-line reason and every call is eager.
    """

    def __init__(self, module: nn.Module, compiled: Callable[..., Any]):
        self.module, self.compiled = module, compiled
        self.failed: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        eager = type(self.module).forward
        if self.failed is None and self.module.training:
            try:
                with _backward_compiled_with_forward():
                    return self.compiled(self.module, *args, **kwargs)
            except Exception as exc:  # any compiler failure: train eagerly instead
                self.failed = _one_line(exc)
                log.warning(
                    "torch.compile of %s failed (%s); training it without compiling",
                    type(self.module).__name__,
                    self.failed,
                )
        return eager(self.module, *args, **kwargs)


def compile_training_forward(module: nn.Module, **options: Any) -> CompiledForward | None:
    """Make ``module``'s forward a :class:`CompiledForward` (in place: its parameters and
    state dict keys stay as they are); returns it, or None (with a warning) when
    ``torch.compile`` itself refuses, e.g. on a Python it does not support. ``options`` go
    to torch.compile (``mode="reduce-overhead"``: CUDA graphs; ``dynamic=False``).

    The compiled function is the module class's forward, called with the module, so a
    deep copy of the module (its own :class:`CompiledForward`) runs the copy."""
    try:
        compiled = torch.compile(type(module).forward, **options)
    except Exception as exc:
        log.warning("torch.compile is not available here (%s); training without compiling",
                    _one_line(exc))  # fmt: skip
        return None
    wrapper = CompiledForward(module, compiled)
    module.forward = wrapper  # type: ignore[method-assign]
    return wrapper


def _backward_compiled_with_forward() -> contextlib.AbstractContextManager:
    """AOTAutograd compiles the backward graph at the first backward unless told otherwise;
    a failure there could not fall back any more."""
    config = getattr(torch, "_functorch", None)
    config = getattr(config, "config", None)
    if config is None or not hasattr(config, "force_non_lazy_backward_lowering"):
        return contextlib.nullcontext()
    return config.patch(force_non_lazy_backward_lowering=True)


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, short enough for one log line."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
