"""``python -m attribnet.evaluate open-set`` on the tiny demo (CPU): one tiny model per
held-out class, unknowns from the held-out class's test split only, the table's rows and
mean, reuse of finished runs on a second call, and user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attribnet.cli.evaluate import main
from attribnet.data.manifest import read_manifest
from tests.builders import REPO, tiny_overrides

RECIPE = REPO / "recipes" / "demo.yaml"
CLASSES = ["dfaker", "faceswap", "iae"]
KEYS = ("auroc", "oscr", "tnr_at_95tpr")


def command(manifest: Path, work: Path, out: Path, classes: list[str]) -> list[str]:
    extra = {"data.classes": "[" + ", ".join(classes) + "]", "train.build_index": True}
    sets = tiny_overrides(manifest, work, **extra)
    argv = ["open-set", "--recipe", str(RECIPE), "--out", str(out), "--clips-per-video", "1"]
    return [*argv, *(a for s in sets for a in ("--set", s))]


@pytest.fixture(scope="module")
def first(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("open_set")
    out = work / "table"
    assert main(command(tiny_demo, work, out, CLASSES)) == 0
    bests = {c: work / "runs" / f"demo_logo_{c}" / "best.pt" for c in CLASSES}
    stamps = {c: p.stat().st_mtime_ns for c, p in bests.items()}
    return {"work": work, "out": out, "bests": bests, "stamps": stamps}


@pytest.mark.slow
def test_one_model_per_held_out_class(first: dict) -> None:
    metrics = json.loads((first["out"] / "metrics.json").read_text())
    assert metrics["classes"] == CLASSES and list(metrics["rows"]) == CLASSES
    assert metrics["training"]["counts"] == {"trained": 3, "resumed": 0, "reused": 0}
    for c, row in metrics["rows"].items():
        assert row["known_classes"] == [k for k in CLASSES if k != c]
        # training builds no index (attribnet.cli.pipeline does, for the train command): the
        # table builds the one it needs
        assert row["run"] == f"demo_logo_{c}" and row["index"]["action"] == "built"
        assert (
            f"data.classes=[{', '.join(row['known_classes'])}]"
            in (metrics["training"]["runs"][c]["recipe_changes"])
        )
        assert row["primary"] in row["scores"] and row["unknown_videos"] > 0
        for scores in row["scores"].values():
            for key in KEYS:
                assert 0.0 <= scores[key] <= 1.0


@pytest.mark.slow
def test_unknowns_are_test_videos_of_unseen_sources(tiny_demo: Path, first: dict) -> None:
    rows = read_manifest(tiny_demo)
    metrics = json.loads((first["out"] / "metrics.json").read_text())
    for c, row in metrics["rows"].items():
        unknown = read_manifest(first["out"] / row["unknown_manifest"])
        assert {r.label for r in unknown} == {c} and {r.split for r in unknown} == {"test"}
        expected = {r.path for r in rows if r.label == c and r.split == "test"}
        assert {r.path for r in unknown} == expected and row["unknown_videos"] == len(expected)
        seen = {r.source_id for r in rows if r.label != c and r.split in ("train", "val")}
        assert not seen & {r.source_id for r in unknown}


@pytest.mark.slow
def test_mean_row_is_the_mean_of_the_rows(first: dict) -> None:
    metrics = json.loads((first["out"] / "metrics.json").read_text())
    rows = metrics["rows"].values()
    assert metrics["score_names"] == list(next(iter(rows))["scores"])
    for score in metrics["score_names"]:
        for key in KEYS:
            expected = np.mean([r["scores"][score][key] for r in rows])
            assert metrics["mean"][score][key] == pytest.approx(expected)
    verdict = np.mean([r["scores"][r["primary"]]["auroc"] for r in rows])
    assert metrics["verdict_mean"]["auroc"] == pytest.approx(verdict)

    lines = (first["out"] / "report.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| held out |"))
    table = lines[start : lines.index("", start)]
    header = table[0]
    for score in metrics["score_names"]:
        assert f"| {score} AUROC | {score} OSCR | {score} TNR@95TPR |" in header
    columns = [c.strip() for c in header.strip("|").split("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert [r[0] for r in cells] == [*CLASSES, "**mean**"]
    for name, row in zip(CLASSES, cells, strict=False):
        primary = metrics["rows"][name]["primary"]
        for column, cell in zip(columns, row, strict=True):
            if " " in column and column.split(" ")[0] in metrics["score_names"]:
                assert cell.startswith("**") == column.startswith(f"{primary} ")


@pytest.mark.slow
def test_second_call_reuses_the_runs(tiny_demo: Path, first: dict) -> None:
    out = first["work"] / "again"
    assert main(command(tiny_demo, first["work"], out, CLASSES)) == 0
    stamps = {c: p.stat().st_mtime_ns for c, p in first["bests"].items()}
    assert stamps == first["stamps"]
    again = json.loads((out / "metrics.json").read_text())
    before = json.loads((first["out"] / "metrics.json").read_text())
    assert again["training"]["counts"] == {"trained": 0, "resumed": 0, "reused": 3}
    assert {row["index"]["action"] for row in again["rows"].values()} == {"found"}
    assert again["mean"] == before["mean"]
    assert "reused (finished before, not retrained): 3" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "classes, message",
    [
        (["dfaker", "faceswap", "nosuch"], "data.classes names ['nosuch']"),
        (["dfaker", "faceswap"], "at least 3 classes"),
    ],
)
def test_user_errors(
    tiny_demo: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    classes: list[str],
    message: str,
) -> None:
    assert main(command(tiny_demo, tmp_path, tmp_path / "out", classes)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert not (tmp_path / "runs").exists()


def test_outlier_classes_are_never_held_out() -> None:
    from dataclasses import replace

    from attribnet.config import Recipe
    from attribnet.data.manifest import ManifestRow
    from attribnet.evaluate.open_set_table import recipe_classes

    rows = [ManifestRow(f"/v/{c}{i}.mp4", c) for c in ("a", "b", "c", "real") for i in range(2)]
    base = Recipe()
    assert recipe_classes(base, rows) == ["a", "b", "c", "real"]
    with_outliers = replace(base, data=replace(base.data, outlier_classes=["real"]))
    assert recipe_classes(with_outliers, rows) == ["a", "b", "c"]
