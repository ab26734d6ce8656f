"""Running a model over a DataLoader: logits, embeddings and labels as numpy arrays."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.utils.data import DataLoader

from attribnet.models import AttributionModel


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when enabled; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def run_model(
    model: AttributionModel, loader: DataLoader, device: torch.device, amp: bool = False
) -> dict[str, np.ndarray]:
    """Outputs over a loader of ``{"clip", "label", "index"}`` batches.

    Returns ``logits`` (N, K), ``embedding`` (N, D) when the model has one, ``label`` (N,)
    and ``index`` (N,) (dataset item indices), all float32/int64 numpy arrays.
    """
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"logits": [], "embedding": [], "label": [], "index": []}
    for batch in loader:
        with autocast(device, amp):
            out = model(batch["clip"].to(device, non_blocking=True))
        parts["logits"].append(out["logits"].float().cpu().numpy())
        if "embedding" in out:
            parts["embedding"].append(out["embedding"].float().cpu().numpy())
        parts["label"].append(batch["label"].numpy())
        parts["index"].append(batch["index"].numpy())
    model.train(was_training)
    return {k: np.concatenate(v) for k, v in parts.items() if v}
