"""The transformation pretext task: each class does what its name says, and a dataset
draws its labels reproducibly per (seed, epoch, item)."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from attribnet.config.choices import PRETEXTS
from attribnet.data.augment import Normalize
from attribnet.data.cache import FaceCache
from attribnet.data.clips import ClipDataset
from attribnet.data.manifest import ManifestRow
from attribnet.data.pretext import TRANSFORMATIONS, TransformationPretext, build_pretext

RAW = Normalize(mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255))
BY_NAME = {t.name: t for t in TRANSFORMATIONS}


def texture(seed: int = 0, frames: int = 3, size: int = 64) -> np.ndarray:
    """uint8 (frames, size, size, 3): lightly blurred noise, fine detail at every scale."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(128, 50, (frames, size, size, 3)).astype(np.float32)
    smooth = np.stack([cv2.GaussianBlur(f, (0, 0), 0.7) for f in noise])
    return np.clip(smooth, 0, 255).astype(np.uint8)


def apply(name: str, frames: np.ndarray, seed: int = 0) -> np.ndarray:
    return BY_NAME[name].apply(frames, np.random.default_rng(seed))


def high_frequency_energy(frames: np.ndarray) -> float:
    """Mean squared Laplacian response: the energy of the finest detail."""
    return float(np.mean([cv2.Laplacian(f.astype(np.float32), cv2.CV_32F) ** 2 for f in frames]))


def test_the_classes_are_fixed_and_every_pretext_name_builds():
    assert len(TRANSFORMATIONS) == 12 and len(BY_NAME) == 12
    assert TRANSFORMATIONS[0].name == "identity"
    assert build_pretext("none") is None
    assert all(build_pretext(name) is not None for name in PRETEXTS if name != "none")
    with pytest.raises(ValueError, match="unknown pretext"):
        build_pretext("rotations")


def test_every_class_keeps_shape_and_dtype():
    frames = texture(size=37)  # odd: halving and doubling must come back to 37
    for t in TRANSFORMATIONS:
        out = t.apply(frames, np.random.default_rng(0))
        assert out.shape == frames.shape and out.dtype == np.uint8, t.name


def test_identity_returns_the_frames():
    frames = texture()
    np.testing.assert_array_equal(apply("identity", frames), frames)


def test_jpeg_changes_pixels_and_less_at_higher_quality():
    frames = texture()
    errors = {
        q: np.abs(apply(f"jpeg_q{q}", frames).astype(int) - frames).mean() for q in (50, 70, 90)
    }
    assert 0 < errors[90] < errors[70] < errors[50]
    assert not np.array_equal(apply("jpeg_q50", frames), apply("jpeg_q90", frames))


def test_blur_removes_high_frequency_energy_the_more_the_larger_sigma():
    frames = texture()
    plain = high_frequency_energy(frames)
    s1, s2 = (high_frequency_energy(apply(f"blur_s{s}", frames)) for s in (1, 2))
    assert s2 < s1 < 0.5 * plain


def test_resampling_classes_differ_from_the_frames_and_from_each_other():
    frames = texture()
    names = [n for n in BY_NAME if n.startswith("resample_")]
    assert len(names) == 4
    outs = {n: apply(n, frames) for n in names}
    for name, out in outs.items():
        assert np.abs(out.astype(int) - frames).mean() > 1, name
    for a, b in itertools.combinations(names, 2):
        assert np.abs(outs[a].astype(int) - outs[b]).mean() > 0.5, (a, b)


@pytest.mark.parametrize("sigma", [2, 5])
def test_noise_has_the_named_standard_deviation(sigma):
    grey = np.full((4, 64, 64, 3), 128, np.uint8)  # far from 0 and 255: no clipping
    out = apply(f"noise_s{sigma}", grey, seed=1)
    assert abs((out.astype(float) - 128).std() - sigma) < 0.05 * sigma
    assert not np.array_equal(out, apply(f"noise_s{sigma}", grey, seed=2))


@pytest.fixture
def cache(tmp_path: Path) -> FaceCache:
    """Twelve train videos of three labels (a real one too), 8 frames of 32 px."""
    cache = FaceCache(tmp_path / "cache", settings={"size": 32})
    for i in range(12):
        label = ("real", "dfl", "iae")[i % 3]
        row = ManifestRow(f"/data/{label}/{i}.mp4", label, "crf0", str(i), "train")
        cache.add(row, texture(seed=i, frames=8, size=32))
    return cache


def dataset(cache: FaceCache, seed: int = 3) -> ClipDataset:
    pretext = TransformationPretext()
    return ClipDataset(cache, cache.entries, pretext.names, num_frames=4, normalize=RAW,
                       seed=seed, pretext=pretext)  # fmt: skip


def test_labels_are_drawn_per_item_reproducibly_and_change_with_the_epoch(cache):
    first, again = dataset(cache), dataset(cache)
    labels = first.labels
    assert labels.tolist() == again.labels.tolist()
    assert [first[i]["label"] for i in range(len(first))] == labels.tolist()
    assert len(set(labels.tolist())) > 3  # varies over items, whatever the video's label
    first.set_epoch(1)
    assert first.labels.tolist() != labels.tolist()
    assert dataset(cache, seed=4).labels.tolist() != labels.tolist()


def test_an_items_frames_go_through_its_labels_transformation(cache):
    data = dataset(cache)
    for i in range(len(data)):
        item = data[i]
        frames = np.array(cache.load(data.entries[i]))[data.frame_indices(i, data.item_rngs(i)[0])]
        rng = data.pretext_rng(i)
        label = data.pretext.draw(rng)
        expected = TRANSFORMATIONS[label].apply(frames, rng)
        clip = item["clip"].round().byte().permute(0, 2, 3, 1).numpy()
        assert item["label"] == label
        np.testing.assert_array_equal(clip, expected)


def test_a_pretext_dataset_takes_only_its_own_class_names(cache):
    with pytest.raises(ValueError, match="pretext"):
        ClipDataset(cache, cache.entries, ["real", "dfl", "iae"], num_frames=4,
                    pretext=TransformationPretext())  # fmt: skip
