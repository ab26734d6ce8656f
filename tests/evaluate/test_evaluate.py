"""``python -m attribnet.evaluate`` end to end on a tiny face cache (CPU, seconds): the run
report and its counts, determinism, open set, the cross-quality table against single
runs and its per-cell confusion matrices, training through the cross-quality and ablation
commands (and what the report says was trained), and user errors."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from attribnet.cli.evaluate import main
from attribnet.cli.index import main as index_main
from attribnet.config import LossConfig, Recipe, to_dict
from attribnet.data.cache import FaceCache
from attribnet.data.codec import write_video
from attribnet.data.manifest import ManifestRow, read_manifest, write_manifest
from attribnet.data.preprocess import run_preprocess
from attribnet.evaluate import LoadedModel, class_scores, compare_recipe, quality_variants
from attribnet.index import GeneratorIndex
from attribnet.models import build_model
from attribnet.openset.scores import CHOICE_SCORES, SCORE_NAMES
from tests.builders import REPO, texture_video, write_checkpoint
from tests.builders import tiny_recipe as _tiny_recipe

NAMES = ["alpha", "beta", "real"]
QUALITIES = ["crf0", "crf23"]
SPLITS = ["train", "train", "val", "val", "test", "test"]
FRAMES, SIZE, T, DIM, CLIPS = 12, 32, 4, 8, 3  # 3 full strides of T: 3 clips
TEST_VIDEOS = len(NAMES) * SPLITS.count("test") * len(QUALITIES)
ABLATIONS = REPO / "recipes" / "ablations"


def tiny_recipe(cache: Path, manifest: Path | str = "", name: str = "tiny") -> Recipe:
    return _tiny_recipe(
        cache, manifest, num_frames=T, size=SIZE, embedding_dim=DIM, name=name,
        batch_size=8, build_index=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A face cache (3 classes x 6 sources x 2 qualities, written straight into the cache),
    a manifest of those rows, two untrained checkpoints, and an unknown-generator manifest
    of real mp4 files."""
    root = tmp_path_factory.mktemp("evaluate")
    cache_dir = root / "cache"
    run_preprocess(
        [], cache_dir, detector="none", size=SIZE, max_frames=16, progress=False,
        face_check=False,  # texture videos, as tiny_recipe says
    )  # fmt: skip
    cache, rng, rows = FaceCache(cache_dir), np.random.default_rng(0), []
    for label, name in enumerate(NAMES):
        for quality in QUALITIES:
            for i, split in enumerate(SPLITS):
                row = ManifestRow(
                    str(root / quality / name / f"s{i}.mp4"), name, quality, f"s{i}", split
                )
                cache.add(row, texture_video(rng, label, FRAMES, SIZE))
                rows.append(row)
    write_manifest(rows, root / "manifest.csv")
    unknown = []
    for quality in QUALITIES:
        for i in range(2):
            path = root / "unseen" / quality / f"u{i}.mp4"
            write_video(path, texture_video(rng, 4, FRAMES, SIZE))
            unknown.append(ManifestRow(str(path), "unseen", quality, f"u{i}", "test"))
    write_manifest(unknown, root / "unknown.csv")
    recipe = tiny_recipe(cache_dir)
    return {
        "root": root,
        "cache": cache_dir,
        "manifest": root / "manifest.csv",
        "unknown": root / "unknown.csv",
        "ckpt0": write_checkpoint(root / "run0" / "best.pt", recipe, NAMES, seed=0),
        "ckpt1": write_checkpoint(root / "run1" / "best.pt", recipe, NAMES, seed=1),
    }


def evaluate_run(world: dict[str, Path], out: Path, *extra: str) -> dict:
    argv = [
        "run",
        "--checkpoint",
        str(world["ckpt0"]),
        "--out",
        str(out),
        "--neighbours",
        "5",
        *extra,
    ]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def full_run(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full")
    evaluate_run(world, out, "--unknown-manifest", str(world["unknown"]))
    return out


@pytest.mark.slow
def test_run_writes_report_plots_and_counts(full_run: Path) -> None:
    metrics = json.loads((full_run / "metrics.json").read_text())
    closed = metrics["closed_set"]
    assert metrics["data"]["clips"] == TEST_VIDEOS * CLIPS
    assert np.sum(closed["clip"]["confusion_matrix"]) == TEST_VIDEOS * CLIPS
    assert np.sum(closed["video"]["confusion_matrix"]) == TEST_VIDEOS
    assert sum(closed["video"]["support"].values()) == TEST_VIDEOS
    assert list(closed["per_quality"]) == QUALITIES
    for q in QUALITIES:
        assert np.sum(closed["per_quality"][q]["video"]["confusion_matrix"]) == TEST_VIDEOS // 2
    assert set(closed["clip"]["per_class_accuracy"]) == set(NAMES)
    assert 0.0 <= closed["video"]["accuracy"] <= 1.0

    for stem in ("confusion_clip", "confusion_video", "confusion_video_crf0"):
        assert (full_run / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with open(full_run / f"{stem}.csv") as f:
            table = list(csv.reader(f))
        assert table[0] == ["true\\predicted", *NAMES] and len(table) == 1 + len(NAMES)
    assert (full_run / "tsne.png").is_file()

    md = (full_run / "report.md").read_text()
    assert "](confusion_clip.png)" in md and "](tsne.png)" in md and "Open set" in md
    for name in NAMES:
        assert f"| {name} |" in md
    baseline = metrics["baseline"]  # fit on every training video, tested on the same videos
    assert baseline["train_videos"] == len(NAMES) * 2 * len(QUALITIES)
    assert sum(baseline["tests"]["test"]["support"].values()) == TEST_VIDEOS
    assert "Baseline on the same videos (DFT-spectrum logistic regression" in md

    emb = metrics["embedding"]
    assert emb["fit_on"] == "val" and set(emb["clip"]) >= {"knn", "logreg", "linear_svm"}
    assert emb["clip"]["knn_k"] == 5
    det = metrics["detection"]
    assert det["target_fpr"] == 0.1 and 0.0 <= det["video"]["test_auc"] <= 1.0


@pytest.mark.slow
def test_open_set_reports_auroc(full_run: Path) -> None:
    ops = json.loads((full_run / "metrics.json").read_text())["open_set"]
    assert ops["primary"] == "prototype_cosine" and ops["unknown_labels"] == ["unseen"]
    assert ops["known_videos"] == TEST_VIDEOS and ops["unknown_videos"] == 4
    assert ops["scores"] == list(SCORE_NAMES)  # every candidate, the reference ones included
    for score in ops["scores"]:
        assert 0.0 <= ops[score]["auroc"] <= 1.0
        assert 0.0 <= ops[score]["tnr_at_95tpr"] <= 1.0
        assert 0.0 <= ops[score]["oscr"] <= ops[score]["known_accuracy"] + 1e-9
    assert "index_choice" not in ops  # no index: nothing was chosen


@pytest.mark.slow
def test_same_command_same_metrics(world: dict[str, Path], full_run: Path, tmp_path: Path) -> None:
    evaluate_run(world, tmp_path, "--unknown-manifest", str(world["unknown"]))
    assert (tmp_path / "metrics.json").read_text() == (full_run / "metrics.json").read_text()


@pytest.mark.slow
def test_cross_quality_diagonal_matches_single_runs(world: dict[str, Path], tmp_path: Path) -> None:
    given = f"crf0={world['ckpt0']},crf23={world['ckpt1']}"
    out = tmp_path / "cq"
    assert main(["cross-quality", "--checkpoints", given, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_rows"] == QUALITIES and metrics["test_qualities"] == QUALITIES
    assert np.shape(metrics["matrix"]["video"]) == (2, 2)
    for i, (q, ckpt) in enumerate(zip(QUALITIES, ("ckpt0", "ckpt1"), strict=True)):
        single = tmp_path / f"single_{q}"
        argv = ["run", "--checkpoint", str(world[ckpt]), "--qualities", q, "--no-tsne"]
        assert main([*argv, "--out", str(single)]) == 0
        closed = json.loads((single / "metrics.json").read_text())["closed_set"]
        assert metrics["matrix"]["video"][i][i] == closed["video"]["accuracy"]
        assert metrics["matrix"]["clip"][i][i] == closed["clip"]["accuracy"]
        assert (
            metrics["cells"][q][q]["video"]["confusion_matrix"]
            == (closed["video"]["confusion_matrix"])
        )
    assert (out / "cross_quality.png").is_file() and (out / "cross_quality.csv").is_file()
    md = (out / "report.md").read_text()
    assert "| crf0 |" in md and "No training: the models were given with `--checkpoints`" in md
    assert metrics["training"]["counts"] == {"trained": 0, "resumed": 0, "reused": 0}
    # the baseline row: fit on the rows' training videos (both checkpoints' recipes train
    # on every quality), tested on the same videos as the models
    baseline = metrics["baseline"]
    assert np.shape(baseline["matrix"]["video"]) == (2, 2)
    for i, row in enumerate(QUALITIES):
        assert baseline["rows"][row]["train_videos"] == len(NAMES) * 2 * len(QUALITIES)
        for j, q in enumerate(QUALITIES):
            test = baseline["rows"][row]["tests"][q]
            assert sum(test["support"].values()) == TEST_VIDEOS // len(QUALITIES)
            assert baseline["matrix"]["video"][i][j] == test["accuracy"]
    assert "## Baseline: DFT-spectrum logistic regression, video-level accuracy" in md


@pytest.mark.slow
def test_cross_quality_drops_pair_the_same_videos(world: dict[str, Path], tmp_path: Path) -> None:
    given = f"crf0={world['ckpt0']},crf23={world['ckpt1']}"
    assert main(["cross-quality", "--checkpoints", given, "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    per_quality = TEST_VIDEOS // len(QUALITIES)
    for i, row in enumerate(QUALITIES):
        for j, test in enumerate(QUALITIES):
            videos = metrics["cells"][row][test]["videos"]
            assert len(videos["key"]) == len(set(videos["key"])) == per_quality
            assert np.mean(videos["correct"]) == pytest.approx(metrics["matrix"]["video"][i][j])
            assert set(videos["group"]) == {"s4", "s5"}  # the test sources
        other = QUALITIES[1 - i]
        keys = [metrics["cells"][row][q]["videos"]["key"] for q in QUALITIES]
        assert keys[0] == keys[1]  # one video at both qualities: the same key
        drop = metrics["drops"][row][other]
        diagonal, off = metrics["matrix"]["video"][i][i], metrics["matrix"]["video"][i][1 - i]
        assert drop["drop"] == pytest.approx(diagonal - off)
        assert drop["low"] <= drop["drop"] <= drop["high"]
        assert (drop["videos"], drop["groups"]) == (per_quality, 2)
        assert row not in metrics["drops"][row]
    md = (tmp_path / "report.md").read_text()
    assert "## Drop from the training quality" in md and "(6 videos in 2 groups)" in md


@pytest.mark.slow
def test_cross_quality_writes_a_confusion_matrix_per_cell(
    world: dict[str, Path], tmp_path: Path
) -> None:
    given = f"crf0={world['ckpt0']},crf23={world['ckpt1']}"
    assert main(["cross-quality", "--checkpoints", given, "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    files, md = metrics["files"]["confusion"], (tmp_path / "report.md").read_text()
    assert "## Confusion matrices per cell (video level)" in md
    for train in QUALITIES:
        for test in QUALITIES:
            png, csv_name = files[train][test]["png"], files[train][test]["csv"]
            assert (png, csv_name) == (
                f"confusion_{train}_to_{test}.png",
                f"confusion_{train}_to_{test}.csv",
            )
            assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"[PNG]({png})" in md and f"[CSV]({csv_name})" in md
            with open(tmp_path / csv_name) as f:
                header, *rows = list(csv.reader(f))
            assert header == ["true\\predicted", *NAMES]
            assert [r[0] for r in rows] == NAMES
            counts = [[int(c) for c in r[1:]] for r in rows]
            assert counts == metrics["cells"][train][test]["video"]["confusion_matrix"]
            assert np.sum(counts) == TEST_VIDEOS // len(QUALITIES)


@pytest.mark.slow
def test_manifest_rows_decide_the_split(world: dict[str, Path], tmp_path: Path) -> None:
    """With --manifest, its rows (here: every video in test) override the cached splits;
    without validation videos the validation-fitted parts are skipped, not guessed."""
    rows = [replace(r, split="test") for r in read_manifest(world["manifest"])]
    write_manifest(rows, tmp_path / "all_test.csv")
    argv = ["--manifest", str(tmp_path / "all_test.csv"), "--qualities", "crf0", "--no-tsne"]
    metrics = evaluate_run(world, tmp_path / "out", *argv)
    assert metrics["data"]["videos"] == len(NAMES) * len(SPLITS)
    assert "skipped" in metrics["embedding"] and "skipped" in metrics["detection"]
    assert "skipped" in metrics["baseline"]  # no training videos to fit it on


def test_arcface_only_model_predicts_by_nearest_class_centre() -> None:
    recipe = replace(
        tiny_recipe(Path("unused")), loss=LossConfig(ce_weight=0.0, arcface_weight=1.0)
    )
    centres = torch.randn(DIM, len(NAMES))
    model = build_model(recipe.model, len(NAMES))
    state = {"loss": {"arcface.W": centres}}
    loaded = LoadedModel(Path("x"), model, recipe, NAMES, state, torch.device("cpu"))
    emb = np.random.default_rng(0).normal(size=(20, DIM)).astype(np.float32)
    scores = class_scores(loaded, {"logits": np.zeros((20, len(NAMES))), "embedding": emb})
    cosine = torch.nn.functional.normalize(torch.from_numpy(emb), dim=1) @ (
        torch.nn.functional.normalize(centres, dim=0)
    )
    np.testing.assert_allclose(scores, recipe.loss.arcface_scale * cosine.numpy(), atol=1e-4)


@pytest.fixture(scope="module")
def index_dir(world: dict[str, Path]) -> Path:
    out = world["root"] / "index0"
    assert index_main(["build", "--checkpoint", str(world["ckpt0"]), "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_run_with_the_generator_index(
    world: dict[str, Path], index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = ["--index", str(index_dir), "--unknown-manifest", str(world["unknown"])]
    metrics = evaluate_run(world, tmp_path, *opts, "--qualities", "crf23", "--no-tsne")
    index = metrics["embedding"]["index"]
    assert 0.0 <= index["knn_accuracy"] <= 1.0 and 0.0 <= index["prototype_accuracy"] <= 1.0
    ops = metrics["open_set"]
    assert "index" in ops["prototypes_from"]
    assert ops["unknown_videos"] == 2 and metrics["data"]["qualities"] == ["crf23"]
    # The primary score is the one the index chose at build time, reported with the
    # validation AUROCs it was chosen on, next to every candidate's test figures.
    built = GeneratorIndex.load(index_dir)
    assert ops["primary"] == built.open_set.score and ops["scores"] == list(SCORE_NAMES)
    assert ops["index_choice"]["chosen"] == built.open_set.score
    assert ops["index_choice"]["split"] == "val"
    assert set(ops["index_choice"]["mean_auroc"]) == set(CHOICE_SCORES)
    assert "**" + built.open_set.score + "**" in (tmp_path / "report.md").read_text()

    other = ["run", "--checkpoint", str(world["ckpt1"]), "--index", str(index_dir)]
    assert main([*other, "--out", str(tmp_path / "other")]) == 2
    assert "index was built from checkpoint" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("path", sorted(ABLATIONS.glob("*.yaml")), ids=lambda p: p.stem)
def test_demo_variant_keeps_the_ablation(path: Path) -> None:
    full = compare_recipe(str(path), [], None)
    demo = compare_recipe(str(path), ["train.epochs=2"], "")
    assert demo.name == f"{full.name}_demo" and demo.data.demo and demo.train.epochs == 2
    assert demo.model.backbone == "resnet10" and demo.model.num_frames == demo.data.num_frames
    for key in ("sam", "channel_attention", "fusion", "embedding_dim"):
        assert getattr(demo.model, key) == getattr(full.model, key)
    assert demo.loss == full.loss


TABLE4 = sorted((ABLATIONS.parent / "table4").glob("*.yaml"))


@pytest.mark.parametrize("path", TABLE4, ids=lambda p: p.stem)
def test_a_table4_demo_variant_keeps_its_backbone_and_preprocessing(path: Path) -> None:
    full = compare_recipe(str(path), [], None)
    demo = compare_recipe(str(path), [], "")
    assert demo.model.backbone == full.model.backbone != "resnet10"
    assert (demo.data.mean, demo.data.std) == (full.data.mean, full.data.std)
    assert demo.data.image_size == 64  # the demo's faces
    assert {full.model.sam, full.model.fusion} <= {"none", "mean"}


def test_quality_variants_per_quality_and_augmented(world: dict[str, Path]) -> None:
    base = tiny_recipe(world["cache"])
    per = quality_variants(base, QUALITIES, "per-quality")
    assert list(per) == QUALITIES and [r.name for r in per.values()] == ["tiny_crf0", "tiny_crf23"]
    assert all(r.data.train_qualities == r.data.eval_qualities == [q] for q, r in per.items())
    (aug,) = quality_variants(base, QUALITIES, "augmented").values()
    assert aug.name == "tiny_augmented" and aug.data.train_qualities == QUALITIES


def write_yaml_recipe(path: Path, recipe: Recipe, **model: object) -> Path:
    raw = to_dict(recipe)
    raw["model"].update(model)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_cross_quality_trains_then_reuses(world: dict[str, Path], tmp_path: Path) -> None:
    recipe = tiny_recipe(world["cache"], world["manifest"])
    path = write_yaml_recipe(tmp_path / "tiny.yaml", recipe)
    argv = ["cross-quality", "--recipe", str(path), "--qualities", ",".join(QUALITIES)]
    sets = ["--set", "train.epochs=1", "--set", f"train.out_dir={tmp_path / 'runs'}"]
    assert main([*argv, *sets, "--out", str(tmp_path / "cq")]) == 0
    bests = [tmp_path / "runs" / f"tiny_{q}" / "best.pt" for q in QUALITIES]
    stamps = [p.stat().st_mtime_ns for p in bests]
    trained = yaml.safe_load((bests[0].parent / "recipe.yaml").read_text())
    assert trained["data"]["train_qualities"] == ["crf0"]

    assert main([*argv, *sets, "--out", str(tmp_path / "again")]) == 0
    assert [p.stat().st_mtime_ns for p in bests] == stamps
    first = json.loads((tmp_path / "cq" / "metrics.json").read_text())
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert first["matrix"] == again["matrix"] and first["train_mode"] == "per-quality"

    assert first["training"]["counts"] == {"trained": 2, "resumed": 0, "reused": 0}
    assert again["training"]["counts"] == {"trained": 0, "resumed": 0, "reused": 2}
    assert first["training"]["overrides"] == sets[1::2]
    row = first["training"]["runs"]["crf0"]
    assert row["action"] == "trained" and row["run_dir"] == str(bests[0].parent)
    assert "data.train_qualities=[crf0]" in row["recipe_changes"]
    md = (tmp_path / "again" / "report.md").read_text()
    assert "2 training run(s) of recipe" in md and f"`{sets[1]}`" in md
    assert "Trained from scratch: 0, resumed: 0, reused (finished before, not retrained): 2" in md
    assert "| crf23 | " in md and "`data.train_qualities=[crf23]`" in md


@pytest.mark.slow
def test_cross_quality_reads_the_recipes_cache_not_the_reused_runs(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """Runs trained on a cache that was moved since are reused and tested on the cache the
    recipe names now (the old path is gone: reading it would fail)."""
    old, new = tmp_path / "cache_old", tmp_path / "cache_new"
    shutil.copytree(world["cache"], old)
    recipe = tiny_recipe(old, world["manifest"])
    path = write_yaml_recipe(tmp_path / "tiny.yaml", recipe)
    argv = ["cross-quality", "--recipe", str(path), "--qualities", ",".join(QUALITIES)]
    sets = ["--set", "train.epochs=1", "--set", f"train.out_dir={tmp_path / 'runs'}"]
    assert main([*argv, *sets, "--out", str(tmp_path / "first")]) == 0
    old.rename(new)
    moved = [*sets, "--set", f"data.cache={new}"]
    assert main([*argv, *moved, "--out", str(tmp_path / "moved")]) == 0
    first = json.loads((tmp_path / "first" / "metrics.json").read_text())
    again = json.loads((tmp_path / "moved" / "metrics.json").read_text())
    assert again["training"]["counts"]["reused"] == 2
    assert first["matrix"] == again["matrix"]


@pytest.mark.slow
def test_compare_table(world: dict[str, Path], tmp_path: Path) -> None:
    recipe = tiny_recipe(world["cache"], world["manifest"])
    plain = write_yaml_recipe(tmp_path / "plain.yaml", replace(recipe, name="plain"), sam="none")
    sam = write_yaml_recipe(tmp_path / "sam.yaml", replace(recipe, name="sam"), sam="last")
    sets = ["--set", "train.epochs=1", "--set", f"train.out_dir={tmp_path / 'runs'}"]
    out = tmp_path / "compare"
    assert main(["compare", "--recipes", str(plain), str(sam), *sets, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["name"] for r in metrics["recipes"]] == ["plain", "sam"]
    assert [r["model"]["sam"] for r in metrics["recipes"]] == ["none", "last"]
    for entry in metrics["recipes"]:
        assert sum(entry["video"]["support"].values()) == TEST_VIDEOS
    assert sum(metrics["baseline"]["video"]["support"].values()) == TEST_VIDEOS
    assert metrics["baseline"]["train_videos"] == len(NAMES) * 2 * len(QUALITIES)
    md = (out / "report.md").read_text()
    assert "| plain | resnet10 | none |" in md and "| sam | resnet10 | last |" in md
    assert "| DFT-spectrum logistic regression | - | - | - | - |" in md
    assert (out / "compare.csv").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--checkpoint", "missing/best.pt"], "checkpoint not found"),
        (["run", "--checkpoint", "{ckpt0}", "--qualities", "crf99"], "no test videos of quality"),
        (["cross-quality", "--checkpoints", "crf0"], "--checkpoints expects row=path"),
        (["run", "--checkpoint", "{ckpt0}", "--clips-per-video", "0"], "--clips-per-video"),
    ],
)
def test_user_errors_are_one_line(
    world: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    argv = [a.format(ckpt0=world["ckpt0"]) for a in argv]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert not any("Traceback" in line for line in lines)
