"""benchmarks/bench_realistic.py and its protocol: the identity-disjoint folds never put an
identity of a test training into a training or validation video, the pairs inside a group
are tested once each, the instance curve takes distinct pairs first, and the tables pool
folds with intervals over test trainings. No training: the metrics are made up here."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from attribnet.data.manifest import ManifestRow, write_manifest
from tests.builders import REPO

BENCHMARKS = REPO / "benchmarks"
IDS = [f"id{i}" for i in range(9)]
CLASSES = ["faceswap", "dfl"]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_realistic
        from realistic import protocols

        yield bench_realistic, protocols
    finally:
        sys.path.remove(str(BENCHMARKS))


def dataset_rows() -> list[ManifestRow]:
    """Two architectures x 36 pairs x 2 replicas, two videos each (one per side), at crf0,
    plus each identity's real segment: the layout build_dataset.py writes."""
    rows = []
    for (a, b), rep, label in itertools.product(itertools.combinations(IDS, 2), (0, 1), CLASSES):
        inst = f"{a}+{b}" + (f"@{rep}" if rep else "")
        for target in (a, b):
            rows.append(ManifestRow(f"/v/{label}/{target}_seg0-to-{inst}.mp4", label, "crf0",
                                    f"{target}_seg0", instance=inst))  # fmt: skip
    rows += [ManifestRow(f"/v/real/{i}_seg0.mp4", "real", "crf0", f"{i}_seg0", instance=i)
             for i in IDS]  # fmt: skip
    return rows


def test_folds_keep_test_identities_out_of_training_and_validation(bench):
    _, protocols = bench
    rows = dataset_rows()
    groups = protocols.identity_groups(IDS, 3, seed=0)
    assert sorted(sum(groups, [])) == IDS and all(len(g) == 3 for g in groups)
    tested = set()
    for fold in range(3):
        split = protocols.fold_split(rows, groups, fold)
        seen = {i for r in split if r.split in ("train", "val")
                for i in protocols.instance_identities(r.instance)}  # fmt: skip
        test_ids = {i for r in split if r.split == "test"
                    for i in protocols.instance_identities(r.instance)}  # fmt: skip
        assert test_ids == set(groups[fold]) and not seen & test_ids
        trainings = {r.split: set() for r in split}
        for r in split:
            trainings[r.split].add((r.label, r.instance))
        assert not trainings["test"] & (trainings["train"] | trainings["val"])
        assert not trainings["val"] & trainings["train"]
        # 3 test pairs and 3 validation pairs of 2 replicas; the 12 other pairs train
        fakes = {s: {i for lb, i in t if lb != "real"} for s, t in trainings.items()}
        assert (len(fakes["test"]), len(fakes["val"]), len(fakes["train"])) == (6, 6, 24)
        tested |= fakes["test"]
    assert len(tested) == 18  # the 9 pairs inside a group, 2 replicas each, tested once


def test_the_instance_curve_takes_distinct_pairs_before_replicas(bench):
    _, protocols = bench
    split = protocols.fold_split(dataset_rows(), protocols.identity_groups(IDS, 3), 0)
    for k in (1, 4, 12, 13, 24):
        cut = protocols.first_instances(split, k)
        train = {r.instance for r in cut if r.split == "train" and r.label == "dfl"}
        assert len(train) == k
        assert sum("@" in i for i in train) == max(0, k - 12)
        assert [r for r in cut if r.split != "train"] == [r for r in split if r.split != "train"]


def test_epochs_give_the_same_steps_whatever_the_training_videos(bench, tmp_path):
    from realistic import runs

    rows = [ManifestRow(f"/v/{i}.mp4", "faceswap", "crf0", str(i), "train") for i in range(40)]
    rows += [ManifestRow(f"/v/x{i}.mp4", "faceswap", "crf10", str(i), "train") for i in range(40)]
    path = tmp_path / "m.csv"
    write_manifest(rows, path)
    recipe = runs.RECIPES / "srm.yaml"  # batch 10, trains on crf0: 4 steps an epoch
    assert runs.epochs_for(recipe, path, 100, []) == 25
    both = runs.RECIPES / "srm_all_qualities.yaml"  # 80 videos: 8 steps an epoch
    assert runs.epochs_for(both, path, 100, []) == 12


def metrics(per_training: dict[str, list[bool]], baseline_right: bool) -> dict:
    """A cross-quality metrics.json with one row; every quality has the same videos."""
    labels = [k.split("/")[0] for k, v in per_training.items() for _ in v]
    insts = [k.split("/")[1] for k, v in per_training.items() for _ in v]
    correct = [c for v in per_training.values() for c in v]
    videos = {"label": labels, "instance": insts, "group": insts, "correct": correct}
    base = {**videos, "correct": [baseline_right] * len(correct)}
    qualities = ("crf0", "crf10", "crf23")
    return {
        "train_rows": ["crf0"],
        "cells": {"crf0": {q: {"videos": videos} for q in qualities}},
        "baseline": {"rows": {"crf0": {"tests": {q: {"videos": base} for q in qualities}}}},
    }


def test_summary_pools_folds_with_an_interval_over_trainings(bench):
    module, _ = bench
    fold0 = metrics({"dfl/p1": [True, True], "dfl/p2": [False, False],
                     "faceswap/p1": [True, True]}, False)  # fmt: skip
    fold1 = metrics({"dfl/p3": [True, True], "faceswap/p4": [True, False],
                     "faceswap/p5": [True, True]}, True)  # fmt: skip
    s = module.summary([fold0, fold1], "crf23", False, "folds")
    assert s["accuracy"] == pytest.approx(9 / 12) and s["groups"] == 6
    replicas = metrics({"dfl/p1": [True], "dfl/p1@1": [False], "dfl/p2": [True]}, True)
    by_replicas = module.summary([replicas], "crf0", False, "folds")
    assert by_replicas["groups"] == 2  # p1 with p1@1
    assert by_replicas["per_pair"] == {"p1": 0.5, "p2": 1.0}
    assert s["per_run"] == [pytest.approx(4 / 6), pytest.approx(5 / 6)]
    assert s["low"] < s["accuracy"] < s["high"]
    base = module.summary([fold0, fold1], "crf0", True, "folds")
    assert base["accuracy"] == 0.5 and base["per_run"] == [0.0, 1.0]
    records = {module.BASELINE: {q: base for q in module.QUALITIES},
               "x": {q: s for q in module.QUALITIES}}  # fmt: skip
    lines = module.goals(records)
    assert len(lines) == 3 and all("NO" in line for line in lines)
    assert "+25.0 points over the baseline" in lines[0]
    table = module.protocol_table(records, "folds")
    assert "0.750 [" in table and "0.67 0.83" in table
    assert s["per_pair"] == {"p1": 1.0, "p2": 0.0, "p3": 1.0, "p4": 0.5, "p5": 1.0}
    by_pair = module.pair_table(records, "crf23").splitlines()
    assert by_pair[0].startswith("| test pair (crf23) | DFT baseline | x |")
    assert "| p4 | 1.00 | 0.50 |" in by_pair  # the baseline got fold 1 right
    assert "per_pair" not in module.summary([fold0], "crf0", False, "paper")
    assert np.isfinite(s["low"])


def test_gaps_to_the_best_are_paired_over_trainings(bench):
    module, _ = bench
    trainings = [f"{c}/p{i}" for c in CLASSES for i in range(4)]
    best = [metrics({t: [True, True] for t in trainings}, False)]
    # right on one training per class only: 6 of 8 trainings wrong, -0.75 at every quality
    worse = [metrics({t: [t.endswith("p3")] * 2 for t in trainings}, False)]
    gaps = module.gaps_to({"best": best, "worse": worse, "same": best}, "best")
    assert gaps["worse"]["drop"] == pytest.approx(-0.75)
    assert gaps["worse"]["low"] < -0.75 < gaps["worse"]["high"] < 0  # a real gap: excludes 0
    assert gaps["same"]["drop"] == 0 and gaps["same"]["high"] == 0
    assert gaps["worse"]["groups"] == 8
    other_videos = [metrics({"dfl/p9": [True, True]}, False)]
    with pytest.raises(ValueError, match="not evaluated on the same videos"):
        module.gaps_to({"best": best, "x": other_videos}, "best")


def test_a_fine_tune_recipe_trains_its_pretext_stage_first_per_fold(bench, tmp_path, monkeypatch):
    from realistic import runs

    rows = [ManifestRow(f"/v/{i}.mp4", "faceswap", "crf0", str(i), "train") for i in range(40)]
    manifest = tmp_path / "manifest_fold1.csv"
    write_manifest(rows, manifest)
    trained = []
    monkeypatch.setattr(runs, "train_main", lambda argv: trained.append(argv) or 0)
    args = argparse.Namespace(work=tmp_path, quick=True, overrides=[], steps=runs.DEFAULT_STEPS)
    name, sets = runs.cell_sets(args, "srm_pretext", manifest, "fold1", 0, "cpu")
    assert name == "realistic_srm_pretext_fold1"
    (argv,) = trained
    assert argv[0].endswith("pretext_transforms.yaml") and "train.if_exists=resume" in argv
    assert "name=realistic_pretext_transforms_fold1" in argv
    assert f"data.manifest={manifest.resolve()}" in argv
    best = tmp_path.resolve() / "runs/realistic_pretext_transforms_fold1/best.pt"
    assert f"model.weights={best}" in sets
    trained.clear()
    runs.cell_sets(args, "srm", manifest, "fold1", 0, "cpu")
    assert not trained  # a recipe without a first stage trains nothing more
    # --steps 3000 neither reuses nor is reused as the default run, nor its first stage's
    args.steps = 2 * runs.DEFAULT_STEPS
    name, _ = runs.cell_sets(args, "srm_pretext", manifest, "fold1", 1, "cpu")
    assert name == "realistic_srm_pretext_fold1_s1_steps3000"
    assert "name=realistic_pretext_transforms_fold1_s1_steps3000" in trained[0]
    assert bench[0].parse_args(["--faces", "f"]).steps == runs.DEFAULT_STEPS


def test_the_synthetic_decoder_stage_trains_on_the_folds_training_identities(
    bench, tmp_path, monkeypatch
):
    from realistic import runs

    rows = [ManifestRow(f"/v/{i}.mp4", "faceswap", "crf0", str(i), "train") for i in range(40)]
    manifest = tmp_path / "manifest_fold1.csv"
    write_manifest(rows, manifest)
    groups = [IDS[:3], IDS[3:6], IDS[6:]]
    (tmp_path / "folds.json").write_text(json.dumps({"groups": groups}))
    built, trained = [], []

    def build(args):  # what build_dataset would write: its manifests
        out = Path(args.out)
        write_manifest(rows, out / "manifest_instance.csv")
        built.append(args)
        return out / "manifest.csv"

    monkeypatch.setattr(runs, "build", build)
    monkeypatch.setattr(runs, "train_main", lambda argv: trained.append(argv) or 0)
    args = argparse.Namespace(work=tmp_path, quick=True, overrides=[], steps=runs.DEFAULT_STEPS,
                              faces=tmp_path / "faces", jobs=1)  # fmt: skip
    name, sets = runs.cell_sets(args, "srm_synth", manifest, "fold1", 0, "cpu")
    (b,) = built
    assert sorted(b.identities) == IDS[:3] + IDS[6:]  # none of the test group (fold 1)
    assert b.pairs == 15 and b.qualities == [0] and b.generators == list(runs.SYNTHETIC)
    assert Path(b.out) == tmp_path / "dataset_synth_quick_fold1"
    (argv,) = trained
    assert argv[0].endswith("synth_decoders.yaml") and "name=realistic_synth_decoders_fold1" in argv
    synth = (tmp_path / "dataset_synth_quick_fold1/manifest_instance.csv").resolve()
    assert f"data.manifest={synth}" in argv and f"data.manifest={manifest.resolve()}" in sets
    best = tmp_path.resolve() / "runs/realistic_synth_decoders_fold1/best.pt"
    assert f"model.weights={best}" in sets


def test_a_build_with_replicas_has_its_own_fold_manifests(bench, tmp_path):
    from realistic import runs

    write_manifest(dataset_rows(), tmp_path / "manifest.csv")
    args = argparse.Namespace(folds=3, run_folds=[0, 2])
    one = runs.protocol_manifests(tmp_path, args)["folds"]
    assert [m.name for m in one] == ["manifest_fold0.csv", "manifest_fold2.csv"]
    (tmp_path / "build.json").write_text(json.dumps({"settings": {"replicas": 2}}))
    two = runs.protocol_manifests(tmp_path, args)["folds"]
    assert [m.name for m in two] == ["manifest_fold0_r2.csv", "manifest_fold2_r2.csv"]
    assert all(m.is_file() for m in one + two) and runs.fold_of(two[1]) == 2
