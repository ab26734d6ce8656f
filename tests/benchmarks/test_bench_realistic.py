"""benchmarks/bench_realistic.py's bookkeeping: run names per seed, per-cell means and
standard deviations over seeds, the goals judged on the means, the drop intervals and
whether they settle the drop goal, and the results file. No training: the cross-quality
metrics are made up here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from tests.builders import REPO

BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_realistic

        yield bench_realistic
    finally:
        sys.path.remove(str(BENCHMARKS))


Q = ("crf0", "crf10", "crf23")


def metrics(video: list[list[float]], support: int = 10) -> dict:
    """A cross-quality metrics.json as ``bench_realistic`` reads it: per cell, the first
    ``accuracy * support`` of the same ``support`` test videos (two per source) are right."""
    per_class = {"a": support // 2, "b": support - support // 2}

    def videos(acc: float) -> dict:
        right = round(acc * support)
        return {
            "key": [f"a/s{i // 2}/v{i}.mp4" for i in range(support)],
            "group": [f"s{i // 2}" for i in range(support)],
            "correct": [i < right for i in range(support)],
        }

    return {
        "train_rows": list(Q),
        "test_qualities": list(Q),
        "matrix": {"video": video, "clip": video},
        "cells": {
            r: {q: {"video": {"support": per_class}, "videos": videos(video[i][j])}
                for j, q in enumerate(Q)}
            for i, r in enumerate(Q)
        },
    }  # fmt: skip


FLAT = [[0.9, 0.9, 0.9], [0.9, 0.9, 0.9], [0.9, 0.9, 0.9]]
DROP = [[0.9, 0.9, 0.9], [0.9, 1.0, 0.8], [0.9, 0.9, 0.9]]  # crf10 -> crf23: 20 points


def test_mean_and_sd_over_seeds(bench):
    a, b = bench.matrix(metrics(FLAT)), bench.matrix(metrics(DROP))
    mean, sd = bench.mean_matrix([a, b]), bench.sd_matrix([a, b])
    assert mean[("crf10", "crf23")] == pytest.approx(0.85)
    assert mean[("crf10", "crf10")] == pytest.approx(0.95)
    assert sd[("crf10", "crf23")] == pytest.approx(0.1 / 2**0.5)  # sample sd of 0.9, 0.8
    assert sd[("crf0", "crf0")] == pytest.approx(0.0)
    assert set(bench.sd_matrix([a]).values()) == {0.0}


def test_worst_drop_is_the_largest_fall_below_a_rows_diagonal(bench):
    drop, cell = bench.worst_drop(bench.matrix(metrics(DROP)))
    assert drop == pytest.approx(0.2)
    assert cell == ("crf10", "crf23")


def test_seed_zero_keeps_the_one_seed_run_names(tmp_path, bench):
    args = argparse.Namespace(work=tmp_path, quick=True, overrides=[])
    manifest = tmp_path / "m.csv"
    first = bench.overrides_for(args, "quick", "main", manifest, "cpu", seed=0)
    third = bench.overrides_for(args, "quick", "main", manifest, "cpu", seed=2)
    assert "name=realistic_main_quick" in first and "train.seed=0" in first
    assert "name=realistic_main_quick_s2" in third and "train.seed=2" in third


def test_zero_seeds_is_refused(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(["--faces", "f", "--work", "w", "--seeds", "0"])
    assert exc.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def report_args(tmp_path: Path, seeds: int, recipes: list[str]) -> argparse.Namespace:
    data = tmp_path / "dataset_quick"
    data.mkdir(exist_ok=True)
    build = {"videos": 6, "seconds": 1.0, "settings": {}, "pairs": [["a", "b"]] * 5}
    (data / "build.json").write_text(json.dumps(build))
    return argparse.Namespace(
        work=tmp_path, quick=True, overrides=[], seeds=seeds, recipes=recipes,
        protocols=["instance", "paper"], train_qualities=list(Q),
    )  # fmt: skip


def test_report_judges_the_goals_on_the_means(tmp_path, bench, capsys):
    args = report_args(tmp_path, 2, ["main", "DMA-STA"])
    main_runs = [metrics(FLAT), metrics(DROP)]  # mean drop 10 points: goal missed
    dmasta_runs = [metrics([[0.5] * 3] * 3), metrics([[0.5] * 3] * 3)]
    results = {"paper": {"main": main_runs, "DMA-STA": dmasta_runs}}
    manifest = tmp_path / "dataset_quick" / "manifest.csv"
    bench.report(args, "quick", manifest, 0.0, results, {"paper/main": 1.0})
    out = capsys.readouterr().out
    assert "0.850 ± 0.071" in out
    result = json.loads((tmp_path / "results_quick.json").read_text())
    paper = result["protocols"]["paper"]
    assert result["seeds"] == 2
    assert paper["test_videos_per_cell"] == 10
    assert paper["video_accuracy"]["main"]["crf10->crf23"] == pytest.approx(0.85)
    assert paper["video_accuracy_per_seed"]["main"][1]["crf10->crf23"] == pytest.approx(0.8)
    goals = result["goals"]
    drop_goal = next(ok for goal, ok in goals.items() if "below its row's diagonal" in goal)
    beats_goal = next(ok for goal, ok in goals.items() if "beats DMA-STA" in goal)
    assert drop_goal is False and beats_goal is True
    drop = paper["video_accuracy_drops"]["main"]["crf10"]["crf23"]
    assert drop["drop"] == pytest.approx(0.1)  # seeds: 0 and 20 points
    assert drop["low"] <= 0.1 <= drop["high"] and drop["groups"] == 5
    assert "crf10 -> crf23), 95% interval [" in out
    # 2 of 10 videos (one source) differ, in one seed of two: the interval reaches 0
    assert "settled by the intervals: not settled" in out
    # the table's columns are in a fixed order whatever --recipes said
    assert out.index("| DMA-STA") < out.index("| main")


def test_cross_instance_goals_compare_with_the_baseline(tmp_path, bench, capsys):
    args = report_args(tmp_path, 1, ["main"])
    run = metrics([[0.85, 0.7, 0.6], [0.0] * 3, [0.0] * 3], 20)
    run["train_rows"] = ["crf0"]
    run["matrix"] = {"video": [[0.85, 0.7, 0.6]], "clip": [[0.85, 0.7, 0.6]]}
    run["cells"] = {"crf0": run["cells"]["crf0"]}
    run["baseline"] = {"matrix": {"video": [[0.6, 0.55, 0.3]], "clip": [[0.6, 0.55, 0.3]]}}
    manifest = tmp_path / "dataset_quick" / "manifest.csv"
    bench.report(args, "quick", manifest, 0.0, {"instance": {"main": [run]}}, {})
    out = capsys.readouterr().out
    assert "### cross-instance protocol" in out
    assert "| crf0 | crf23 | 0.300 | 0.600 |" in out
    result = json.loads((tmp_path / "results_quick.json").read_text())
    xi = result["protocols"]["instance"]
    assert xi["baseline_video_accuracy"]["crf0->crf10"] == pytest.approx(0.55)
    goals = result["goals"]
    at_crf0 = next(ok for g, ok in goals.items() if "at least 0.80 at crf0" in g)
    margin = next(ok for g, ok in goals.items() if "beats the DFT baseline" in g)
    assert at_crf0 is True  # 0.85
    assert margin is False  # crf10: 0.70 - 0.55 = 15 points < 20
    assert "smallest margin +15.0 points" in out


def test_protocols_name_their_runs_apart(tmp_path, bench):
    args = argparse.Namespace(work=tmp_path, quick=True, overrides=[])
    manifest = tmp_path / "m.csv"
    paper = bench.overrides_for(args, "quick", "main", manifest, "cpu", 0, "paper")
    xi = bench.overrides_for(args, "quick", "main", manifest, "cpu", 1, "instance", ["x.y=1"])
    assert "name=realistic_main_quick" in paper
    assert "name=realistic_main_quick_xi_s1" in xi and "x.y=1" in xi


def test_unknown_choices_are_refused(bench, capsys):
    for flag in ("--recipes", "--protocols", "--train-qualities"):
        with pytest.raises(SystemExit) as exc:
            bench.parse_args(["--faces", "f", "--work", "w", flag, "nope"])
        assert exc.value.code == 2
        assert flag in capsys.readouterr().err


def drops(cells: dict[tuple[str, str], tuple[float, float]]) -> dict:
    """``quality_drops``-shaped drops from ``{(row, test): (low, high)}``."""
    out: dict = {}
    for (r, q), (low, high) in cells.items():
        out.setdefault(r, {})[q] = {"drop": (low + high) / 2, "low": low, "high": high}
    return out


def test_the_intervals_settle_the_drop_goal_only_when_they_decide_it(bench):
    assert bench.drop_verdict(drops({("crf0", "crf10"): (0.0, 0.04)})) == "met"
    assert bench.drop_verdict(drops({("crf0", "crf10"): (0.0, 0.05)})) == "met"
    both = {("crf0", "crf10"): (0.0, 0.04), ("crf0", "crf23"): (0.06, 0.2)}
    assert bench.drop_verdict(drops(both)) == "missed"
    assert bench.drop_verdict(drops({("crf0", "crf10"): (-0.02, 0.12)})) == "not settled"
    assert bench.drop_verdict({}) == "not settled"


def test_drop_table_marks_the_diagonal(bench):
    table = bench.drop_table(drops({("crf10", "crf23"): (0.0, 0.2)}))
    assert "| crf10 | - | - | 10.0 [0.0, 20.0] |" in table


def test_instance_curve_keeps_the_first_training_instances(tmp_path, bench):
    from attribnet.data.manifest import ManifestRow, read_manifest, write_manifest

    splits = {"p0": "train", "p1": "train", "p2": "train", "p3": "val", "p4": "test"}
    rows = [
        ManifestRow(str(tmp_path / f"{p}_{c}.mp4"), c, "crf0", f"{p}_s", s, p)
        for p, s in splits.items()
        for c in ("a", "b")
    ]
    write_manifest(rows, tmp_path / "manifest_instance.csv")
    try:
        assert bench.curve_protocols(tmp_path, [1, 2]) == ["instance1", "instance2"]
        one = read_manifest(tmp_path / bench.PROTOCOLS["instance1"][1])
        assert {r.instance for r in one if r.split == "train"} == {"p0"}
        assert {r.instance for r in one if r.split != "train"} == {"p3", "p4"}
        assert "1 of 3 training instances" in bench.PROTOCOLS["instance1"][0]
        acc = {"video_accuracy": {"main": {"crf0->crf0": 0.5}},
               "baseline_video_accuracy": {"crf0->crf0": 0.4}}  # fmt: skip
        full = {"video_accuracy": {"main": {"crf0->crf0": 0.7}},
                "baseline_video_accuracy": {"crf0->crf0": 0.6}}  # fmt: skip
        table = bench.curve_table({"instance": full, "instance1": acc}, tmp_path)
        assert "| 1 | 0.400 | 0.500 |" in table and "| 3 | 0.600 | 0.700 |" in table
        with pytest.raises(SystemExit):
            bench.curve_protocols(tmp_path, [4])
    finally:
        for k in (1, 2):
            bench.PROTOCOLS.pop(f"instance{k}", None)
