"""Training data: a class with too few videos (a label typo) is refused before any work."""

from __future__ import annotations

import csv

import pytest

from attribnet.cli import train
from attribnet.data.manifest import ManifestRow
from attribnet.errors import DataError
from attribnet.training.data import check_class_videos
from tests.builders import REPO, tiny_overrides


def _mislabelled_manifest(tiny_demo, out, split: str):
    """The tiny demo's manifest (absolute paths) with its first faceswap row of ``split``
    labelled ``faceswp``."""
    with open(tiny_demo, newline="") as f:
        rows = list(csv.DictReader(f))
    typo = next(r for r in rows if r["label"] == "faceswap" and r["split"] == split)
    typo["label"] = "faceswp"
    for row in rows:
        row["path"] = str(tiny_demo.parent / row["path"])
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_mislabelled_row_is_refused_naming_the_nearest_label(tiny_demo, tmp_path, capsys, split):
    manifest = _mislabelled_manifest(tiny_demo, tmp_path, split)
    argv = [str(REPO / "recipes/demo.yaml")]
    argv += [a for s in tiny_overrides(manifest, tmp_path) for a in ("--set", s)]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    counts = "1 train, 0 val" if split == "train" else "0 train, 1 val"
    assert err == [
        f"error: too few videos of class 'faceswp' ({counts}; did you mean 'faceswap'?) in "
        f"{manifest}: every class needs at least one training and one validation video; "
        "correct the label in the manifest, or list the classes to train in data.classes"
    ]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def _rows(*specs: tuple[str, str]) -> list[ManifestRow]:
    return [ManifestRow(f"v{i}.mp4", label, split=split) for i, (label, split) in enumerate(specs)]


def test_without_validation_videos_a_class_needs_a_training_video():
    rows = _rows(("a", "train"), ("b", "train"), ("b", "test"))
    check_class_videos(rows, ["a", "b"], [], [], "m.csv")  # no val split: nothing to validate
    with pytest.raises(DataError, match=r"class 'c' \(0 train, 0 val\) in m.csv: .* one training "
                       r"video; give it videos or take it out of data.classes$"):  # fmt: skip
        check_class_videos([*rows, *_rows(("c", "test"))], ["a", "b", "c"], [], [], "m.csv",
                           named=True)  # fmt: skip


def test_videos_count_only_at_the_recipes_qualities():
    rows = [ManifestRow("a.mp4", "a", "crf0", split="train"),
            ManifestRow("b.mp4", "b", "crf23", split="train"),
            ManifestRow("b0.mp4", "b", "crf0", split="train")]  # fmt: skip
    check_class_videos(rows, ["a", "b"], ["crf0"], [], "m.csv")
    with pytest.raises(DataError, match=r"class 'a' \(0 train, 0 val\) in m.csv"):
        check_class_videos(rows, ["a", "b"], ["crf23"], [], "m.csv")
