"""Losses against plain-loop references; the multi-task loss dict."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.losses import ArcFaceLoss

from attribnet.config import LossConfig
from attribnet.losses import AttributionLoss, PerClassArcFaceLoss


def arcface_reference(emb, labels, w, margins_deg, scale):
    """ArcFace written out sample by sample (PML's monotonic fallback included)."""
    w = torch.nn.functional.normalize(w, dim=0)  # (D, K) class centres
    emb = torch.nn.functional.normalize(emb, dim=1)
    total = 0.0
    for i in range(len(labels)):
        y = int(labels[i])
        m = math.radians(margins_deg[y])
        logits = []
        for k in range(w.shape[1]):
            cos = float(emb[i] @ w[:, k])
            if k == y:
                theta = math.acos(max(-1.0, min(1.0, cos)))
                cos = math.cos(theta + m) if theta <= math.pi - m else cos - m * math.sin(m)
            logits.append(scale * cos)
        logz = math.log(sum(math.exp(v - max(logits)) for v in logits)) + max(logits)
        total += logz - logits[y]
    return total / len(labels)


def test_per_class_arcface_matches_a_plain_loop():
    torch.manual_seed(0)
    margins = [10.0, 25.0, 45.0]
    loss = PerClassArcFaceLoss(3, 8, margins, scale=16.0)
    emb, labels = torch.randn(12, 8), torch.tensor([0, 1, 2] * 4)
    expected = arcface_reference(emb, labels, loss.W.detach(), margins, 16.0)
    assert float(loss(emb, labels)) == pytest.approx(expected, rel=1e-5)


def test_equal_margins_equal_pml_arcface():
    torch.manual_seed(1)
    ours, pml = PerClassArcFaceLoss(4, 8, [28.6] * 4), ArcFaceLoss(4, 8, margin=28.6)
    pml.W.data = ours.W.data.clone()
    emb, labels = torch.randn(10, 8), torch.randint(0, 4, (10,))
    assert torch.allclose(ours(emb, labels), pml(emb, labels))


def test_larger_margin_for_real_raises_only_real_samples_loss():
    torch.manual_seed(2)
    base = PerClassArcFaceLoss(2, 8, [20.0, 20.0])
    real_bigger = PerClassArcFaceLoss(2, 8, [20.0, 40.0])
    real_bigger.W.data = base.W.data.clone()
    emb = torch.randn(6, 8)
    fakes, reals = torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)
    assert torch.allclose(base(emb, fakes), real_bigger(emb, fakes))
    assert real_bigger(emb, reals) > base(emb, reals)


def test_attribution_loss_parts_and_weighted_total():
    torch.manual_seed(3)
    cfg = LossConfig(ce_weight=1.0, arcface_weight=0.5, triplet_weight=2.0)
    loss = AttributionLoss(cfg, ["a", "b", "c"], embedding_dim=8)
    logits = torch.randn(9, 3)
    emb = torch.nn.functional.normalize(torch.randn(9, 8), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    parts = loss({"logits": logits, "embedding": emb}, labels)
    assert set(parts) == {"ce", "arcface", "triplet", "total"}
    expected = parts["ce"] + 0.5 * parts["arcface"] + 2.0 * parts["triplet"]
    assert torch.allclose(parts["total"], expected)
    assert torch.allclose(parts["ce"], torch.nn.functional.cross_entropy(logits, labels))
    # the ArcFace class centres are parameters of the loss module (optimised, checkpointed)
    assert any(p is loss.arcface.W for p in loss.parameters())
    assert "arcface.W" in loss.state_dict()


def test_zero_weight_parts_are_absent_and_class_margins_checked():
    loss = AttributionLoss(LossConfig(), ["a", "b"], embedding_dim=0)
    parts = loss({"logits": torch.randn(4, 2)}, torch.tensor([0, 1, 0, 1]))
    assert set(parts) == {"ce", "total"}
    with pytest.raises(ValueError, match="unknown classes"):
        AttributionLoss(
            LossConfig(arcface_weight=1.0, arcface_class_margins={"rael": 40.0}), ["a", "real"], 8
        )
