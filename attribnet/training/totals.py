"""An epoch's loss sums kept on the device, so that a training step never waits for it.

A step queues its additions (:meth:`LossTotals.add`) and goes on; :meth:`LossTotals.read`
copies the sums to the host, the one synchronisation with the device, every
``train.log_every_steps`` steps, before a mid-epoch checkpoint and at the epoch's end. The
non-finite loss check rides along: each step records, on the device, whether its total was
NaN or infinite, and ``read`` raises :class:`NonFiniteLossError` for the first such step.
The check therefore stops a run at the next read rather than in the step itself; the steps
between ran on broken weights, but nothing is written before a read, so the last
checkpoint on disk is the last good one.

The sums are float64 on the device, started from the epoch's sums so far and added to one
step at a time: the same additions, in the same order, as summing each step's float32
values in Python floats, so the sums (and the metrics rows and checkpoints that hold them)
are bitwise what they were when every step read its losses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attribnet.errors import AttribnetError
from attribnet.training.state import EpochProgress


class NonFiniteLossError(AttribnetError):
    """The loss became NaN or infinite: the run failed (exit code 1), its input is fine."""

    exit_code = 1


class LossTotals:
    """The loss parts of ``progress``'s epoch, summed on ``device``; :meth:`read` moves them
    into ``progress.sums``. ``progress.steps`` counts the steps as they are added."""

    def __init__(self, progress: EpochProgress, device: torch.device):
        self.progress, self.device = progress, device
        self.keys: list[str] = []
        self._sums: Tensor | None = None
        self._bad: Tensor | None = None  # [first non-finite step (-1: none), its parts...]

    def add(self, losses: dict[str, Tensor]) -> None:
        """Count one optimizer step and queue the addition of its loss parts (``total``
        among them); nothing waits for the device."""
        self.progress.steps += 1
        parts = torch.stack([v.detach().float() for v in losses.values()])
        if self._sums is None:
            self._start(list(losses))
        elif list(losses) != self.keys:
            raise ValueError(f"loss parts changed within an epoch: {list(losses)} != {self.keys}")
        assert self._sums is not None and self._bad is not None
        self._sums.add_(parts)
        step = parts.new_full((1,), float(self.progress.steps))
        first = ~torch.isfinite(parts[self.keys.index("total")]) & (self._bad[0] < 0)
        self._bad = torch.where(first, torch.cat([step, parts]).double(), self._bad)

    def _start(self, keys: list[str]) -> None:
        self.keys = keys
        sums = [self.progress.sums.get(k, 0.0) for k in keys]  # filled, not copied, to the GPU
        self._sums = torch.stack([self._full(value) for value in sums])
        self._bad = self._full(-1.0).repeat(len(keys) + 1)

    def _full(self, value: float) -> Tensor:
        return torch.full((), value, dtype=torch.float64, device=self.device)

    def read(self) -> dict[str, float]:
        """Copy the sums into ``progress.sums`` (waiting for the device) and return them.

        Raises NonFiniteLossError naming the first step, and its loss parts, whose total
        was not finite."""
        if self._sums is None or self._bad is None:
            return self.progress.sums
        host = torch.cat([self._sums, self._bad]).tolist()
        n = len(self.keys)
        self.progress.sums = dict(zip(self.keys, host[:n], strict=True))
        first, bad_parts = int(host[n]), dict(zip(self.keys, host[n + 1 :], strict=True))
        if first >= 0:
            raise NonFiniteLossError(
                f"non-finite loss at epoch {self.progress.epoch + 1}, step {first}: "
                f"{bad_parts}; stopped, the last good checkpoint is kept (lower optim.lr or "
                "set train.grad_clip)"
            )
        return self.progress.sums
