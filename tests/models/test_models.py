"""The DMA-STA model family: parameter counts, shapes, gradients, ablations, weights."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from attribnet.config import ModelConfig, load_recipe
from attribnet.errors import CheckpointError, ConfigError
from attribnet.files.checkpoints import read_checkpoint, save_checkpoint
from attribnet.models import AttributionModel, build_model
from attribnet.models.attention import SpatialAttention
from attribnet.models.encoder import ClipEncoder
from attribnet.models.restore import load_model
from tests.builders import tiny_recipe, write_checkpoint

# The paper's Table 3 rows as configurations of one encoder.
ABLATIONS = {
    "resnet_average": {"sam": "none", "fusion": "mean"},
    "cbam": {"sam": "every_block", "channel_attention": True, "fusion": "mean"},
    "sam_fa": {"sam": "every_block", "fusion": "scorer"},
    "sam_ave": {"sam": "every_block", "fusion": "mean"},
    "dma_sta": {"sam": "every_block", "fusion": "tam"},
}
# Options that keep high-frequency traces: input filters and the spectral branch.
TRACE_OPTIONS = {
    "dma_sta_srm": {"fusion": "tam", "input_filter": "srm"},
    "dma_sta_bayar": {"fusion": "tam", "input_filter": "bayar"},
    "dma_sta_median": {"fusion": "tam", "input_filter": "median"},
    "dma_sta_spectral": {"fusion": "tam", "spectral_dim": 8, "spectral_bins": 16},
    "scorer_bayar_spectral": {
        "fusion": "scorer",
        "input_filter": "bayar",
        "spectral_dim": 8,
        "spectral_bins": 16,
    },
}
VARIANTS = {**ABLATIONS, **TRACE_OPTIONS}
# every variant on the tiny trunk; on ResNet-50 the paper's rows and one with both options
CASES = [(name, "resnet10") for name in sorted(VARIANTS)] + [
    (name, "resnet50") for name in [*sorted(ABLATIONS), "scorer_bayar_spectral"]
]


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_dmasta_resnet50_has_the_authors_parameter_count():
    model = AttributionModel(ClipEncoder("resnet50", num_frames=10), num_classes=5)
    assert count(model) == 23_519_945
    sams = [m for m in model.modules() if isinstance(m, SpatialAttention)]
    assert len(sams) == 16


def test_default_config_builds_the_paper_model_unchanged():
    torch.manual_seed(0)
    model = build_model(ModelConfig(), num_classes=5)
    torch.manual_seed(0)
    paper = AttributionModel(ClipEncoder("resnet50", num_frames=10), num_classes=5)
    assert count(model) == 23_519_945
    assert model.encoder.input_filter is None and model.encoder.spectral is None
    assert model.encoder.feature_dim == model.encoder.num_features == 2048
    assert model.state_dict().keys() == paper.state_dict().keys()
    assert all(torch.equal(v, paper.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("options", "added"),
    [
        ({"input_filter": "srm"}, 0),
        ({"input_filter": "median"}, 0),
        ({"input_filter": "bayar"}, 3 * 3 * 24),
        # BatchNorm1d(32) + Linear(32, 64) + the classifier's 64 new inputs x 5 classes
        ({"spectral_dim": 64}, 2 * 32 + 32 * 64 + 64 + 64 * 5),
    ],
)
def test_trace_options_add_few_parameters(options, added):
    assert count(build_model(ModelConfig(**options), num_classes=5)) == 23_519_945 + added


def test_sam_placements_count():
    every = ClipEncoder("resnet18", sam="every_block", num_frames=4)
    last = ClipEncoder("resnet18", sam="last", num_frames=4)
    none = ClipEncoder("resnet18", sam="none", num_frames=4)
    count = lambda enc: sum(isinstance(m, SpatialAttention) for m in enc.modules())  # noqa: E731
    assert (count(every), count(last), count(none)) == (8, 1, 0)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "backbone"), CASES)
def test_shapes_finite_and_gradients_reach_every_parameter(name, backbone):
    torch.manual_seed(3)  # a seed where TAM's two hidden units (T=4) are not both dead
    cfg = ModelConfig(backbone=backbone, num_frames=4, embedding_dim=16, **VARIANTS[name])
    model = build_model(cfg, num_classes=3)
    size = 64 if backbone == "resnet50" else 32  # keep the last stage above 1x1
    clips = torch.randn(2, 4, 3, size, size)
    out = model(clips)
    c = model.encoder.num_features + cfg.spectral_dim
    assert model.encoder.feature_dim == c
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


@pytest.mark.slow
def test_the_authors_per_frame_trunk_normalises_each_frame_index_apart():
    """per_frame_trunk: in training, T trunk calls of B images (BatchNorm statistics per
    frame index, running statistics updated T times); in eval mode the same outputs as
    the default encoder with the same weights."""
    torch.manual_seed(0)
    default = ClipEncoder("resnet10", num_frames=3, fusion="tam")
    authors = ClipEncoder("resnet10", num_frames=3, fusion="tam", per_frame_trunk=True)
    authors.load_state_dict(default.state_dict())
    calls = []
    authors.trunk.conv1.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    clips = torch.randn(2, 3, 3, 32, 32) + torch.arange(3.0).view(1, 3, 1, 1, 1)
    trained, _ = authors(clips)
    assert calls == [2, 2, 2] and int(authors.trunk.bn1.num_batches_tracked) == 3
    assert not torch.allclose(trained, default(clips)[0], atol=1e-3)
    authors.load_state_dict(default.state_dict())
    calls.clear()
    torch.testing.assert_close(authors.eval()(clips)[0], default.eval()(clips)[0])
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
    with pytest.raises(ValueError, match="input filter"):
        ClipEncoder("resnet10", input_filter="srn")
    with pytest.raises(ValueError, match="spectral_dim"):
        ClipEncoder("resnet10", spectral_dim=-1)


def test_recipes_set_the_trace_options_strictly(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\n")
    recipe = load_recipe(path, ["model.input_filter=srm", "model.spectral_dim=64"])
    assert (recipe.model.input_filter, recipe.model.spectral_dim) == ("srm", 64)
    assert recipe.model.spectral_bins == 32
    with pytest.raises(ConfigError, match="did you mean 'srm'"):
        load_recipe(path, ["model.input_filter=srn"])
    with pytest.raises(ConfigError, match="did you mean 'model.spectral_dim'"):
        load_recipe(path, ["model.spectral_dims=64"])
    with pytest.raises(ConfigError, match="model.spectral_dim .* must be >= 0"):
        load_recipe(path, ["model.spectral_dim=-8"])
    with pytest.raises(ConfigError, match="model.spectral_bins .* must be > 0"):
        load_recipe(path, ["model.spectral_bins=0"])
    small = ["model.spectral_dim=8", "data.image_size=32"]
    with pytest.raises(ConfigError, match="need faces of at least 64 px .* <= 16"):
        load_recipe(path, small)  # caught when the recipe loads, not at the first forward
    assert load_recipe(path, [*small, "model.spectral_bins=16"]).model.spectral_bins == 16


def test_checkpoint_rebuilds_the_trace_options(tmp_path):
    recipe = tiny_recipe(tmp_path, num_frames=3, size=32, embedding_dim=8)
    recipe.model = replace(recipe.model, input_filter="bayar", spectral_dim=8, spectral_bins=16)
    path = write_checkpoint(tmp_path / "best.pt", recipe, ["a", "b", "c"], seed=1)
    torch.manual_seed(1)
    original = build_model(recipe.model, num_classes=3).eval()
    loaded, loaded_recipe, _, _ = load_model(path)
    assert loaded_recipe.model == recipe.model
    clips = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        want, got = original(clips), loaded(clips)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_checkpoint_saved_before_the_trace_options_still_loads(tmp_path):
    recipe = tiny_recipe(tmp_path, num_frames=3, size=32, embedding_dim=8)
    path = write_checkpoint(tmp_path / "best.pt", recipe, ["a", "b"], seed=1)
    state = read_checkpoint(path)
    for key in ("input_filter", "spectral_dim", "spectral_bins"):
        del state["args"]["model"][key]
    save_checkpoint(path, state)
    model, loaded_recipe, _, _ = load_model(path)
    assert loaded_recipe.model.input_filter == "none" and model.encoder.spectral is None


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
