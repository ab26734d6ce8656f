"""Work shared out over the processes of a torchrun job, and gathered back.

- :func:`command_process_group`: a command's time in the process group torchrun describes
  (``WORLD_SIZE`` > 1; NCCL with CUDA, else gloo); :func:`barrier` waits for every rank.
  Each rank's GPU is ``LOCAL_RANK``'s (:func:`attribnet.runtime.device.resolve_device`).
- :class:`RankBatches`: training. The epoch's batches are drawn the same way on every rank
  (one seed, no rank in it); each run of ``world`` consecutive batches is one optimizer
  step and rank ``r`` takes the ``r``-th. So every rank gets its share of the epoch, with any
  batch sampler (random or m-per-class), and the clips of one step on ``W`` ranks are the
  clips one process would see with a ``W`` times larger batch.
- :func:`shard` and :func:`gather`: inference (validation, index building). Each rank
  takes a contiguous block of the items, and the blocks come back in the original order.
- :func:`convert_sync_batchnorm`: BatchNorm over every rank's batch (``train.sync_bn``):
  torch's SyncBatchNorm on CUDA, :class:`CpuSyncBatchNorm` on the CPU (gloo), where
  torch's runs only on GPUs.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn import functional as dist_nn
from torch.nn.modules.batchnorm import _BatchNorm

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes the run's files (rank 0, or no process group)."""
    return rank_and_world()[0] == 0


def init_from_env() -> bool:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1; True when in one."""
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = process_group_backend()
    dist.init_process_group(backend)
    if "nccl" in backend:
        torch.cuda.set_device(local_rank())
    return True


def process_group_backend() -> str:
    """NCCL for CUDA tensors and gloo for CPU ones (so ``train.device: cpu`` works on a GPU
    machine too) when every process on this machine (torchrun's ``LOCAL_WORLD_SIZE``) has a
    GPU of its own; gloo alone otherwise (no GPU, or more processes than GPUs: NCCL refuses
    two ranks on one GPU, and :func:`attribnet.runtime.device.resolve_device` says so for CUDA)."""
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available() and torch.cuda.device_count() >= per_machine:
        return "cpu:gloo,cuda:nccl"
    return "gloo"


@contextlib.contextmanager
def command_process_group() -> Iterator[bool]:
    """A command's time in torchrun's process group (none when ``WORLD_SIZE`` <= 1):
    joined on entry, destroyed on exit however the command ends. Yields whether this
    process reports (rank 0, or no process group)."""
    init_from_env()
    try:
        yield is_main()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank; nothing outside a process group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def local_rank() -> int:
    """This process's GPU index on its machine (torchrun's ``LOCAL_RANK``), 0 without it."""
    return int(os.environ.get("LOCAL_RANK", 0))


class RankBatches:
    """A batch sampler: this rank's batches of ``batches``, one per optimizer step.

    ``batches`` must yield the same batches on every rank. Of each ``world`` consecutive
    batches rank ``rank`` takes the ``rank``-th; a last step that would leave some rank
    without a batch is dropped, so every rank takes the same number of steps (DDP needs it).
    """

    def __init__(self, batches: Iterable[list[int]], rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in a world of {world}")
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        step: list[list[int]] = []
        for batch in self.batches:
            step.append(batch)
            if len(step) == self.world:
                yield step[self.rank]
                step = []

    def __len__(self) -> int:
        return len(self.batches) // self.world  # type: ignore[arg-type]


def shard(n: int, rank: int | None = None, world: int | None = None) -> range:
    """This rank's contiguous block of ``range(n)``; the blocks differ in size by <= 1."""
    if rank is None or world is None:
        rank, world = rank_and_world()
    start = rank * n // world
    return range(start, (rank + 1) * n // world)


def gather(local: Sequence[T], to_all: bool = False) -> list[T] | None:
    """Every rank's ``local`` items joined in rank order (the order :func:`shard` cut).

    Outside a process group, ``local`` itself. Otherwise rank 0 gets the list and the other
    ranks None, or every rank gets it with ``to_all``. Items must pickle.
    """
    rank, world = rank_and_world()
    if world == 1:
        return list(local)
    parts: list[Any] = [None] * world
    if to_all:
        dist.all_gather_object(parts, list(local))
    else:
        dist.gather_object(list(local), parts if rank == 0 else None, dst=0)
        if rank != 0:
            return None
    return [item for part in parts for item in part]


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank (``value`` itself outside a process group): for a
    decision every rank must take alike, made from what rank 0 sees (e.g. its files)."""
    parts = gather([value], to_all=True)
    assert parts is not None
    return parts[0]


class CpuSyncBatchNorm(_BatchNorm):
    """A BatchNorm (any of 1d/2d/3d, switched in place) that normalises over every rank's
    batch on the CPU (gloo), where torch's SyncBatchNorm refuses to run.

    In training within a process group it takes the batch mean and variance over all ranks'
    inputs by two all-reduces of sums, differentiable as torch's SyncBatchNorm is (the
    gradient reaches every rank's input), and updates the running statistics like
    BatchNorm (unbiased variance, ``momentum``). Otherwise it is plain BatchNorm.
    """

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002 - torch's signature
        if input.ndim < 2:
            raise ValueError(f"expected at least 2D input, got {input.ndim}D")

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - torch's signature
        sync = self.training and dist.is_initialized() and dist.get_world_size() > 1
        if not sync or self.momentum is None:
            return super().forward(input)
        dims = [0, *range(2, input.ndim)]
        shape = [1, -1] + [1] * (input.ndim - 2)
        count = input.new_tensor([input.numel() / input.shape[1]])
        total = _all_reduce(torch.cat([input.sum(dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        centred = input - mean.view(shape)
        var = _all_reduce((centred * centred).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                unbiased = var.detach() * n / torch.clamp(n - 1, min=1.0)
                self.running_var.lerp_(unbiased, self.momentum)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def _all_reduce(tensor: Tensor) -> Tensor:
    """Sum over ranks, differentiable (its gradient is the sum of the ranks' gradients).
    torch marks this function deprecated in favour of a private module; until a public
    successor exists, its warning is kept out of every forward's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        return dist_nn.all_reduce(tensor)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` normalised over all ranks' batches: torch's
    SyncBatchNorm on CUDA, :class:`CpuSyncBatchNorm` on the CPU. Parameters, buffers and
    state-dict keys stay the same objects and names, so an optimizer built before still
    holds them."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for sub in module.modules():
        if isinstance(sub, _BatchNorm):
            sub.__class__ = CpuSyncBatchNorm
    return module
