"""The backbone registry: every entry builds, runs, learns and trains a step; published
parameter counts; the ResNets' state dicts and initial weights as before the registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from attribnet.cli import train
from attribnet.config import ModelConfig, load_recipe
from attribnet.errors import CheckpointError, ConfigError
from attribnet.files.checkpoints import read_checkpoint
from attribnet.models import build_model
from attribnet.models.attention import SpatialAttention, TemporalAttention
from attribnet.models.backbones import BACKBONES, SAM_PLACEMENTS, get_backbone
from attribnet.models.backbones.resnet import RESNETS
from attribnet.models.encoder import ClipEncoder
from tests.builders import REPO, tiny_overrides

ROOT = REPO
NAMES = sorted(BACKBONES)
OTHERS = [n for n in NAMES if n not in RESNETS]
SIZE = 64


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def richest_sam(name: str) -> str:
    """The placement with the most SAMs that ``name`` supports."""
    return BACKBONES[name].sam_placements[0]


# Trunk parameters (no classifier, no attention) from published totals minus the ImageNet
# classifier Linear(C, 1000), i.e. 1000 * (C + 1) parameters:
# - ResNets: torchvision's documented totals (He et al., CVPR 2016 architectures).
# - Xception: 22,855,952 (Chollet, CVPR 2017, Table 3), C = 2048.
# - EfficientNet-B0/B4: the paper rounds (5.3M, 19M; Tan & Le, ICML 2019, Table 2); the
#   exact totals are Keras applications' trainable counts, 5,288,548 and 19,341,616 (their
#   "total" 5,330,571 and 19,466,823 add the BatchNorm running statistics, 42,016 and
#   125,200, and the input Normalization layer's 7), C = 1280 and 1792.
# - MesoInception-4: the paper's 28,615 trainable parameters (Afchar et al., WIFS 2018),
#   from its layer list (convolutions with biases; BatchNorm's scale and shift count):
#     inception 1 on 3 channels, (a, b, c, d) = (1, 4, 4, 2):
#       1x1 3->1: 4; 1x1 3->4 + 3x3 4->4: 16 + 148 (twice, b and c); 1x1 3->2 + 3x3 2->2:
#       8 + 38  -> 378; BatchNorm(11): 22
#     inception 2 on 11 channels, (2, 4, 4, 2):
#       1x1 11->2: 24; 1x1 11->4 + 3x3 4->4: 48 + 148 (twice); 1x1 11->2 + 3x3 2->2:
#       24 + 38  -> 478; BatchNorm(12): 24
#     conv 5x5 12->16: 4,816; BatchNorm(16): 32; conv 5x5 16->16: 6,416; BatchNorm(16): 32
#     head: Dense(16) on the 16 x 8 x 8 map: 16,400; Dense(1): 17
#   378 + 22 + 478 + 24 + 4,816 + 32 + 6,416 + 32 + 16,400 + 17 = 28,615; the trunk is
#   everything but the head: 28,615 - 16,400 - 17 = 12,198.
PUBLISHED_TRUNK_PARAMS = {
    "resnet18": 11_689_512 - 1000 * (512 + 1),
    "resnet34": 21_797_672 - 1000 * (512 + 1),
    "resnet50": 25_557_032 - 1000 * (2048 + 1),
    "resnet101": 44_549_160 - 1000 * (2048 + 1),
    "xception": 22_855_952 - 1000 * (2048 + 1),
    "efficientnet_b0": 5_288_548 - 1000 * (1280 + 1),
    "efficientnet_b4": 19_341_616 - 1000 * (1792 + 1),
    "meso_inception4": 28_615 - (16 * 8 * 8 * 16 + 16) - (16 + 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_shapes_finite_and_gradients_reach_every_parameter(name: str) -> None:
    spec = BACKBONES[name]
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=name, sam=richest_sam(name), fusion="mean", num_frames=2,
                      embedding_dim=8)  # fmt: skip
    model = build_model(cfg, num_classes=3)
    frames = model.encoder.trunk.forward_features(torch.randn(2, 3, SIZE, SIZE))
    assert frames.ndim == 4 and frames.shape[:2] == (2, spec.num_features)
    out = model(torch.randn(2, 2, 3, SIZE, SIZE))
    assert model.encoder.feature_dim == spec.num_features
    assert out["logits"].shape == (2, 3) and out["embedding"].shape == (2, 8)
    assert out["features"].shape == (2, spec.num_features)
    assert out["frame_weights"].shape == (2, 2)
    assert all(torch.isfinite(v).all() for v in out.values())
    loss = torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 2]))
    (loss + (out["embedding"] * torch.randn(2, 8)).sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(PUBLISHED_TRUNK_PARAMS))
def test_trunk_parameter_count_matches_the_published_figure(name: str) -> None:
    assert count(BACKBONES[name].build(None)) == PUBLISHED_TRUNK_PARAMS[name]


@pytest.mark.parametrize("name", ["xception", "efficientnet_b0", "efficientnet_b4"])
def test_timm_preprocessing_is_timms_pretrained_configuration(name: str) -> None:
    timm = pytest.importorskip("timm")
    from attribnet.models.backbones.timm_backbones import timm_architecture

    cfg = timm.create_model(timm_architecture(name), pretrained=False).pretrained_cfg
    pre = BACKBONES[name].preprocessing
    assert (pre.mean, pre.std, pre.input_size) == (cfg["mean"], cfg["std"], cfg["input_size"][1])


def _torchvision_resnet(name: str) -> ResNet:
    block, layers = RESNETS[name]
    return ResNet(BasicBlock if issubclass(block, BasicBlock) else Bottleneck, layers)


def _blocks(trunk: ResNet) -> list[tuple[str, torch.nn.Module]]:
    return [(f"layer{i}.{j}", blk) for i in range(1, 5)
            for j, blk in enumerate(getattr(trunk, f"layer{i}"))]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RESNETS))
def test_resnet_state_dict_is_torchvision_plus_attention(name: str) -> None:
    """Checkpoints from before the registry still load: same keys, shapes and order."""
    model = build_model(ModelConfig(backbone=name, channel_attention=True), num_classes=5)
    got = {k[len("encoder.trunk.") :]: v.shape for k, v in model.state_dict().items()
           if k.startswith("encoder.trunk.")}  # fmt: skip
    want = {k: v.shape for k, v in _torchvision_resnet(name).state_dict().items()
            if not k.startswith("fc.")}  # fmt: skip
    for block, blk in _blocks(_torchvision_resnet(name)):
        width = (blk.conv3 if hasattr(blk, "conv3") else blk.conv2).out_channels
        hidden = max(width // 16, 1)
        want[f"{block}.channel_attention.mlp.0.weight"] = (hidden, width, 1, 1)
        want[f"{block}.channel_attention.mlp.2.weight"] = (width, hidden, 1, 1)
        want[f"{block}.spatial_attention.conv.weight"] = (1, 2, 7, 7)
    assert sorted(got) == sorted(want)
    assert all(tuple(got[k]) == tuple(want[k]) for k in want)
    rest = [k for k in model.state_dict() if not k.startswith("encoder.trunk.")]
    assert rest == ["encoder.fusion.fc1.weight", "encoder.fusion.fc2.weight",
                    "classifier.fc.weight", "classifier.fc.bias"]  # fmt: skip


@pytest.mark.parametrize("name", ["resnet10", "resnet50"])
def test_resnet_initial_weights_are_torchvision_then_sams_then_fusion(name: str) -> None:
    """After one seed, a model draws torchvision's ResNet, a SAM per block, then TAM."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=name), num_classes=5)
    torch.manual_seed(0)
    reference = _torchvision_resnet(name)
    sams = [SpatialAttention() for _ in _blocks(reference)]
    tam = TemporalAttention(10)
    trunk = model.encoder.trunk.state_dict()
    assert all(torch.equal(v, trunk[k]) for k, v in reference.state_dict().items()
               if not k.startswith("fc."))  # fmt: skip
    for (_, blk), sam in zip(_blocks(model.encoder.trunk), sams, strict=True):
        assert torch.equal(blk.spatial_attention.conv.weight, sam.conv.weight)
    assert torch.equal(model.encoder.fusion.fc1.weight, tam.fc1.weight)


@pytest.mark.parametrize("name", OTHERS)
def test_attention_a_backbone_lacks_is_a_clear_error(name: str, tmp_path: Path) -> None:
    assert "every_block" not in BACKBONES[name].sam_placements
    with pytest.raises(ValueError, match=f"sam placement 'every_block'.*backbone '{name}'"):
        ClipEncoder(name, sam="every_block")
    with pytest.raises(ValueError, match=f"channel_attention.*backbone '{name}'"):
        ClipEncoder(name, sam="none", channel_attention=True)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model:\n  backbone: {name}\n")
    with pytest.raises(ConfigError, match=f"model.sam in {re.escape(str(recipe))}.*'{name}'"):
        load_recipe(recipe)


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'resnet5'; use one of .*xception"):
        get_backbone("resnet5")
    with pytest.raises(ValueError, match="unknown sam placement"):
        BACKBONES["xception"].check_attention("everywhere", False)
    assert set(SAM_PLACEMENTS) == {p for s in BACKBONES.values() for p in s.sam_placements}


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_local_weights_load_and_nothing_downloads(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    reference = BACKBONES[name].build(None).state_dict()
    path = tmp_path / "trunk.pth"
    torch.save({**reference, "classifier.weight": torch.zeros(1), "fc.bias": torch.zeros(1)},
               path)  # fmt: skip
    torch.manual_seed(2)
    enc = ClipEncoder(name, sam="none", fusion="mean", weights=path)
    assert all(torch.equal(v, enc.trunk.state_dict()[k]) for k, v in reference.items())
    with pytest.raises(CheckpointError, match="no downloads"):
        ClipEncoder(name, sam="none", weights="imagenet")
    torch.save({"conv_x.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=f"do not fit {name}"):
        ClipEncoder(name, sam="none", weights=tmp_path / "other.pth")


def test_preprocessing_defaults_to_the_backbones_and_explicit_values_win(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  backbone: xception\n  sam: last\n")
    xception = BACKBONES["xception"].preprocessing
    loaded = load_recipe(recipe)
    assert (loaded.data.mean, loaded.data.std, loaded.data.image_size) == (
        xception.mean, xception.std, xception.input_size)  # fmt: skip
    explicit = load_recipe(recipe, ["data.mean=[0.1,0.2,0.3]", "data.image_size=64"])
    assert explicit.data.mean == (0.1, 0.2, 0.3) and explicit.data.image_size == 64
    assert explicit.data.std == xception.std
    recipe.write_text("data:\n  std: null\n")  # null: the default backbone's, ResNet-50's
    resnet = load_recipe(recipe)
    assert resnet.data.std == BACKBONES["resnet50"].preprocessing.std
    assert resnet.data.mean == (0.485, 0.456, 0.406) and resnet.data.image_size == 224


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_each_backbone_trains_a_demo_step(name: str, tiny_demo: Path, tmp_path: Path) -> None:
    extra = {"model.backbone": name, "model.sam": richest_sam(name),
             "train.max_steps_per_epoch": 1, "train.epochs": 1, "train.batch_size": 4,
             "data.num_frames": 2, "model.num_frames": 2}  # fmt: skip
    sets = tiny_overrides(tiny_demo, tmp_path, **extra)
    argv = [str(ROOT / "recipes" / "demo.yaml")] + [a for s in sets for a in ("--set", s)]
    assert train.main(argv) == 0
    (run,) = (tmp_path / "runs").iterdir()
    state = read_checkpoint(run / "last.pt")
    data = state["args"]["data"]
    pre = BACKBONES[name].preprocessing  # the recipe names no mean/std: the backbone's
    assert (tuple(data["mean"]), tuple(data["std"]), data["image_size"]) == (pre.mean, pre.std, 32)
    assert state["args"]["model"]["backbone"] == name


def test_a_narrow_trunk_gets_a_frame_scorer_that_trains() -> None:
    """MesoInception-4 has 16 channels: the scorer's hidden layer keeps 8 units (16 // 16
    would leave one, and one dead ReLU would cut the scorer's gradient)."""
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="meso_inception4", sam="none", fusion="scorer", num_frames=2)
    model = build_model(cfg, num_classes=3)
    assert model.encoder.fusion.mlp[0].out_features == 8
    out = model(torch.randn(4, 2, 3, SIZE, SIZE))
    torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 1, 2, 0])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing
