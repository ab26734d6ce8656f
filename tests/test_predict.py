"""The one inference path (attribnet.predict): outputs checked against a hand-built forward
pass, evidence that points at real frames and sums to 1, batching that changes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from attribnet.config import ModelConfig
from attribnet.data.cache import FaceCache
from attribnet.data.manifest import ManifestRow
from attribnet.data.sampling import clip_indices, clips_for
from attribnet.errors import ConfigError
from attribnet.models import build_model
from attribnet.predict import cpu_inference_model, predict_videos, stack, top_frames
from attribnet.runtime.device import resolve_device
from tests.builders import assert_predictions_close, tiny_recipe

T, SIZE, DIM, K = 4, 32, 8, 3
LENGTHS = (4, 9, 16)  # 1, 2 and 4 clips at clips_per_video=4


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> tuple[FaceCache, list]:
    root = tmp_path_factory.mktemp("predict")
    cache = FaceCache(root / "cache", {"size": SIZE})
    rng = np.random.default_rng(0)
    entries = []
    for i, n in enumerate(LENGTHS):
        frames = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
        entries.append(cache.add(ManifestRow(path=str(root / f"v{i}.mp4"), label="x"), frames))
    return cache, entries


def _model(sam: str, fusion: str = "tam") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet10", sam=sam, fusion=fusion, num_frames=T,
                      embedding_dim=DIM)  # fmt: skip
    return build_model(cfg, K).eval()


def _recipe(tmp: Path, batch_size: int = 4):
    return tiny_recipe(tmp, num_frames=T, size=SIZE, embedding_dim=DIM, batch_size=batch_size)


def _by_hand(model, cache: FaceCache, entry, recipe, frames: np.ndarray) -> dict:
    """The model on one clip, normalised by hand as the recipe says."""
    x = np.asarray(cache.load(entry)[frames], dtype=np.float32) / 255.0
    mean, std = np.array(recipe.data.mean), np.array(recipe.data.std)
    clip = torch.from_numpy(((x - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
    with torch.no_grad():
        return model(clip[None])


def test_outputs_match_a_hand_built_forward_pass(cached, tmp_path: Path) -> None:
    cache, entries = cached
    model, recipe = _model("every_block"), _recipe(tmp_path)
    preds = predict_videos(model, cache, entries, recipe, clips_per_video=4, device="cpu")
    assert len(preds) == len(entries)
    for entry, pred in zip(entries, preds, strict=True):
        n_clips = clips_for(entry.num_frames, T, 4)
        assert pred.num_clips == n_clips
        expected = clip_indices(entry.num_frames, T, n_clips)
        for c, clip in enumerate(pred.clips):
            np.testing.assert_array_equal(clip.frames, expected[c])
            out = _by_hand(model, cache, entry, recipe, clip.frames)
            np.testing.assert_allclose(pred.clip_logits[c], out["logits"][0], atol=1e-4)
            w = out["frame_weights"][0].numpy()
            np.testing.assert_allclose(clip.weights, w / w.sum(), atol=1e-5)
        unit = F.normalize(torch.from_numpy(pred.clip_embeddings), dim=1)
        np.testing.assert_allclose(unit.norm(dim=1).numpy(), 1.0, atol=1e-5)
        assert np.linalg.norm(pred.embedding) == pytest.approx(1.0, abs=1e-5)
        assert pred.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_evidence_weights_sum_to_one_and_point_at_real_frames(cached, tmp_path: Path) -> None:
    cache, entries = cached
    preds = predict_videos(
        _model("every_block"), cache, entries, _recipe(tmp_path), sam=True, device="cpu"
    )
    for entry, pred in zip(entries, preds, strict=True):
        for clip in pred.clips:
            assert clip.weights.sum() == pytest.approx(1.0, abs=1e-5)
            assert (clip.weights > 0).all()
            assert ((clip.frames >= 0) & (clip.frames < entry.num_frames)).all()
            assert clip.sam.shape == (T, SIZE, SIZE)
            assert ((clip.sam > 0) & (clip.sam < 1)).all()
        top = top_frames(pred)
        assert sum(w for _, _, w in top) == pytest.approx(1.0, abs=1e-5)
        assert [w for _, _, w in top] == sorted((w for _, _, w in top), reverse=True)


def test_sam_map_is_the_attention_gate_upsampled(cached, tmp_path: Path) -> None:
    """With SAM once on the last stage, the map is that gate, upsampled to the crop."""
    cache, entries = cached
    model, recipe = _model("last"), _recipe(tmp_path)
    pred = predict_videos(model, cache, entries[:1], recipe, sam=True, device="cpu")[0]
    x = np.asarray(cache.load(entries[0])[pred.clips[0].frames], dtype=np.float32) / 255.0
    x = (x - np.array(recipe.data.mean)) / np.array(recipe.data.std)
    frames = torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2)
    tr = model.encoder.trunk
    with torch.no_grad():
        h = tr.layer4(
            tr.layer3(tr.layer2(tr.layer1(tr.maxpool(tr.relu(tr.bn1(tr.conv1(frames)))))))
        )
        gate = model.encoder.last_sam.attention_map(h)
    expected = F.interpolate(gate, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(pred.clips[0].sam, expected.numpy(), atol=1e-5)


def test_no_sam_no_maps(cached, tmp_path: Path) -> None:
    cache, entries = cached
    pred = predict_videos(_model("none"), cache, entries[:1], _recipe(tmp_path), sam=True)[0]
    assert all(clip.sam is None for clip in pred.clips)


def test_batching_across_videos_changes_nothing(cached, tmp_path: Path) -> None:
    cache, entries = cached
    model = _model("every_block")
    one = predict_videos(model, cache, entries, _recipe(tmp_path, batch_size=1), device="cpu")
    many = predict_videos(model, cache, entries, _recipe(tmp_path, batch_size=7), device="cpu")
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a.clip_logits, b.clip_logits, atol=1e-4)
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-5)


def test_stack_gives_video_level_arrays(cached, tmp_path: Path) -> None:
    cache, entries = cached
    preds = predict_videos(_model("none", "mean"), cache, entries, _recipe(tmp_path))
    assert stack(preds, "embedding").shape == (len(entries), DIM)
    assert stack(preds, "probabilities").shape == (len(entries), K)
    np.testing.assert_array_equal(stack(preds, "num_clips"), [1, 2, 4])
    assert predict_videos(_model("none"), cache, [], _recipe(tmp_path)) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def _with_batchnorm_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Random BatchNorm statistics and affine terms, so that folding them can go wrong."""
    rng = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=rng) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=rng) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=rng) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=rng) * 0.1)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet10", "resnet50"])
def test_cpu_inference_model_folds_every_batchnorm_and_keeps_outputs(backbone: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, num_frames=T, embedding_dim=DIM)
    model = _with_batchnorm_statistics(build_model(cfg, K)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = cpu_inference_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert fused.encoder.trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.training and not fused.training
    for k, v in model.state_dict().items():  # the caller's model is untouched
        assert torch.equal(v, before[k]) and v.is_contiguous(), k
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    clips = torch.randn(2, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = model.eval()(clips), fused(clips)
    for name in ("logits", "embedding", "frame_weights"):
        np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), atol=1e-5)


def test_fused_and_plain_paths_agree(cached, tmp_path: Path) -> None:
    cache, entries = cached
    model, recipe = _with_batchnorm_statistics(_model("every_block")), _recipe(tmp_path)
    plain = predict_videos(model, cache, entries, recipe, sam=True, fuse=False, device="cpu")
    fused = predict_videos(model, cache, entries, recipe, sam=True, fuse=True, device="cpu")
    assert_predictions_close(plain, fused, atol=1e-5)


def test_bf16_is_close_to_fp32_and_precision_is_checked(cached, tmp_path: Path) -> None:
    cache, entries = cached
    model, recipe = _model("every_block"), _recipe(tmp_path)
    fp32 = predict_videos(model, cache, entries, recipe, device="cpu")
    bf16 = predict_videos(model, cache, entries, recipe, precision="bf16", device="cpu")
    for a, b in zip(fp32, bf16, strict=True):
        assert b.clip_logits.dtype == np.float32
        assert float(a.embedding @ b.embedding) > 0.999
        np.testing.assert_allclose(b.clip_logits, a.clip_logits, atol=0.05)
        assert not np.allclose(b.clip_logits, a.clip_logits, atol=1e-6, rtol=0)  # it ran bf16
    with pytest.raises(ConfigError, match="unknown precision"):
        predict_videos(model, cache, entries, recipe, precision="fp16")
