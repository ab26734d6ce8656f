"""SupCon with positives from other trainings: against a plain loop, same-training pairs
left out, plain SupCon without instances, and its place in the attribution loss."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.losses import SupConLoss

from attribnet.config import LossConfig
from attribnet.losses import AttributionLoss
from attribnet.losses.cross_instance_supcon_loss import CrossInstanceSupConLoss


def plain_loop(emb: torch.Tensor, labels: list[int], instances: list[int], t: float) -> float:
    """Khosla et al.'s loss, written out: per anchor with positives, minus the mean log of
    exp(cos/t) of each positive over the sum over its positives and negatives."""
    e = torch.nn.functional.normalize(emb, dim=1)
    n, losses = len(labels), []
    for i in range(n):
        pos = [j for j in range(n) if j != i and labels[j] == labels[i]
               and (instances[i] < 0 or instances[j] != instances[i])]  # fmt: skip
        neg = [j for j in range(n) if labels[j] != labels[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(e[i] @ e[j]) / t) for j in pos + neg)
        losses.append(-sum(float(e[i] @ e[j]) / t - math.log(denom) for j in pos) / len(pos))
    return sum(losses) / len(losses)


def test_positives_come_from_other_trainings_only():
    torch.manual_seed(0)
    emb = torch.randn(8, 6)
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    instances = [0, 0, 1, 2, 3, 3, 4, 4]  # two clips of training 0, of 3 and of 4
    loss = CrossInstanceSupConLoss(temperature=0.2)
    got = loss.with_instances(emb, torch.tensor(labels), torch.tensor(instances))
    assert float(got) == pytest.approx(plain_loop(emb, labels, instances, 0.2), rel=1e-5)
    a1, p, _, _ = loss.pairs(torch.tensor(labels), torch.tensor(instances))
    assert all(instances[i] != instances[j] for i, j in zip(a1.tolist(), p.tolist(), strict=True))
    assert (0, 1) not in set(zip(a1.tolist(), p.tolist(), strict=True))


def test_a_class_seen_from_one_training_gives_no_positive_pair():
    emb = torch.randn(4, 5)
    labels, instances = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 2])
    loss = CrossInstanceSupConLoss()
    a1, p, _, _ = loss.pairs(labels, instances)  # class 0: both clips of training 0
    assert sorted(zip(a1.tolist(), p.tolist(), strict=True)) == [(2, 3), (3, 2)]
    got = loss.with_instances(emb, labels, instances)
    assert float(got) == pytest.approx(plain_loop(emb, [0, 0, 1, 1], [0, 0, 1, 2], 0.1), 1e-5)


def test_without_instances_it_is_plain_supcon():
    torch.manual_seed(1)
    emb, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    none = torch.full((6,), -1)
    got = CrossInstanceSupConLoss(temperature=0.1).with_instances(emb, labels, none)
    torch.testing.assert_close(got, SupConLoss(temperature=0.1)(emb, labels))


def test_supcon_part_of_the_attribution_loss_reaches_the_embedding():
    cfg = LossConfig(ce_weight=1.0, supcon_weight=0.5)
    loss = AttributionLoss(cfg, ["a", "b"], embedding_dim=4)
    emb = torch.randn(4, 4, requires_grad=True)
    out = {"logits": torch.randn(4, 2), "embedding": emb}
    parts = loss(out, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 2, 3]))
    assert set(parts) == {"ce", "supcon", "total"}
    parts["total"].backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="embedding head"):
        AttributionLoss(cfg, ["a", "b"], embedding_dim=0)
