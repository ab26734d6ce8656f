"""Supervised contrastive loss whose positives are the same generator from other trainings."""

from __future__ import annotations

import torch
from pytorch_metric_learning.losses import SupConLoss
from torch import Tensor

from attribnet.losses.instance_adversary import NO_INSTANCE


class CrossInstanceSupConLoss(SupConLoss):
    """pytorch-metric-learning's :class:`SupConLoss` (Khosla et al., NeurIPS 2020) on pairs
    chosen by training instance: a pair is positive when both clips have the same generator
    label and come from different trainings (or either training is unknown,
    :data:`~attribnet.losses.instance_adversary.NO_INSTANCE`), negative when the labels
    differ. Two clips of one training are neither: pulling them together is what learns a
    training's own fingerprint, which no test video shares. Without instances it is plain
    SupCon.
    """

    def pairs(self, labels: Tensor, instances: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """PML's ``(a1, p, a2, n)`` index tuple of the batch's positive and negative pairs."""
        same_label = labels[:, None] == labels[None, :]
        known = instances != NO_INSTANCE
        same_training = (instances[:, None] == instances[None, :]) & known[:, None] & known[None, :]
        not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        a1, p = torch.nonzero(same_label & ~same_training & not_self, as_tuple=True)
        a2, n = torch.nonzero(~same_label, as_tuple=True)
        return a1, p, a2, n

    def with_instances(self, embeddings: Tensor, labels: Tensor, instances: Tensor) -> Tensor:
        """The loss of a batch: embeddings (B, D), labels (B,), instances (B,) int64."""
        return self(embeddings, labels, indices_tuple=self.pairs(labels, instances))
