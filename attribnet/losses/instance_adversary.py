"""An instance-adversarial term: clip features that do not tell which generator training
made a video (Ganin and Lempitsky's gradient reversal, ICML 2015, on the ``instance`` label).

An analyst's video comes from a training of an architecture that is not in our training
set. A model can fit its training set by recognising each training instance (for face-swap
data: the identity pair an autoencoder was trained on, i.e. face content) rather than the
architecture. Here a small head learns to tell the training instances apart from the clip
features, and the gradient that reaches the features is reversed: the encoder is trained to
make that head fail, so what the features keep of the instance shrinks while the class
heads keep the architecture. Rows without an instance (``-1``) are left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attribnet.losses.rows import on_rows

NO_INSTANCE = -1


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient negated backward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        return -grad


def reverse_gradient(x: Tensor) -> Tensor:
    """``x`` forward; ``-grad`` backward."""
    return _ReverseGradient.apply(x)


class InstanceAdversary(nn.Module):
    """``forward(features (B, C), instances (B,)) -> scalar``: the cross-entropy of an MLP
    that predicts each row's instance from the gradient-reversed features; 0 (reaching
    every parameter, as DDP needs) when no row has an instance."""

    def __init__(self, feature_dim: int, num_instances: int, hidden: int = 256):
        super().__init__()
        if num_instances < 2:
            raise ValueError(f"an instance adversary needs >= 2 instances, got {num_instances}")
        self.head = nn.Sequential(
            nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_instances)
        )

    def forward(self, features_bc: Tensor, instances_b: Tensor) -> Tensor:
        rows = instances_b != NO_INSTANCE
        return on_rows(self._cross_entropy, features_bc, instances_b, rows, *self.parameters())

    def _cross_entropy(self, features_nc: Tensor, instances_n: Tensor) -> Tensor:
        logits = self.head(reverse_gradient(features_nc.float()))
        return F.cross_entropy(logits, instances_n)
