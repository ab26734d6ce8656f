"""The training designs that bench_train.py times, each a model of its own with its step.

- ``authors``: the DMA-STA authors' design, one frame index at a time through the trunk in a
  Python loop (T calls of B images), fp32, default memory format, TAM fusion, the head.
- ``fp32``: attribnet's B*T frames in one trunk call (``AttributionTask``), fp32.
- ``fast``: the same with bf16 autocast and channels_last, as attribnet.training.loop trains
  on a GPU (``train.amp``, ``train.channels_last``; on the CPU both are no-ops there).
- ``compiled``: ``fast`` with the encoder's training forward compiled
  (``train.compile``: attribnet.runtime.compile, eager again where compiling fails);
  ``graphs``: compiled in mode reduce-overhead (CUDA graphs).

A step is forward + backward + the optimizer's step (``build_optimizer``: the paper's SGD,
lr 0.01, momentum 0.9, wd 5e-4, fused on CUDA).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from attribnet.config import LossConfig, recipe_from_dict
from attribnet.losses import AttributionLoss
from attribnet.models import AttributionModel
from attribnet.models.encoder import ClipEncoder
from attribnet.runtime.compile import CompiledForward, compile_training_forward
from attribnet.runtime.device import autocast
from attribnet.training.optim import build_optimizer
from attribnet.training.task import AttributionTask

CLASSES = ["faceswap", "lightweight", "iae", "dfaker", "dfl"]
LABELS = {
    "authors": "authors: frame loop, fp32",
    "fp32": "attribnet: B*T batch, fp32",
    "fast": "attribnet: bf16 + channels_last",
    "compiled": "attribnet: bf16 + channels_last + compile",
    "graphs": "attribnet: bf16 + channels_last + compile with CUDA graphs",
}


@dataclass(frozen=True)
class Design:
    """One row of the training table: a design (a key of :data:`LABELS`) at a batch."""

    key: str
    batch: int

    @property
    def label(self) -> str:
        return f"{LABELS[self.key]}, batch {self.batch}"


class Trainer:
    """A design's task, optimizer and step, on ``device``; ``persistent_bytes`` is what it
    keeps allocated between steps (weights, gradients, optimizer state) on a GPU."""

    def __init__(self, design: Design, args: argparse.Namespace, device: torch.device):
        self.design, self.device = design, device
        self.fast = design.key in ("fast", "compiled", "graphs") and device.type == "cuda"
        before = torch.cuda.memory_allocated() if device.type == "cuda" else 0
        self.task = make_task(args, device, self.fast)
        self.compiled: CompiledForward | None = None
        if design.key in ("compiled", "graphs"):
            mode = "reduce-overhead" if design.key == "graphs" else "default"
            # static shapes: each batch size gets its own graph, no dynamic-shape kernels
            encoder = self.task.model.encoder
            self.compiled = compile_training_forward(encoder, mode=mode, dynamic=False)
        self.optimizer = build_optimizer(self.task, recipe_from_dict({}))
        self.step(*batch(args, device, design.batch))  # optimizer state, compilation
        after = torch.cuda.memory_allocated() if device.type == "cuda" else 0
        self.persistent_bytes = after - before

    @property
    def failed(self) -> str | None:
        """Why compiling failed (the design then ran eagerly), or None."""
        return self.compiled.failed if self.compiled is not None else None

    def step(self, clips: torch.Tensor, labels: torch.Tensor) -> None:
        task = self.task
        if self.design.key == "authors":
            enc = task.model.encoder
            frames = [enc.forward_frames(clips[:, i : i + 1]) for i in range(clips.shape[1])]
            features, _ = enc.fusion(torch.cat(frames, dim=1))
            losses = task.loss(task.model.forward_head(features), labels)
        else:
            with autocast(self.device, self.fast):
                _, losses = task(clips, labels)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optimizer.step()


def make_task(args: argparse.Namespace, device: torch.device, fast: bool) -> AttributionTask:
    """The DMA-STA model (SAM in every block, TAM) with a CE loss, seeded identically."""
    torch.manual_seed(0)
    encoder = ClipEncoder(args.backbone, num_frames=args.frames)
    model = AttributionModel(encoder, num_classes=len(CLASSES))
    loss = AttributionLoss(LossConfig(), CLASSES, 0, unknown_rows=False)
    task = AttributionTask(model, loss).to(device)
    if fast:
        task = task.to(memory_format=torch.channels_last)
    return task.train()


def batch(args: argparse.Namespace, device: torch.device, b: int) -> tuple[torch.Tensor, ...]:
    """Synthetic clips (b, T, 3, S, S) and labels on ``device``."""
    clips = torch.randn(b, args.frames, 3, args.size, args.size, device=device)
    return clips, torch.randint(0, len(CLASSES), (b,), device=device)
