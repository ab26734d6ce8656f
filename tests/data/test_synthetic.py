"""The demo dataset: layout, splits, determinism, resumability, and that it is honest.

"Honest" means learnable only through the generators' fingerprints: a classifier on
global colour statistics must be near chance on held-out sources, while the same
classifier on a high-frequency (spectral) feature must separate the classes, which
shows the test can fail.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from attribnet.cli import synthetic
from attribnet.data.codec import decode_all, psnr
from attribnet.data.manifest import ManifestRow, read_manifest
from attribnet.data.synthetic import (
    ARCHITECTURES,
    DEMO_CLASSES,
    build_generator,
    draw_source,
    generate_demo,
    render_fake,
)
from attribnet.data.synthetic import dataset as synthetic_dataset

SOURCES, FRAMES, SIZE = 8, 10, 48


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo set, generated once for this module: its manifest path."""
    out = tmp_path_factory.mktemp("demo")
    return generate_demo(out, num_sources=SOURCES, num_frames=FRAMES, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def rows(demo: Path) -> list[ManifestRow]:
    return read_manifest(demo)


@pytest.fixture(scope="module")
def videos(rows: list[ManifestRow]) -> dict[str, np.ndarray]:
    """Every video of the set, decoded, by path."""
    return {row.path: decode_all(row.path) for row in rows}


def _tiny(out: Path, **kwargs: object) -> Path:
    params = {"num_sources": 3, "num_frames": 4, "size": 32, "qualities": (0,)}
    params.update(kwargs)
    return generate_demo(out, **params)


# ------------------------------------------------------------------------------ layout


@pytest.mark.slow
def test_manifest_has_every_class_source_and_quality(demo: Path, rows: list[ManifestRow]) -> None:
    assert demo.name == "manifest.csv"
    assert len(rows) == len(DEMO_CLASSES) * SOURCES * 3
    keys = {(r.label, r.source_id, r.quality) for r in rows}
    assert len(keys) == len(rows)
    assert {r.label for r in rows} == set(DEMO_CLASSES)
    assert {r.quality for r in rows} == {"crf0", "crf10", "crf23"}
    for r in rows:
        assert Path(r.path) == demo.parent / r.quality / r.label / f"{r.source_id}.mp4"


@pytest.mark.slow
def test_every_video_decodes_to_the_right_shape(videos: dict[str, np.ndarray]) -> None:
    for path, video in videos.items():
        assert video.shape == (FRAMES, SIZE, SIZE, 3), path


@pytest.mark.slow
def test_splits_are_grouped_by_source(rows: list[ManifestRow]) -> None:
    splits_of_source = defaultdict(set)
    for r in rows:
        splits_of_source[r.source_id].add(r.split)
    assert all(len(s) == 1 for s in splits_of_source.values())
    counts = defaultdict(int)
    for (split,) in splits_of_source.values():
        counts[split] += 1
    assert counts == {"train": 6, "val": 1, "test": 1}


# ------------------------------------------------------------------------- generators


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_generator_output_is_close_to_its_input_with_the_same_colours(name: str) -> None:
    real = draw_source(np.random.default_rng(3), 6).render(6, SIZE)
    fake = render_fake(build_generator(name), real)
    assert fake.shape == real.shape and fake.dtype == np.uint8
    assert 20.0 < psnr(fake, real) < 40.0
    mean_diff = np.abs(fake.mean((1, 2)) - real.mean((1, 2)))
    std_diff = np.abs(fake.std((1, 2)) - real.std((1, 2)))
    assert mean_diff.max() < 2.0 and std_diff.max() < 2.0


def test_generator_weights_are_fixed_per_architecture() -> None:
    a, b = build_generator("iae"), build_generator("iae")
    for (key, wa), wb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert np.array_equal(wa.numpy(), wb.numpy()), key


def test_generating_leaves_the_global_random_state_alone(tmp_path: Path) -> None:
    """A model seeded before the demo set is generated is the one seeded without it."""
    torch.manual_seed(7)
    np.random.seed(7)
    before_torch, before_numpy = torch.get_rng_state(), np.random.get_state()[1].copy()
    _tiny(tmp_path / "demo", generators=("iae", "dfaker", "unseen"))
    assert torch.equal(torch.get_rng_state(), before_torch)
    assert np.array_equal(np.random.get_state()[1], before_numpy)


# ------------------------------------------------------------------------------ honesty


def _colour_features(video: np.ndarray) -> np.ndarray:
    """Per-channel mean and std, and an 8-bin histogram per channel."""
    x = video.astype(np.float64) / 255.0
    hists = [
        np.histogram(x[..., c], bins=8, range=(0.0, 1.0))[0] / x[..., c].size for c in (0, 1, 2)
    ]
    return np.concatenate([x.mean((0, 1, 2)), x.std((0, 1, 2)), *hists])


def _fingerprint_features(video: np.ndarray, grid: int = 8) -> np.ndarray:
    """Log power spectrum of the luma (normalised to total power), pooled to grid x grid."""
    luma = video.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    luma -= luma.mean((1, 2), keepdims=True)
    power = (np.abs(np.fft.fftshift(np.fft.fft2(luma), axes=(1, 2))) ** 2).mean(0)
    power /= power.sum()
    n = power.shape[0] // grid
    return np.log(power.reshape(grid, n, grid, n).mean((1, 3)) + 1e-12).ravel()


def _held_out_source_accuracy(rows: list[ManifestRow], features: np.ndarray) -> float:
    """Logistic regression, each video predicted by a model that never saw its source."""
    labels = np.array([r.label for r in rows])
    groups = np.array([r.source_id for r in rows])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    predicted = cross_val_predict(model, features, labels, groups=groups, cv=LeaveOneGroupOut())
    return float(np.mean(predicted == labels))


@pytest.mark.slow
@pytest.mark.parametrize(("quality", "min_fingerprint_acc"), [("crf0", 0.8), ("crf23", 0.6)])
def test_classes_are_separable_by_fingerprint_but_not_by_colour(
    rows: list[ManifestRow],
    videos: dict[str, np.ndarray],
    quality: str,
    min_fingerprint_acc: float,
) -> None:
    subset = [r for r in rows if r.quality == quality]
    colour = np.stack([_colour_features(videos[r.path]) for r in subset])
    fingerprint = np.stack([_fingerprint_features(videos[r.path]) for r in subset])
    assert _held_out_source_accuracy(subset, colour) < 0.4  # chance is 0.2
    assert _held_out_source_accuracy(subset, fingerprint) > min_fingerprint_acc


@pytest.mark.slow
def test_colour_varies_more_across_sources_than_across_generators(
    rows: list[ManifestRow], videos: dict[str, np.ndarray]
) -> None:
    means = defaultdict(list)
    for r in rows:
        if r.quality == "crf0":
            means[r.source_id].append(videos[r.path].mean((0, 1, 2)))
    per_source = np.stack([np.stack(m) for m in means.values()])  # (sources, classes, 3)
    across_generators = per_source.std(axis=1).mean()
    across_sources = per_source.mean(axis=1).std(axis=0).mean()
    assert across_sources > 20.0 * across_generators


# ------------------------------------------------------------------ determinism, resume


@pytest.mark.slow
def test_same_seed_same_videos_other_seed_other_videos(tmp_path: Path) -> None:
    a = read_manifest(_tiny(tmp_path / "a", seed=5, generators=("faceswap", "dfl")))
    b = read_manifest(_tiny(tmp_path / "b", seed=5, generators=("faceswap", "dfl")))
    c = read_manifest(_tiny(tmp_path / "c", seed=6, generators=("faceswap", "dfl")))
    assert [r.split for r in a] == [r.split for r in b]
    for ra, rb, rc in zip(a, b, c, strict=True):
        assert np.array_equal(decode_all(ra.path), decode_all(rb.path))
        assert not np.array_equal(decode_all(ra.path), decode_all(rc.path))


@pytest.mark.slow
def test_second_call_returns_without_rewriting(demo: Path, rows: list[ManifestRow]) -> None:
    files = [demo, demo.parent / "demo.json", *(Path(r.path) for r in rows)]
    before = [f.stat().st_mtime_ns for f in files]
    again = generate_demo(demo.parent, num_sources=SOURCES, num_frames=FRAMES, size=SIZE, seed=0)
    assert again == demo
    assert [f.stat().st_mtime_ns for f in files] == before


def test_other_parameters_or_missing_files_regenerate(tmp_path: Path) -> None:
    manifest = _tiny(tmp_path, generators=("lightweight",))
    assert {r.quality for r in read_manifest(manifest)} == {"crf0"}
    manifest = _tiny(tmp_path, generators=("lightweight",), qualities=(0, 23))
    assert {r.quality for r in read_manifest(manifest)} == {"crf0", "crf23"}
    lost = Path(read_manifest(manifest)[0].path)
    lost.unlink()
    _tiny(tmp_path, generators=("lightweight",), qualities=(0, 23))
    assert lost.is_file()


def test_interrupted_generation_leaves_no_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic_dataset, "write_video", crash)
    with pytest.raises(KeyboardInterrupt):
        _tiny(tmp_path, generators=("dfaker",))
    assert not (tmp_path / "manifest.csv").exists()


# --------------------------------------------------------------------- unseen, command


def test_main_renders_the_unseen_generator(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [str(tmp_path), "--sources", "3", "--frames", "4", "--size", "32", "--qualities", "0"]
    assert synthetic.main([*argv, "--generators", "faceswap", "unseen"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "manifest.csv")
    rows = read_manifest(tmp_path / "manifest.csv")
    assert {r.label for r in rows} == {"faceswap", "unseen"}
    assert all(decode_all(r.path).shape == (4, 32, 32, 3) for r in rows)


def test_instances_draw_other_weights_and_split_apart(tmp_path: Path) -> None:
    same, other = build_generator("iae", 2), build_generator("iae", 3)
    assert np.array_equal(same.final.weight.numpy(), build_generator("iae", 2).final.weight)
    assert not np.array_equal(same.final.weight.numpy(), other.final.weight.numpy())
    assert repr(same) == repr(other)  # the same layers
    rows = read_manifest(_tiny(tmp_path, num_sources=10, instances=5, generators=("iae", "dfl")))
    assert {r.instance for r in rows} == {f"i{k}" for k in range(5)}
    for r in rows:
        assert r.instance == f"i{int(r.source_id[3:]) % 5}"
    splits = {i: {r.split for r in rows if r.instance == i} for i in {r.instance for r in rows}}
    assert all(len(s) == 1 for s in splits.values())
    assert sorted(next(iter(s)) for s in splits.values()) == [
        "test",
        "train",
        "train",
        "train",
        "val",
    ]


def test_real_is_the_unswapped_source(tmp_path: Path) -> None:
    rows = read_manifest(_tiny(tmp_path, generators=("real", "dfl"), num_sources=1))
    source = draw_source(np.random.default_rng(np.random.SeedSequence(0).spawn(1)[0]), 4)
    frames = source.render(4, 32)
    real, fake = (decode_all(r.path) for r in sorted(rows, key=lambda r: r.label != "real"))
    assert [r.label for r in rows] == ["real", "dfl"]
    # crf 0 keeps the source up to 4:2:0 chroma; the fake differs from it more
    assert psnr(real, frames) > 30 and psnr(real, frames) > psnr(fake, frames) + 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 50},
        {"num_sources": 0},
        {"generators": ("stylegan",)},
        {"qualities": ()},
        {"instances": 4},
    ],
)
def test_bad_parameters_are_refused(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _tiny(tmp_path, **kwargs)


def test_main_reports_bad_parameters(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert synthetic.main([str(tmp_path), "--size", "50"]) == 2
    assert "multiple of 8" in capsys.readouterr().err
    assert not (tmp_path / "manifest.csv").exists()
