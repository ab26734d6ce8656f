"""Batches moved to the device one step ahead: :class:`DevicePrefetcher`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch


class DevicePrefetcher:
    """Iterates ``batches`` (dicts whose tensors are on the host) with every tensor on
    ``device``, in the same order.

    On CUDA each copy is queued on a side stream, non-blocking (from pinned memory when the
    loader pins it: ``pin_memory=True``): the copy of batch i+1 is queued as soon as the
    caller, having queued its step on batch i, asks for the next batch, so on the GPU it
    runs beside that step instead of after it (a step that never waits for the GPU returns
    at once). The main stream waits for a batch's copy before using it, and the batch's
    memory is not reused before the step is done with it (``record_stream``).

    Elsewhere each batch is moved as it is handed over (``.to``: a tensor already on
    ``device`` is the same tensor). Values that are not tensors pass as they are.
    """

    def __init__(self, batches: Iterable[dict[str, Any]], device: torch.device):
        self.batches, self.device = batches, torch.device(device)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.device.type != "cuda":
            for batch in self.batches:
                yield _moved(batch, self.device)
            return
        yield from self._ahead()

    def _ahead(self) -> Iterator[dict[str, Any]]:
        side = torch.cuda.Stream(self.device)
        main = torch.cuda.current_stream(self.device)
        source = iter(self.batches)

        def queue_next() -> dict[str, Any] | None:
            batch = next(source, None)
            if batch is None:
                return None
            with torch.cuda.stream(side):
                return _moved(batch, self.device)

        batch = queue_next()
        while batch is not None:
            main.wait_stream(side)
            for value in batch.values():
                if isinstance(value, torch.Tensor) and value.device.type == "cuda":
                    value.record_stream(main)
            yield batch  # the caller queues its step on the main stream, and comes back
            batch = queue_next()  # while the GPU runs that step, this copy runs beside it


def _moved(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with its tensors on ``device`` (non-blocking copies)."""
    return {
        key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }
