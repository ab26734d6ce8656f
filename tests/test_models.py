"""The DMA-STA model family: parameter counts, shapes, gradients, ablations, weights."""

from __future__ import annotations

import pytest
import torch

from attribnet.config import ModelConfig
from attribnet.errors import CheckpointError
from attribnet.models import AttributionModel, build_model
from attribnet.models.attention import SpatialAttention
from attribnet.models.encoder import ClipEncoder

# The paper's Table 3 rows as configurations of one encoder.
ABLATIONS = {
    "resnet_average": {"sam": "none", "fusion": "mean"},
    "cbam": {"sam": "every_block", "channel_attention": True, "fusion": "mean"},
    "sam_fa": {"sam": "every_block", "fusion": "scorer"},
    "sam_ave": {"sam": "every_block", "fusion": "mean"},
    "dma_sta": {"sam": "every_block", "fusion": "tam"},
}


def test_dmasta_resnet50_has_the_authors_parameter_count():
    model = AttributionModel(ClipEncoder("resnet50", num_frames=10), num_classes=5)
    assert sum(p.numel() for p in model.parameters()) == 23_519_945
    sams = [m for m in model.modules() if isinstance(m, SpatialAttention)]
    assert len(sams) == 16


def test_sam_placements_count():
    every = ClipEncoder("resnet18", sam="every_block", num_frames=4)
    last = ClipEncoder("resnet18", sam="last", num_frames=4)
    none = ClipEncoder("resnet18", sam="none", num_frames=4)
    count = lambda enc: sum(isinstance(m, SpatialAttention) for m in enc.modules())  # noqa: E731
    assert (count(every), count(last), count(none)) == (8, 1, 0)


@pytest.mark.parametrize("name", sorted(ABLATIONS))
@pytest.mark.parametrize("backbone", ["resnet10", "resnet50"])
def test_shapes_finite_and_gradients_reach_every_parameter(name, backbone):
    torch.manual_seed(3)  # a seed where TAM's two hidden units (T=4) are not both dead
    cfg = ModelConfig(backbone=backbone, num_frames=4, embedding_dim=16, **ABLATIONS[name])
    model = build_model(cfg, num_classes=3)
    size = 64 if backbone == "resnet50" else 32  # keep the last stage above 1x1
    clips = torch.randn(2, 4, 3, size, size)
    out = model(clips)
    c = model.encoder.num_features
    assert out["logits"].shape == (2, 3)
    assert out["embedding"].shape == (2, 16)
    assert out["features"].shape == (2, c)
    assert out["frame_weights"].shape == (2, 4)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(2), atol=1e-5)
    # a per-sample loss: a plain sum over batch-normalised features has ~zero gradient
    loss = torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 2]))
    (loss + (out["embedding"] * torch.randn(2, 16)).sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing


def test_frames_go_through_the_backbone_as_one_batch():
    enc = ClipEncoder("resnet10", num_frames=3, fusion="mean")
    calls = []
    enc.trunk.conv1.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    enc(torch.randn(2, 3, 3, 32, 32))
    assert calls == [6]


def test_encoder_is_per_frame_then_fused():
    """Each frame's features depend on that frame only (BN in eval mode)."""
    torch.manual_seed(0)
    enc = ClipEncoder("resnet10", num_frames=3, fusion="mean").eval()
    clips = torch.randn(1, 3, 3, 32, 32)
    per_frame = enc.forward_frames(clips)
    alone = enc.forward_frames(clips[:, 1:2])
    assert torch.allclose(per_frame[:, 1], alone[:, 0], atol=1e-5)


def test_model_without_embedding_head():
    model = AttributionModel(ClipEncoder("resnet10", num_frames=2, fusion="mean"), 4)
    out = model(torch.randn(1, 2, 3, 32, 32))
    assert "embedding" not in out and out["logits"].shape == (1, 4)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="backbone"):
        ClipEncoder("resnet5")
    with pytest.raises(ValueError, match="sam placement"):
        ClipEncoder("resnet10", sam="everywhere")
    with pytest.raises(ValueError, match="fusion"):
        ClipEncoder("resnet10", fusion="max")
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        ClipEncoder("resnet10", num_frames=2, fusion="mean")(torch.randn(2, 3, 32, 32))


def test_local_weights_file_loads_into_the_trunk(tmp_path):
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    enc = ClipEncoder("resnet18", num_frames=2, fusion="mean", weights=path)
    assert torch.equal(enc.trunk.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert torch.equal(enc.trunk.bn1.running_mean, reference.bn1.running_mean)


def test_weights_of_another_architecture_are_a_clear_error(tmp_path):
    from torchvision.models import resnet18

    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match="do not fit resnet50"):
        ClipEncoder("resnet50", weights=path)
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        ClipEncoder("resnet18", weights=tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="not found"):
        ClipEncoder("resnet18", weights=tmp_path / "missing.pth")
