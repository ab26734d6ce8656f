"""Where a model runs: the device a name means (torchrun's GPU per process) and autocast."""

from __future__ import annotations

import contextlib

import torch

from attribnet.errors import ConfigError
from attribnet.runtime.distributed import local_rank, rank_and_world


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None (CUDA when available), ``cpu``, ``cuda[:N]`` or a device. In a
    torchrun process group, CUDA without an index is this process's GPU (``LOCAL_RANK``).

    Raises ConfigError for ``cuda`` without a CUDA device, and for ``cuda`` in a process
    group whose process on this machine has no GPU of its own.
    """
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name}, but no CUDA device is available")
    if name == "cuda" and rank_and_world()[1] > 1:
        gpus = torch.cuda.device_count()
        if local_rank() >= gpus:
            raise ConfigError(
                f"torchrun process {local_rank()} of this machine needs GPU {local_rank()}, "
                f"but it has {gpus}: start at most {gpus} per machine (--nproc_per_node="
                f"{gpus}), or set train.device=cpu"
            )
        return torch.device("cuda", local_rank())
    return torch.device(name)


def autocast(
    device: torch.device, enabled: bool, on_cpu: bool = False
) -> contextlib.AbstractContextManager:
    """bfloat16 autocast when enabled: on CUDA (``train.amp``), and on the CPU too with
    ``on_cpu`` (inference's opt-in ``precision="bf16"``); a no-op otherwise."""
    if enabled and (device.type == "cuda" or on_cpu):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
