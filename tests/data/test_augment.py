"""Augmentation: one draw per clip (the same transform on every frame), reproducibility."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from attribnet.data.augment import ClipAugment, CompressionAugment, Normalize


def random_frame(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def repeated_clip(t: int = 6, h: int = 32, w: int = 32) -> np.ndarray:
    """uint8 (T, H, W, 3) whose frames are all the same random image."""
    return np.repeat(random_frame(h, w)[None], t, axis=0)


def _is_hflip_of(out: np.ndarray, frame: np.ndarray) -> bool:
    return bool(np.array_equal(out, frame[:, ::-1]))


@pytest.mark.parametrize(
    "augment",
    [
        ClipAugment(32, hflip=1.0, crop_scale=None),
        ClipAugment(24, hflip=0.5, crop_scale=(0.3, 0.6)),
        ClipAugment(32, hflip=0.0, crop_scale=None, color_jitter=0.4),
        ClipAugment(20, hflip=0.5, crop_scale=(0.5, 1.0), color_jitter=0.3),
    ],
    ids=["flip", "crop", "colour", "all"],
)
def test_identical_frames_stay_identical(augment: ClipAugment) -> None:
    clip = repeated_clip()
    for seed in range(8):
        out = augment(clip, np.random.default_rng(seed))
        assert out.shape == (6, *augment.size, 3)
        assert out.dtype == np.uint8
        for frame in out[1:]:
            np.testing.assert_array_equal(frame, out[0])


def test_hflip_one_flips_every_frame() -> None:
    clip = repeated_clip()
    out = ClipAugment(32, hflip=1.0, crop_scale=None)(clip, np.random.default_rng(0))
    assert all(_is_hflip_of(f, clip[0]) for f in out)


def test_hflip_half_gives_both_outcomes_per_clip() -> None:
    clip = repeated_clip(t=3)
    augment = ClipAugment(32, hflip=0.5, crop_scale=None)
    rng = np.random.default_rng(0)
    flipped = 0
    for _ in range(40):
        out = augment(clip, rng)
        states = {_is_hflip_of(f, clip[0]) for f in out}
        assert len(states) == 1
        if not states.pop():
            np.testing.assert_array_equal(out, clip)
        else:
            flipped += 1
    assert 8 <= flipped <= 32


def test_crop_varies_between_draws() -> None:
    clip = repeated_clip(t=2)
    augment = ClipAugment(16, hflip=0.0, crop_scale=(0.2, 0.5))
    outs = {augment(clip, np.random.default_rng(s)).tobytes() for s in range(10)}
    assert len(outs) > 5


def test_same_transform_on_different_frames() -> None:
    """Each frame of a mixed clip is transformed as it would be alone with the same draw."""
    frames = np.stack([random_frame(seed=s) for s in range(4)])
    augment = ClipAugment(24, hflip=0.5, crop_scale=(0.4, 0.9), color_jitter=0.2)
    whole = augment(frames, np.random.default_rng(11))
    for i, frame in enumerate(frames):
        alone = augment(frame[None], np.random.default_rng(11))
        np.testing.assert_array_equal(whole[i], alone[0])


def test_spatial_determinism_and_seed_fallback() -> None:
    frames = np.stack([random_frame(seed=s) for s in range(3)])
    augment = ClipAugment(20, color_jitter=0.3)
    a = augment(frames, np.random.default_rng(5))
    np.testing.assert_array_equal(a, augment(frames, np.random.default_rng(5)))
    assert not np.array_equal(a, augment(frames, np.random.default_rng(6)))
    seeded = [ClipAugment(20, color_jitter=0.3, seed=9)(frames) for _ in range(2)]
    np.testing.assert_array_equal(seeded[0], seeded[1])
    copy = pickle.loads(pickle.dumps(augment))
    np.testing.assert_array_equal(a, copy(frames, np.random.default_rng(5)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hflip": 1.5},
        {"crop_scale": (0.9, 0.5)},
        {"crop_scale": (0.0, 1.0)},
        {"color_jitter": -1},
        {"random_crop": True},
    ],
)
def test_clip_augment_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ClipAugment(32, **kwargs)


def _offset(out: np.ndarray, clip: np.ndarray) -> tuple[int, int] | None:
    """Where ``out`` sits in ``clip`` as an unresampled window, None when it does not."""
    h, w = out.shape[1:3]
    for y in range(clip.shape[1] - h + 1):
        for x in range(clip.shape[2] - w + 1):
            if np.array_equal(out, clip[:, y : y + h, x : x + w]):
                return y, x
    return None


def test_random_crop_takes_windows_of_the_frames_own_pixels() -> None:
    """resize = the frames' side: no resampling; training's random crop is a window of the
    frames at a varying place (the same on every frame), evaluation's the centre one."""
    clip = np.random.default_rng(0).integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    centre = ClipAugment(12, hflip=0.0, crop_scale=None, resize=20)(clip)
    assert _offset(centre, clip) == (4, 4)
    train = ClipAugment(12, hflip=0.0, crop_scale=(1.0, 1.0), resize=20, random_crop=True)
    rng = np.random.default_rng(1)
    offsets = {_offset(train(clip, rng), clip) for _ in range(12)}
    assert None not in offsets and len(offsets) > 6


def test_compression_is_deterministic_and_changes_pixels() -> None:
    clip = np.stack([random_frame(seed=s) for s in range(4)])
    augment = CompressionAugment(h264_p=0.5, crf_choices=(10, 23), jpeg_p=0.5)
    outs = [augment(clip, np.random.default_rng(s)) for s in range(12)]
    for s in (0, 5):
        np.testing.assert_array_equal(outs[s], augment(clip, np.random.default_rng(s)))
    changed = [not np.array_equal(o, clip) for o in outs]
    assert any(changed) and not all(changed)
    for out in outs:
        assert out.shape == clip.shape and out.dtype == np.uint8


def test_compression_always_and_never() -> None:
    clip = np.stack([random_frame(seed=s) for s in range(2)])
    never = CompressionAugment()
    assert not never.active
    np.testing.assert_array_equal(never(clip, np.random.default_rng(0)), clip)
    always = CompressionAugment(h264_p=1.0, crf_choices=(23,))
    assert not np.array_equal(always(clip, np.random.default_rng(0)), clip)
    jpeg = CompressionAugment(jpeg_p=1.0, jpeg_quality=(50, 50))
    assert not np.array_equal(jpeg(clip, np.random.default_rng(0)), clip)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"h264_p": -0.1},
        {"jpeg_p": 2},
        {"crf_choices": ()},
        {"crf_choices": (60,)},
        {"jpeg_quality": (90, 50)},
    ],
)
def test_compression_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CompressionAugment(**kwargs)


def test_normalize_layout_and_values() -> None:
    clip = np.stack([random_frame(8, 10, seed=s) for s in range(3)])
    out = Normalize()(clip)
    assert out.shape == (3, 3, 8, 10) and out.dtype == torch.float32
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (clip / 255.0 - mean) / std
    np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), expected, atol=1e-5)
    raw = Normalize(mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255))(clip)
    np.testing.assert_allclose(raw.permute(0, 2, 3, 1).numpy(), clip, atol=1e-3)
    with pytest.raises(ValueError):
        Normalize(std=(0.2, 0.0, 0.2))


def test_full_scale_crop_at_the_frames_own_size_is_the_identity():
    """What the patch and native-grid recipes rely on: crop_scale (1, 1) at the cached size
    leaves every pixel where it was (no resampling), whatever the draw."""
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    augment = ClipAugment(64, hflip=0.0, crop_scale=(1.0, 1.0))
    for seed in range(10):
        assert np.array_equal(augment(frames, np.random.default_rng(seed)), frames)
