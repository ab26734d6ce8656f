"""Manifests: tree scanning, source-grouped and random splits, file round trips, the CLI."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from attribnet.cli import manifest
from attribnet.data.manifest import (
    PAPER_RANDOM_SPLIT,
    SPLITS,
    ManifestRow,
    assign_splits,
    class_names,
    read_manifest,
    scan_tree,
    write_manifest,
)
from attribnet.errors import ConfigError, DataError

CLASSES = ("faceswap", "iae", "liae")


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def _frame_folder(folder: Path, count: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        (folder / f"Frame{i}.png").write_bytes(b"\x89PNG placeholder")


def _rows_by_path(root: Path, rows: list[ManifestRow]) -> dict[str, ManifestRow]:
    return {str(Path(r.path).relative_to(root.resolve())): r for r in rows}


def test_scan_class_video_tree(tmp_path: Path) -> None:
    for label in CLASSES:
        for source in ("000", "001"):
            _touch(tmp_path / label / f"{source}.mp4")
    _touch(tmp_path / "iae" / "notes.txt")
    _touch(tmp_path / "iae" / ".hidden.mp4")
    rows = _rows_by_path(tmp_path, scan_tree(tmp_path))
    assert sorted(rows) == sorted(f"{c}/{s}.mp4" for c in CLASSES for s in ("000", "001"))
    row = rows["liae/001.mp4"]
    assert (row.label, row.quality, row.source_id, row.split) == ("liae", "", "001", "")


def test_scan_quality_class_video_tree(tmp_path: Path) -> None:
    for quality in ("crf0", "crf23"):
        for label in CLASSES:
            _touch(tmp_path / quality / label / "007_a.mp4")
    rows = scan_tree(tmp_path)
    assert len(rows) == 6
    assert {(r.quality, r.label) for r in rows} == {
        (q, c) for q in ("crf0", "crf23") for c in CLASSES
    }
    assert {r.source_id for r in rows} == {"007_a"}
    swapped = scan_tree(tmp_path, layout="class/quality")
    assert {r.label for r in swapped} == {"crf0", "crf23"}


def test_scan_frame_folder_tree(tmp_path: Path) -> None:
    for label in CLASSES:
        _frame_folder(tmp_path / label / "src12")
        _frame_folder(tmp_path / label / "src13")
    rows = _rows_by_path(tmp_path, scan_tree(tmp_path))
    assert sorted(rows) == sorted(f"{c}/{s}" for c in CLASSES for s in ("src12", "src13"))
    assert rows["iae/src13"].label == "iae"
    assert rows["iae/src13"].quality == ""
    assert rows["iae/src13"].source_id == "src13"
    assert class_names(list(rows.values())) == sorted(CLASSES)


def test_scan_quality_frame_folder_tree_and_source_pattern(tmp_path: Path) -> None:
    _frame_folder(tmp_path / "c23" / "iae" / "000_003")
    _frame_folder(tmp_path / "c23" / "liae" / "000_004")
    rows = scan_tree(tmp_path, source_pattern=r"^(\d+)_")
    assert {(r.quality, r.label, r.source_id) for r in rows} == {
        ("c23", "iae", "000"),
        ("c23", "liae", "000"),
    }
    with pytest.raises(DataError, match="does not match"):
        scan_tree(tmp_path, source_pattern=r"^x")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], "no videos"),
        (["a.mp4"], "directly in the tree"),
        (["q/c/deep/a.mp4"], "3 folders deep"),
        (["c/a.mp4", "q/c/b.mp4"], "mixed layouts"),
    ],
)
def test_scan_rejects_bad_trees(tmp_path: Path, files: list[str], message: str) -> None:
    (tmp_path / "tree").mkdir()
    for f in files:
        _touch(tmp_path / "tree" / f)
    with pytest.raises(DataError, match=message):
        scan_tree(tmp_path / "tree")


def test_scan_missing_tree(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        scan_tree(tmp_path / "absent")


def _dfdm_rows(num_sources: int = 40) -> list[ManifestRow]:
    """Five models x three qualities of every source, as DFDM renders them."""
    return [
        ManifestRow(f"/d/{q}/{m}/{s:03d}.mp4", m, q, f"{s:03d}")
        for s in range(num_sources)
        for m in ("m0", "m1", "m2", "m3", "m4")
        for q in ("crf0", "crf10", "crf23")
    ]


def test_grouped_split_keeps_sources_together_and_honours_fractions() -> None:
    rows = _dfdm_rows(40)
    out = assign_splits(rows, (0.7, 0.15, 0.15), seed=3)
    assert [r.path for r in out] == [r.path for r in rows]
    splits_of: dict[str, set[str]] = {}
    for r in out:
        splits_of.setdefault(r.source_id, set()).add(r.split)
    assert all(len(s) == 1 for s in splits_of.values())
    sources = Counter(next(iter(s)) for s in splits_of.values())
    assert sources == {"train": 28, "val": 6, "test": 6}


def test_grouped_split_is_deterministic_order_free_and_seed_dependent() -> None:
    rows = _dfdm_rows(40)
    a = assign_splits(rows, seed=1)
    b = assign_splits(list(reversed(rows)), seed=1)
    assert {r.path: r.split for r in a} == {r.path: r.split for r in b}
    c = assign_splits(rows, seed=2)
    assert [r.split for r in a] != [r.split for r in c]


def test_grouped_split_respects_existing_splits() -> None:
    rows = _dfdm_rows(10)
    rows[0] = ManifestRow(rows[0].path, rows[0].label, rows[0].quality, "000", "test")
    out = assign_splits(rows, seed=0)
    assert {r.split for r in out if r.source_id == "000"} == {"test"}
    rows[1] = ManifestRow(rows[1].path, rows[1].label, rows[1].quality, "000", "train")
    with pytest.raises(DataError, match="'000'"):
        assign_splits(rows)
    again = assign_splits(rows, overwrite=True)
    assert len({r.split for r in again if r.source_id == "000"}) == 1


def test_random_split_per_row() -> None:
    rows = _dfdm_rows(20)
    out = assign_splits(rows, PAPER_RANDOM_SPLIT, seed=0, group_by=None)
    counts = Counter(r.split for r in out)
    assert counts == {"train": 210, "test": 90}
    by_source: dict[str, set[str]] = {}
    for r in out:
        by_source.setdefault(r.source_id, set()).add(r.split)
    assert any(len(s) == 2 for s in by_source.values())
    assert out == assign_splits(rows, PAPER_RANDOM_SPLIT, seed=0, group_by=None)


def _instance_rows(pairs: int = 6) -> list[ManifestRow]:
    """Five architectures x every identity pair x two segments per identity x two
    qualities; the instance is the pair, and pairs share identities (so sources repeat
    across instances)."""
    ids = [f"id{i}" for i in range(pairs + 1)]
    return [
        ManifestRow(f"/d/{q}/{m}/{a}_seg{k}-to-{b}.mp4", m, q, f"{a}_seg{k}", "", f"{a}+{b}")
        for a, b in zip(ids, ids[1:], strict=False)
        for m in ("m0", "m1", "m2", "m3", "m4")
        for k in range(2)
        for q in ("crf0", "crf23")
    ]


def test_instance_split_never_puts_an_instance_in_two_splits() -> None:
    rows = _instance_rows(6)
    for seed in range(5):
        out = assign_splits(rows, seed=seed, group_by="instance")
        splits_of: dict[str, set[str]] = {}
        for r in out:
            splits_of.setdefault(r.instance, set()).add(r.split)
        assert all(len(s) == 1 for s in splits_of.values())
        per_split = Counter(next(iter(s)) for s in splits_of.values())
        assert per_split == {"train": 4, "val": 1, "test": 1}
        # every architecture has instances in every split
        for split in SPLITS:
            assert {r.label for r in out if r.split == split} == {"m0", "m1", "m2", "m3", "m4"}
    # a source-grouped split of the same rows does put one instance in several splits
    by_source = assign_splits(rows, seed=0)
    instances = {r.instance for r in rows}
    assert any(len({r.split for r in by_source if r.instance == i}) > 1 for i in instances)


def test_instance_split_needs_every_instance() -> None:
    rows = _instance_rows(3)
    rows[4] = replace(rows[4], instance="")
    with pytest.raises(DataError, match="no instance"):
        assign_splits(rows, group_by="instance")
    with pytest.raises(ConfigError, match="cannot group"):
        assign_splits(rows, group_by="label")


def test_build_cli_splits_by_instance(tmp_path: Path) -> None:
    for a, b in (("x", "y"), ("y", "z"), ("z", "w"), ("w", "v"), ("v", "u")):
        for m in ("m0", "m1"):
            _touch(tmp_path / "tree" / "crf0" / m / f"{a}_seg0-to-{b}.mp4")
    out = tmp_path / "m.csv"
    argv = [
        "build",
        str(tmp_path / "tree"),
        "--out",
        str(out),
        "--split-by",
        "instance",
        "--instance-pattern",
        r"^(.+_seg\d+-to-.+)$",
        "--source-pattern",
        r"^(.+_seg\d+)-to-",
    ]
    assert manifest.main(argv) == 0
    rows = read_manifest(out)
    assert {r.instance for r in rows} == {
        "x_seg0-to-y",
        "y_seg0-to-z",
        "z_seg0-to-w",
        "w_seg0-to-v",
        "v_seg0-to-u",
    }
    for inst in {r.instance for r in rows}:
        assert len({r.split for r in rows if r.instance == inst}) == 1
    assert (
        manifest.main(
            ["build", str(tmp_path / "tree"), "--out", str(out), "--split-by", "instance"]
        )
        == 2
    )


@pytest.mark.parametrize(
    "fractions", [(0.5, 0.5), (0.8, 0.3, -0.1), (0.5, 0.2, 0.2), (float("nan"), 0.5, 0.5)]
)
def test_bad_fractions(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError):
        assign_splits(_dfdm_rows(2), fractions)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_manifest_round_trip(tmp_path: Path, suffix: str) -> None:
    rows = [
        ManifestRow(str(tmp_path / "videos" / "a.mp4"), "iae", "crf0", "a", "train"),
        ManifestRow(str(tmp_path / "videos" / "b,c.mp4"), "liae", "", "b", ""),
    ]
    path = tmp_path / f"manifest{suffix}"
    write_manifest(rows, path)
    if suffix == ".json":
        assert json.loads(path.read_text())[0]["path"] == "videos/a.mp4"
    assert read_manifest(path) == rows


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.csv", "path,label,colour\na.mp4,iae,red\n", "unknown column"),
        ("m.csv", "path,label\na.mp4,\n", "has no 'label'"),
        ("m.csv", "path,label,split\na.mp4,iae,training\n", "split 'training'"),
        ("m.csv", "path,label\na.mp4,iae,extra\n", "more fields"),
        ("m.csv", "path,label\n", "no rows"),
        ("m.json", "{not json", "not valid JSON"),
        ("m.json", '{"path": "a.mp4"}', "list of objects"),
    ],
)
def test_bad_manifests_name_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        read_manifest(path)
    assert str(path) in str(info.value)


def test_cli_builds_a_split_manifest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tree = tmp_path / "tree"
    for q in ("crf0", "crf23"):
        for c in CLASSES:
            for s in range(10):
                _touch(tree / q / c / f"{s:03d}.mp4")
    out = tmp_path / "m.csv"
    assert manifest.main(["build", str(tree), "--out", str(out), "--seed", "1"]) == 0
    rows = read_manifest(out)
    assert len(rows) == 60
    for source in {r.source_id for r in rows}:
        assert len({r.split for r in rows if r.source_id == source}) == 1
    assert Counter(r.split for r in rows) == {"train": 42, "val": 12, "test": 6}
    assert "60 rows" in capsys.readouterr().out

    paper = tmp_path / "paper.json"
    assert manifest.main(["build", str(tree), "--out", str(paper), "--random-split"]) == 0
    counts = Counter(r.split for r in read_manifest(paper))
    assert counts == {"train": 42, "test": 18}


@pytest.mark.parametrize("split", ["0.9,0.2,0.1", "a,b,c", "0.5,0.5"])
def test_cli_bad_fractions_exit_2(tmp_path: Path, split: str) -> None:
    tree = tmp_path / "tree"
    _touch(tree / "iae" / "a.mp4")
    argv = ["build", str(tree), "--out", str(tmp_path / "m.csv"), "--split", split]
    assert manifest.main(argv) == 2


def test_cli_empty_tree_exit_2(tmp_path: Path) -> None:
    (tmp_path / "tree" / "iae").mkdir(parents=True)
    assert manifest.main(["build", str(tmp_path / "tree"), "--out", str(tmp_path / "m.csv")]) == 2


def test_cli_missing_tree_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = manifest.main(["build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.csv")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no such folder") and "\n" not in err
    assert not (tmp_path / "m.csv").exists()
