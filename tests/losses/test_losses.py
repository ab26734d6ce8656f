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


# ----------------------------------------------------------------------------- open space


def uniform_reference(logits):
    """Cross-entropy to the uniform distribution, row by row."""
    total = 0.0
    for row in logits.tolist():
        top = max(row)
        logz = math.log(sum(math.exp(v - top) for v in row)) + top
        total += sum(-(v - logz) / len(row) for v in row)
    return total / len(logits)


def cosine_logits_reference(emb, w, scale):
    """scale * cos(embedding, class centre), row by row."""
    w = torch.nn.functional.normalize(w, dim=0)
    emb = torch.nn.functional.normalize(emb, dim=1)
    return torch.tensor([[scale * float(e @ w[:, k]) for k in range(w.shape[1])] for e in emb])


def open_space_cfg(**extra):
    values = {"ce_weight": 1.0, "arcface_weight": 0.5, "arcface_scale": 16.0,
              "triplet_weight": 2.0, "outlier_weight": 0.3, "open_space_weight": 0.7}  # fmt: skip
    return LossConfig(**{**values, **extra})


def mixed_batch(seed):
    """Known rows of 3 classes (3 each) interleaved with outlier (-1) and simulated (-2)."""
    torch.manual_seed(seed)
    labels = torch.tensor([0, -1, 0, 1, -2, 0, 1, -1, 1, 2, 2, -2, 2, -1])
    logits = torch.randn(len(labels), 3)
    emb = torch.nn.functional.normalize(torch.randn(len(labels), 8), dim=1)
    return {"logits": logits, "embedding": emb}, labels


def test_uniform_cross_entropy_matches_a_plain_loop():
    from attribnet.losses import uniform_cross_entropy

    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(4)) * 3
    assert float(uniform_cross_entropy(logits)) == pytest.approx(uniform_reference(logits))
    assert float(uniform_cross_entropy(torch.zeros(2, 5))) == pytest.approx(math.log(5))


def test_outlier_and_open_space_terms_match_a_plain_loop_on_their_rows():
    outputs, labels = mixed_batch(5)
    loss = AttributionLoss(open_space_cfg(), ["a", "b", "c"], embedding_dim=8)
    parts = loss(outputs, labels)
    cosines = cosine_logits_reference(outputs["embedding"], loss.arcface.W.detach(), 16.0)
    for part, label in (("outlier", -1), ("open_space", -2)):
        rows = labels == label
        expected = uniform_reference(outputs["logits"][rows]) + uniform_reference(cosines[rows])
        assert float(parts[part]) == pytest.approx(expected / 2, rel=1e-5), part
    # CE only: the term is the classifier's alone
    ce_only = AttributionLoss(LossConfig(outlier_weight=1.0), ["a", "b", "c"], embedding_dim=0)
    rows = labels == -1
    expected = uniform_reference(outputs["logits"][rows])
    assert float(ce_only(outputs, labels)["outlier"]) == pytest.approx(expected, rel=1e-5)
    weighted = sum(loss.weights[k] * v for k, v in parts.items() if k != "total")
    assert torch.allclose(parts["total"], weighted)


def test_rows_of_no_known_class_do_not_enter_ce_arcface_triplet():
    outputs, labels = mixed_batch(6)
    loss = AttributionLoss(open_space_cfg(), ["a", "b", "c"], embedding_dim=8)
    closed_cfg = LossConfig(arcface_weight=0.5, arcface_scale=16.0, triplet_weight=2.0)
    closed = AttributionLoss(closed_cfg, ["a", "b", "c"], embedding_dim=8)
    closed.arcface.W.data = loss.arcface.W.data.clone()
    known = labels >= 0
    mixed = loss(outputs, labels)
    alone = closed({k: v[known] for k, v in outputs.items()}, labels[known])
    assert set(mixed) == {"ce", "arcface", "triplet", "outlier", "open_space", "total"}
    for part in ("ce", "arcface", "triplet"):
        assert float(alone[part]) > 0
        assert torch.allclose(mixed[part], alone[part], rtol=1e-5), part


def test_all_known_batch_gives_exactly_the_closed_set_loss():
    torch.manual_seed(7)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    outputs = {"logits": torch.randn(9, 3),
               "embedding": torch.nn.functional.normalize(torch.randn(9, 8), dim=1)}  # fmt: skip
    base = LossConfig(arcface_weight=0.5, triplet_weight=2.0)
    old = AttributionLoss(base, ["a", "b", "c"], embedding_dim=8)
    new = AttributionLoss(open_space_cfg(arcface_scale=64.0), ["a", "b", "c"], embedding_dim=8)
    new.arcface.W.data = old.arcface.W.data.clone()
    before, after = old(outputs, labels), new(outputs, labels)
    assert set(before) == {"ce", "arcface", "triplet", "total"}  # defaults: no new parts
    for part in before:
        assert torch.equal(before[part], after[part]), part
    assert float(after["outlier"]) == float(after["open_space"]) == 0.0
    assert torch.equal(before["ce"], torch.nn.functional.cross_entropy(outputs["logits"], labels))


def test_a_batch_without_known_rows_is_finite_and_reaches_every_parameter():
    torch.manual_seed(8)
    labels = torch.tensor([-1, -1, -2, -1, -2, -2])
    logits = torch.randn(6, 3, requires_grad=True)
    emb = torch.randn(6, 8, requires_grad=True)
    loss = AttributionLoss(open_space_cfg(), ["a", "b", "c"], embedding_dim=8)
    parts = loss({"logits": logits, "embedding": torch.nn.functional.normalize(emb, dim=1)}, labels)
    assert all(torch.isfinite(v) for v in parts.values())
    assert float(parts["ce"]) == float(parts["arcface"]) == float(parts["triplet"]) == 0.0
    assert float(parts["outlier"]) > 0 and float(parts["open_space"]) > 0
    parts["total"].backward()
    for grad in (logits.grad, emb.grad, loss.arcface.W.grad):
        assert grad is not None and torch.isfinite(grad).all()
    # no outlier or simulated rows at all: those parts are 0, not NaN
    known = AttributionLoss(open_space_cfg(), ["a", "b", "c"], embedding_dim=8)
    parts = known({"logits": logits, "embedding": emb}, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert float(parts["outlier"]) == float(parts["open_space"]) == 0.0


def test_known_classes_miner_keeps_only_triplets_of_known_rows():
    from pytorch_metric_learning.miners import TripletMarginMiner

    from attribnet.losses import KnownClassesMiner

    outputs, labels = mixed_batch(9)
    emb = outputs["embedding"]
    anchors, positives, negatives = KnownClassesMiner(TripletMarginMiner(type_of_triplets="all"))(
        emb, labels
    )
    assert len(anchors) > 0
    assert (labels[anchors] >= 0).all() and (labels[positives] >= 0).all()
    assert (labels[negatives] >= 0).all()
    known = torch.nonzero(labels >= 0).squeeze(1)
    a, p, n = TripletMarginMiner(type_of_triplets="all")(emb[known], labels[known])
    assert {tuple(t) for t in torch.stack([anchors, positives, negatives], 1).tolist()} == {
        tuple(t) for t in known[torch.stack([a, p, n], 1)].tolist()
    }
