"""``attribnet.cli.convert dmasta-authors``: a model laid out as the DMA-STA authors' code
(torchvision ResNet-50 whose bottlenecks carry ``sa.conv1``, TAM as ``ta.fc``, a per-frame
forward) converts into a checkpoint that ``load_model`` reads and gives the same logits;
bad state dicts are one-line errors that write nothing. Also ``data.resize``: resize, then
centre crop, in every frame path."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck, ResNet

from attribnet.cli import convert as convert_cli
from attribnet.config import ModelConfig, Recipe, recipe_from_dict, to_dict
from attribnet.data.augment import ClipAugment
from attribnet.data.cache import FaceCache
from attribnet.data.eval_clips import EvalClips
from attribnet.data.manifest import ManifestRow
from attribnet.errors import CheckpointError, ConfigError
from attribnet.models import authors as convert
from attribnet.models import build_model
from attribnet.models.restore import load_model
from attribnet.predict import predict_videos, sam_on_faces

CLASSES = ["faceswap", "lightweight", "iae", "dfaker", "dfl"]
T, SIZE = 10, 64  # 64 px instead of 224 keeps the ResNet-50 forwards quick on a CPU


@pytest.fixture(autouse=True)
def _root_logging():
    """Undo the logging set up by ``convert.main`` (its handler writes to this test's
    captured stderr, closed after the test)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class AuthorsSpatialAttention(nn.Module):
    """The authors' SAM (CBAM's spatial attention): the map, applied by the block."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        avg_out = torch.mean(x, dim=1, keepdim=True)
        max_out, _ = torch.max(x, dim=1, keepdim=True)
        return self.sigmoid(self.conv1(torch.cat([avg_out, max_out], dim=1)))


class AuthorsBottleneck(Bottleneck):
    """torchvision's Bottleneck with ``sa`` on the residual branch after bn3."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sa = AuthorsSpatialAttention()

    def forward(self, x: Tensor) -> Tensor:
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.sa(out) * out
        if self.downsample is not None:
            residual = self.downsample(x)
        return self.relu(out + residual)


class AuthorsTemporalAttention(nn.Module):
    """The authors' TAM: channel means (B, T) -> fc -> sigmoid weights (B, T)."""

    def __init__(self, num_frames: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(num_frames, num_frames // 2, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(num_frames // 2, num_frames, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, frames_btc: Tensor) -> Tensor:
        return self.fc(frames_btc.mean(dim=2))


class AuthorsDMASTA(ResNet):
    """The authors' model: the trunk runs once per frame index, then TAM fusion and fc."""

    def __init__(self, num_classes: int = 5, num_frames: int = T):
        super().__init__(AuthorsBottleneck, [3, 4, 6, 3], num_classes=num_classes)
        self.ta = AuthorsTemporalAttention(num_frames)

    def frame_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, clips_btchw: Tensor) -> Tensor:
        features = [self.frame_features(clips_btchw[:, i]) for i in range(clips_btchw.shape[1])]
        frames_btc = torch.stack(features, dim=1)
        m = self.ta(frames_btc)
        fused = (m.unsqueeze(-1) * frames_btc).sum(1) / m.sum(1, keepdim=True)
        return self.fc(fused)


def clip(seed: int, batch: int = 2) -> Tensor:
    return torch.randn(batch, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def authors(tmp_path_factory: pytest.TempPathFactory) -> tuple[AuthorsDMASTA, Path]:
    """A seeded authors' model with calibrated BatchNorm statistics, and its state dict file
    (wrapped in ``{"state_dict"}`` with DataParallel's ``module.`` prefix)."""
    torch.manual_seed(0)
    model = AuthorsDMASTA()
    for linear in (model.ta.fc[0], model.ta.fc[2]):
        nn.init.normal_(linear.weight)
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = None  # running statistics = the mean over the calibration batches
    with torch.no_grad():
        model.train()(clip(seed=1, batch=1))
    model.eval()
    path = tmp_path_factory.mktemp("authors") / "dmasta.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return model, path


def run(*argv: str) -> int:
    return convert_cli.main(["dmasta-authors", *argv])


def test_key_map_names_every_weight_of_the_model(authors) -> None:
    model, _ = authors
    ours = build_model(ModelConfig(embedding_dim=0), num_classes=len(CLASSES)).state_dict()
    theirs = model.state_dict()
    assert sorted(convert.authors_key(k) for k in theirs) == sorted(ours)
    assert {convert.authors_key(k): tuple(v.shape) for k, v in theirs.items()} == {
        k: tuple(v.shape) for k, v in ours.items()
    }
    assert convert.authors_key("layer3.5.sa.conv1.weight") == (
        "encoder.trunk.layer3.5.spatial_attention.conv.weight"
    )
    assert convert.authors_key("ta.fc.2.weight") == "encoder.fusion.fc2.weight"
    assert convert.authors_key("fc.bias") == "classifier.fc.bias"


@pytest.mark.slow
def test_converted_checkpoint_gives_the_authors_logits(authors, tmp_path: Path) -> None:
    model, state = authors
    out = tmp_path / "dmasta" / "best.pt"
    assert run(str(state), "--out", str(out), "--classes", ",".join(CLASSES)) == 0
    ours, recipe, names, raw = load_model(out)
    clips = clip(seed=2)
    with torch.no_grad():
        expected = model(clips)
        got = ours(clips)
    difference = (got["logits"] - expected).abs().max().item()
    print(f"max |logit difference| = {difference:.3g}")
    assert difference <= 1e-5
    assert got["frame_weights"].std() > 0  # TAM is not a constant here
    assert names == CLASSES
    assert recipe.name == "dmasta"
    assert recipe.data.resize == 256 and recipe.data.image_size == 224
    assert recipe.data.mean == convert.AUTHORS_MEAN and recipe.data.std == convert.AUTHORS_STD
    assert (recipe.model.backbone, recipe.model.sam, recipe.model.fusion) == (
        "resnet50",
        "every_block",
        "tam",
    )
    assert recipe.model.num_frames == recipe.data.num_frames == T
    assert raw["converted"]["format"] == "dmasta-authors"


def mutate(authors, path: Path, change) -> Path:
    state = dict(authors[0].state_dict())
    change(state)
    torch.save(state, path)
    return path


def drop(key: str):
    return lambda state: state.pop(key)


def setter(key: str, value):
    return lambda state: state.__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (setter("ta.extra.weight", torch.zeros(1)), r"fit no DMA-STA weight: ta\.extra\.weight"),
        (drop("layer2.0.sa.conv1.weight"), r"lacks 1 weight.*layer2\.0\.spatial_attention"),
        (
            setter("layer1.0.sa.conv1.weight", torch.zeros(1, 2, 3, 3)),
            r"another shape.*layer1\.0\.spatial_attention\.conv\.weight \(1, 2, 3, 3\)",
        ),
        (setter("conv1.weight", "not a tensor"), r"not tensors: conv1\.weight \(str\)"),
    ],
    ids=["extra-key", "missing-key", "wrong-shape", "non-tensor"],
)
def test_bad_state_dicts_are_one_line_errors(authors, tmp_path, capsys, change, pattern) -> None:
    source = mutate(authors, tmp_path / "bad.pth", change)
    out = tmp_path / "run" / "best.pt"
    assert run(str(source), "--out", str(out), "--classes", ",".join(CLASSES)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert re.search(pattern, err), err
    assert not out.exists() and not out.parent.exists()


def test_non_tensor_pickles_and_wrong_class_counts_are_refused(authors, tmp_path, capsys) -> None:
    out = tmp_path / "best.pt"
    pickled = tmp_path / "namespace.pt"
    torch.save(argparse.Namespace(weights=1), pickled)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    for source, pattern in [
        (pickled, "weights_only=True"),
        (listed, "holds no state dict"),
        (tmp_path / "absent.pt", "not found"),
    ]:
        assert run(str(source), "--out", str(out), "--classes", ",".join(CLASSES)) == 2
        assert pattern in capsys.readouterr().err
    with pytest.raises(CheckpointError, match=r"names 4 classes.*has 5 outputs"):
        convert.convert_file(authors[1], out, CLASSES[:4])
    assert run(str(authors[1]), "--out", str(out), "--classes", "a,b,a") == 2
    assert "distinct" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_existing_output_needs_overwrite(authors, tmp_path) -> None:
    out = tmp_path / "best.pt"
    out.write_text("keep me")
    with pytest.raises(ConfigError, match="--overwrite"):
        convert.convert_file(authors[1], out, CLASSES)
    assert out.read_text() == "keep me"
    with pytest.raises(ConfigError, match="cannot resume"):
        convert.convert_file(authors[1], tmp_path / "last.pt", CLASSES)
    convert.convert_file(authors[1], out, CLASSES, name="mine", overwrite=True,
                         overrides=["data.detector=none"])  # fmt: skip
    _, recipe, names, _ = load_model(out)
    assert (recipe.name, recipe.data.detector, names) == ("mine", "none", CLASSES)


def coded_frame(size: int) -> np.ndarray:
    """uint8 (size, size, 3): red = row, green = column, blue = a constant."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.uint8)
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1)


def test_resize_then_centre_crop() -> None:
    frame = coded_frame(16)
    same = ClipAugment(12, hflip=0.0, crop_scale=None, resize=16)
    np.testing.assert_array_equal(same(frame[None])[0], frame[2:14, 2:14])
    up = ClipAugment(8, hflip=0.0, crop_scale=None, resize=16)
    reference = cv2.resize(coded_frame(8), (16, 16), interpolation=cv2.INTER_LINEAR)[4:12, 4:12]
    np.testing.assert_array_equal(up(coded_frame(8)[None])[0], reference)
    assert up.changes(coded_frame(8)[None])  # resized even when already 8 px
    assert not ClipAugment(8, crop_scale=None).changes(coded_frame(8)[None])
    with pytest.raises(ValueError, match="resize"):
        ClipAugment(12, resize=10)


def test_resize_is_validated() -> None:
    raw = to_dict(Recipe())
    raw["data"]["resize"] = 200
    with pytest.raises(ConfigError, match=r"data.resize .*>= data.image_size"):
        recipe_from_dict(raw)
    raw["data"]["resize"] = -1
    with pytest.raises(ConfigError, match=r"data.resize .* >= 0"):
        recipe_from_dict(raw)
    raw["data"]["resize"] = 256
    assert recipe_from_dict(raw).data.resize == 256


@pytest.fixture
def coded_cache(tmp_path: Path) -> FaceCache:
    """One 4-frame video of coded 16 px frames."""
    cache = FaceCache(tmp_path / "cache", settings={"size": 16})
    cache.add(ManifestRow("/v.mp4", "dfl", "crf0", "0", "test"), np.stack([coded_frame(16)] * 4))
    return cache


def test_eval_clips_and_predict_honour_resize(coded_cache: FaceCache) -> None:
    clips = EvalClips(coded_cache, coded_cache.entries, [0], num_frames=2, image_size=12,
                      mean=(0, 0, 0), std=(1 / 255,) * 3, resize=16)  # fmt: skip
    assert clips[0]["clip"].shape == (2, 3, 12, 12)
    np.testing.assert_array_equal(clips[0]["clip"][0, 0].numpy(), coded_frame(16)[2:14, 2:14, 0])
    recipe = to_dict(Recipe())
    recipe["data"].update(num_frames=2, image_size=12, resize=16)
    recipe["model"].update(backbone="resnet10", num_frames=2)
    recipe = recipe_from_dict(recipe)
    torch.manual_seed(0)
    model = build_model(recipe.model, num_classes=2)
    [pred] = predict_videos(model, coded_cache, coded_cache.entries, recipe, sam=True, device="cpu")
    sam = pred.clips[0].sam
    assert sam.shape == (2, 12, 12)
    # the model saw the centre 12/16 of the face: its maps cover that part (9 px) only
    assert (sam[:, 2:11, 2:11] > 0).all() and sam[:, :2].max() == 0 and sam[:, 11:].max() == 0


def test_sam_on_faces_places_maps_on_the_part_seen() -> None:
    maps = torch.ones(1, 8, 8)
    placed = sam_on_faces(maps, 16)
    assert placed[0, 2:6, 2:6].eq(1).all() and placed.sum() == 16
    assert sam_on_faces(maps, 0) is maps
