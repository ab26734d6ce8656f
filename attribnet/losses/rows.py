"""A loss on some rows of a batch, that still reaches every parameter when there are none
(DDP waits for a gradient of every parameter it was not told about)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


def on_rows(
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    labels: Tensor,
    rows: Tensor | None,
    *params: Tensor,
) -> Tensor:
    """``loss_fn(inputs, labels)`` on the selected rows; all rows as they are (exactly the
    unmasked loss); no row: a 0 that still reaches ``inputs`` and ``params``, so every
    parameter gets a (zero) gradient, as DDP needs. ``rows=None`` means all rows, without
    looking at them (a boolean test of ``rows`` waits for the GPU)."""
    if rows is None or bool(rows.all()):
        return loss_fn(inputs, labels)
    if not bool(rows.any()):
        return sum((p.sum() * 0.0 for p in params), inputs.sum() * 0.0)
    return loss_fn(inputs[rows], labels[rows])
