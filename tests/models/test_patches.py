"""The patch sampler: windows cut on the frame's own pixel grid (never resampled), random
in training and a fixed grid at evaluation; a patch model trains and its features are the
mean over a frame's windows."""

from __future__ import annotations

import pytest
import torch

from attribnet.config import ModelConfig
from attribnet.models import build_model
from attribnet.models.encoder import ClipEncoder
from attribnet.models.patches import PatchSampler, grid_offsets


def test_windows_are_slices_of_the_frame_never_resampled():
    torch.manual_seed(0)
    frames = torch.randn(3, 3, 40, 36)  # (N, C, H, W), not square, random values
    sampler = PatchSampler(16, count=5, grid=3).train()
    windows = sampler(frames)
    corners = sampler.last_offsets
    assert windows.shape == (3 * 5, 3, 16, 16) and corners.shape == (3, 5, 2)
    for i, (y, x) in enumerate(corners.reshape(-1, 2).tolist()):
        assert 0 <= y <= 40 - 16 and 0 <= x <= 36 - 16
        assert torch.equal(windows[i], frames[i // 5, :, y : y + 16, x : x + 16])
    again = sampler(frames)
    assert not torch.equal(sampler.last_offsets, corners) or not torch.equal(again, windows)


def test_evaluation_takes_the_same_evenly_spaced_grid_every_time():
    frames = torch.randn(2, 3, 32, 32)
    sampler = PatchSampler(16, count=5, grid=3).eval()
    first, second = sampler(frames), sampler(frames)
    assert torch.equal(first, second) and first.shape == (2 * 9, 3, 16, 16)
    assert grid_offsets(32, 16, 3).tolist() == [0, 8, 16]
    assert torch.equal(first[8], frames[0, :, 16:32, 16:32])  # the last window: bottom right
    assert grid_offsets(32, 16, 1).tolist() == [8]


def test_bad_sizes_are_errors():
    with pytest.raises(ValueError, match="need frames of at least"):
        PatchSampler(64).eval()(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="patch size >= 8"):
        PatchSampler(4)


def test_a_patch_encoder_averages_its_windows_features_and_trains():
    torch.manual_seed(0)
    enc = ClipEncoder("resnet10", sam="none", fusion="mean", num_frames=2, patch_size=16,
                      patches=3, patch_grid=2).eval()  # fmt: skip
    clips = torch.randn(2, 2, 3, 32, 32)
    frames = clips.flatten(0, 1)
    feats = enc.forward_frames(clips)
    windows = enc.patches(frames)
    per_window = torch.nn.functional.adaptive_avg_pool2d(enc.trunk.forward_features(windows), 1)
    expected = per_window.flatten(1).view(4, 4, -1).mean(dim=1).view(2, 2, -1)
    torch.testing.assert_close(feats, expected)
    cfg = ModelConfig(backbone="resnet10", sam="none", fusion="mean", num_frames=2,
                      embedding_dim=8, patch_size=16, patches=3)  # fmt: skip
    model = build_model(cfg, 3).train()
    out = model(clips)
    (out["logits"].sum() + out["embedding"].sum()).backward()
    assert out["logits"].shape == (2, 3) and torch.isfinite(out["logits"]).all()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
