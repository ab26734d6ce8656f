"""The DFT-spectrum logistic-regression baseline: features, classifier, cache path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from attribnet.baselines.spectrum import (
    SpectrumBaseline,
    entry_labels,
    fit_and_score,
    log_amplitude,
    score_baseline,
    spectrum_features,
    video_features,
)
from attribnet.data.cache import FaceCache, video_key
from attribnet.data.manifest import ManifestRow
from attribnet.data.sampling import sample_indices
from attribnet.data.sources import with_rows
from attribnet.errors import DataError

LOW, HIGH, BINS = 32, 64, 16
UPSAMPLING = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR}


def face_like_content(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(frames, LOW, LOW, 3) float32: a few coloured Gaussian blobs drifting over a random
    background, plus per-video noise; the same distribution for every generator."""
    yy, xx = np.mgrid[0:LOW, 0:LOW].astype(np.float32)
    background = rng.uniform(40, 120, 3).astype(np.float32)
    blobs = [
        (
            rng.uniform(4, LOW - 4, 2),
            rng.uniform(2, 8),
            rng.uniform(-80, 80, 3),
            rng.normal(0, 1, 2),
        )
        for _ in range(rng.integers(3, 7))
    ]
    noise = rng.uniform(2, 8)
    out = np.empty((frames, LOW, LOW, 3), dtype=np.float32)
    for t in range(frames):
        out[t] = background + rng.normal(0, noise, (LOW, LOW, 3))
        for (cy, cx), sigma, colour, (vy, vx) in blobs:
            bump = np.exp(-((yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2) / (2 * sigma**2))
            out[t] += bump[..., None] * colour
    return out


def generated_video(rng: np.random.Generator, upsampling: str, frames: int = 4) -> np.ndarray:
    """(frames, HIGH, HIGH, 3) uint8: face-like content upsampled 2x by ``upsampling``."""
    low = face_like_content(rng, frames)
    high = [cv2.resize(f, (HIGH, HIGH), interpolation=UPSAMPLING[upsampling]) for f in low]
    return np.clip(np.stack(high), 0, 255).round().astype(np.uint8)


def two_generators(seed: int, n: int, upsamplings: tuple[str, str]) -> np.ndarray:
    """(n, BINS) features of videos alternating between generator 0 and 1."""
    rng = np.random.default_rng(seed)
    videos = [generated_video(rng, upsamplings[i % 2]) for i in range(n)]
    return np.stack([spectrum_features(v, BINS) for v in videos])


def test_separates_generators_that_differ_only_in_upsampling():
    upsamplings = ("nearest", "bilinear")
    train, test = two_generators(0, 40, upsamplings), two_generators(1, 60, upsamplings)
    result = fit_and_score(train, np.arange(40) % 2, test, np.arange(60) % 2, ["A", "B"])
    assert result["accuracy"] >= 0.9
    assert min(result["per_class_accuracy"].values()) >= 0.8


def test_same_upsampling_with_random_labels_stays_near_chance():
    rng = np.random.default_rng(2)
    upsamplings = ("bilinear", "bilinear")
    train, test = two_generators(0, 40, upsamplings), two_generators(1, 80, upsamplings)
    train_labels, test_labels = rng.permutation(40) % 2, rng.permutation(80) % 2
    result = fit_and_score(train, train_labels, test, test_labels, ["A", "B"])
    assert result["accuracy"] <= 0.7


def test_same_upsampling_with_other_brightness_stays_near_chance():
    """Generators that differ only by a brightness offset are not told apart."""
    rng = np.random.default_rng(3)
    offsets = (0.0, 60.0)

    def features(n: int) -> np.ndarray:
        videos = [generated_video(rng, "bilinear").astype(np.float32) * 0.7 for _ in range(n)]
        shifted = [np.clip(v + offsets[i % 2], 0, 255).round() for i, v in enumerate(videos)]
        return np.stack([spectrum_features(v.astype(np.uint8), BINS) for v in shifted])

    result = fit_and_score(features(40), np.arange(40) % 2, features(80), np.arange(80) % 2, "AB")
    assert result["accuracy"] <= 0.7


def test_feature_shape_dtype_and_finiteness():
    rng = np.random.default_rng(0)
    for frames in (generated_video(rng, "nearest"), np.zeros((2, 64, 80, 3), np.uint8)):
        feature = spectrum_features(frames)
        assert feature.shape == (32,) and feature.dtype == np.float32
        assert np.isfinite(feature).all()
    assert spectrum_features(generated_video(rng, "nearest"), bins=5).shape == (5,)


def test_radial_average_matches_a_plain_loop():
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, size=(3, 12, 10, 3), dtype=np.uint8)
    amplitude = log_amplitude(frames)
    bins = 4
    sums, counts = np.zeros(bins), np.zeros(bins)
    for y in range(12):
        for x in range(10):
            fy, fx = (y if y < 6 else y - 12) / 12, (x if x < 5 else x - 10) / 10
            r = 2 * (fy * fy + fx * fx) ** 0.5
            if r <= 1:
                b = min(int(r * bins), bins - 1)
                sums[b] += amplitude[y, x]
                counts[b] += 1
    np.testing.assert_allclose(spectrum_features(frames, bins), sums / counts, rtol=1e-5)


def test_log_amplitude_matches_its_definition():
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    want = []
    for frame in frames.astype(np.float64):
        grey = frame[..., 0] * 0.299 + frame[..., 1] * 0.587 + frame[..., 2] * 0.114
        z = (grey - grey.mean()) / grey.std() * np.outer(np.hanning(8), np.hanning(8))
        want.append(np.log(np.abs(np.fft.fft2(z)) / 8 + 1e-3))
    np.testing.assert_allclose(log_amplitude(frames), np.mean(want, axis=0), atol=1e-4)


def test_invariant_to_brightness_and_contrast_above_the_quantisation_floor():
    rng = np.random.default_rng(6)
    textured = np.clip(rng.normal(110, 20, size=(2, 64, 64, 3)), 0, 255).astype(np.uint8)
    base = spectrum_features(textured)
    brighter = np.clip(textured.astype(np.int16) + 40, 0, 255).astype(np.uint8)
    lower_contrast = (textured * 0.5).round().astype(np.uint8)
    assert np.abs(spectrum_features(brighter) - base).max() < 1e-4
    assert np.abs(spectrum_features(lower_contrast) - base).max() < 0.05
    other = spectrum_features(generated_video(rng, "nearest"))
    assert np.abs(other - base).max() > 1.0  # the tolerance above is far below a real change


def test_white_noise_gives_the_same_flat_profile_at_every_crop_size():
    """Radius normalised to Nyquist and an orthonormal DFT: the level does not depend on
    the crop size (bin 0 holds the removed mean, so it is left out)."""
    rng = np.random.default_rng(7)
    profiles = [
        spectrum_features(rng.integers(0, 256, size=(8, s, s, 3), dtype=np.uint8), BINS)
        for s in (48, 96, 160)
    ]
    for profile in profiles:
        assert np.ptp(profile[2:]) < 0.15
    np.testing.assert_allclose(profiles[0][1:], profiles[2][1:], atol=0.15)


@pytest.mark.parametrize(
    ("frames", "error", "match"),
    [
        (np.zeros((64, 64, 3), np.uint8), ValueError, r"\(T, H, W, 3\)"),
        (np.zeros((2, 64, 64, 4), np.uint8), ValueError, r"shape \(2, 64, 64, 4\)"),
        (np.zeros((2, 64, 64, 3), np.float32), ValueError, "float32"),
        (np.zeros((0, 64, 64, 3), np.uint8), DataError, "no frames"),
        (np.zeros((2, 63, 64, 3), np.uint8), DataError, "63x64 is too small for 32 radial bins"),
    ],
)
def test_bad_input_is_a_clear_error(frames: np.ndarray, error: type, match: str):
    with pytest.raises(error, match=match):
        spectrum_features(frames)


def test_classifier_probabilities_cover_every_class():
    rng = np.random.default_rng(8)
    features = rng.normal(size=(30, 4)) + np.repeat(np.eye(3, 4) * 4, 10, axis=0)
    labels = np.repeat([0, 2, 3], 10)  # class 1 has no training video
    model = SpectrumBaseline(4).fit(features, labels)
    probs = model.predict_proba(features)
    assert probs.shape == (30, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs[:, 1] == 0).all()
    assert (model.predict(features) == labels).mean() >= 0.9
    scores = score_baseline(model, features, labels, ["a", "b", "c", "d"])
    assert np.isnan(scores["per_class_accuracy"]["b"]) and scores["accuracy"] >= 0.9
    assert scores["predictions"].shape == (30,)
    with pytest.raises(DataError, match="2\\+ classes"):
        SpectrumBaseline(4).fit(features[:10], labels[:10])


def _cache_with_videos(tmp_path: Path) -> tuple[FaceCache, list[ManifestRow]]:
    """A real FaceCache with three videos of 3, 8 and 40 frames (video files absent)."""
    settings = {"size": HIGH, "margin": 0.3, "detector": "none", "max_frames": 40}
    cache = FaceCache(tmp_path / "cache", settings)
    rng = np.random.default_rng(9)
    rows = []
    for i, (frames, label) in enumerate([(3, "nn"), (8, "bl"), (40, "nn")]):
        row = ManifestRow(str(tmp_path / f"v{i}.mp4"), label, "c23", f"s{i}", "train")
        upsampling = "nearest" if label == "nn" else "bilinear"
        cache.add(row, generated_video(rng, upsampling, frames))
        rows.append(row)
    return FaceCache(tmp_path / "cache"), rows


def test_video_features_reads_evenly_spaced_frames_of_each_cached_video(tmp_path: Path):
    cache, rows = _cache_with_videos(tmp_path)
    entries = with_rows(cache, rows[::-1])
    features = video_features(cache, entries, max_frames=8, bins=BINS, progress=False)
    assert features.shape == (3, BINS) and features.dtype == np.float32
    for entry, feature in zip(entries, features, strict=True):
        clip = np.asarray(cache.load(entry))
        picked = sample_indices(len(clip), min(8, len(clip)))
        np.testing.assert_array_equal(feature, spectrum_features(clip[picked], BINS))
    np.testing.assert_array_equal(entry_labels(entries, ["nn", "bl"]), [0, 1, 0])
    with pytest.raises(DataError, match="not among the classes"):
        entry_labels(entries, ["nn"])


def test_video_features_names_an_unreadable_or_empty_clip(tmp_path: Path):
    cache, rows = _cache_with_videos(tmp_path)
    (cache.root / "clips" / f"{video_key(rows[1].path)}.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match="v1.mp4.*unreadable"):
        video_features(cache, cache.entries, progress=False)
    empty = ManifestRow(str(tmp_path / "empty.mp4"), "nn", "c23", "s9", "test")
    cache.add(empty, np.zeros((0, HIGH, HIGH, 3), np.uint8))
    with pytest.raises(DataError, match="empty.mp4.*no frames"):
        video_features(cache, [cache.entry_for(empty.path)], progress=False)
