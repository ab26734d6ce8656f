"""A training step's loss reads nothing back from the device: no ``bool(tensor)``,
``.item()``, boolean-mask indexing or ``nonzero`` (each waits for the GPU). On the CPU this
is checked by trapping those calls; tests/training/test_train.py's GPU test checks the whole
step with CUDA's sync debug mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from pytorch_metric_learning.losses import ArcFaceLoss

from attribnet.config import LossConfig
from attribnet.losses import AttributionLoss, PerClassArcFaceLoss

CLASSES = ["a", "b", "c", "d"]


@contextlib.contextmanager
def host_reads() -> Iterator[list[str]]:
    """Records every call that reads a tensor's values on the host, by name."""
    seen: list[str] = []
    patch = pytest.MonkeyPatch()

    def trap(name: str, real):
        def call(*args, **kwargs):
            seen.append(name)
            return real(*args, **kwargs)

        return call

    for name in ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__float__", "__int__"):
        patch.setattr(torch.Tensor, name, trap(name, getattr(torch.Tensor, name)))
    patch.setattr(torch, "nonzero", trap("torch.nonzero", torch.nonzero))
    patch.setattr(torch, "unique", trap("torch.unique", torch.unique))
    real_getitem = torch.Tensor.__getitem__

    def getitem(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            seen.append("boolean mask")
        return real_getitem(self, index)

    patch.setattr(torch.Tensor, "__getitem__", getitem)
    try:
        yield seen
    finally:
        patch.undo()


def outputs(seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 4, generator=generator, requires_grad=True)
    embedding = torch.randn(6, 8, generator=generator, requires_grad=True)
    return {"logits": logits, "embedding": embedding}, torch.tensor([0, 1, 2, 3, 0, 1])


@pytest.mark.parametrize("unknown_rows", [False, True])
def test_ce_and_arcface_read_nothing_back_when_every_row_is_a_class(unknown_rows):
    torch.manual_seed(0)
    cfg = LossConfig(ce_weight=1.0, arcface_weight=0.1)
    loss = AttributionLoss(cfg, CLASSES, 8, unknown_rows=unknown_rows)
    out, labels = outputs(0)
    with host_reads() as seen:
        parts = loss(out, labels)
    if unknown_rows:  # rows that are no class must be found: one read per part
        assert "__bool__" in seen
    else:
        assert seen == []
    reference = AttributionLoss(cfg, CLASSES, 8)
    reference.load_state_dict(loss.state_dict())
    expected = reference(*outputs(0))
    assert all(torch.equal(parts[k], expected[k]) for k in expected)


class MaskedArcFace(PerClassArcFaceLoss):
    """PerClassArcFaceLoss as it was: PML's compute_loss, target cosines by boolean mask."""

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        self._sample_margins = self.class_margins.to(embeddings)[labels]
        try:
            return ArcFaceLoss.compute_loss(
                self, embeddings, labels, indices_tuple, ref_emb, ref_labels
            )
        finally:
            self._sample_margins = None


def test_arcface_by_gather_is_bitwise_the_masked_one_with_its_gradients():
    torch.manual_seed(3)
    margins = [10.0, 28.6, 45.0, 170.0]  # 170: the fallback past 180 - m for some clips
    ours = PerClassArcFaceLoss(4, 8, margins, scale=16.0)
    masked = MaskedArcFace(4, 8, margins, scale=16.0)
    masked.W.data = ours.W.data.clone()
    emb = torch.randn(12, 8)
    labels = torch.tensor([0, 1, 2, 3] * 3)
    results = []
    for loss in (ours, masked):
        x = emb.clone().requires_grad_()
        with host_reads() as seen:
            value = loss(x, labels)
        value.backward()
        results.append((value, x.grad, loss.W.grad, seen))
    (value, grad, w_grad, seen), (value_m, grad_m, w_grad_m, seen_m) = results
    assert seen == [] and "boolean mask" in seen_m
    assert torch.equal(value, value_m)
    assert torch.equal(grad, grad_m) and torch.equal(w_grad, w_grad_m)
