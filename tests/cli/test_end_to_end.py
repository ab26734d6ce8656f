"""One tiny run of the whole tool on CPU: train -> index -> query -> evaluate."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from attribnet.cli import evaluate, query, train
from attribnet.data.manifest import read_manifest
from attribnet.data.synthetic import generate_demo
from tests.builders import REPO, tiny_overrides

ROOT = REPO


@pytest.mark.slow
def test_train_index_query_evaluate(tiny_demo, tmp_path, capsys):
    sets = tiny_overrides(tiny_demo, tmp_path, **{"train.epochs": 2, "train.build_index": True})
    argv = [str(ROOT / "recipes/demo.yaml")] + [a for s in sets for a in ("--set", s)]
    assert train.main(argv) == 0
    run, index_dir = tmp_path / "runs/demo", tmp_path / "indexes/demo"
    assert (run / "best.pt").exists() and (run / "val_report.json").exists()
    meta = json.loads((index_dir / "meta.json").read_text())
    rows = read_manifest(tiny_demo)
    train_rows = [r for r in rows if r.split == "train"]
    assert len(meta["video_ids"]) == len(train_rows)
    assert meta["embedding_dim"] == 64 and 0 < meta["threshold"]["value"] <= 1
    assert meta["threshold"]["split"] == "val"

    # an indexed video finds itself first, with cosine ~1
    seen = train_rows[0]
    unseen_manifest = generate_demo(
        tmp_path / "unseen", num_sources=2, num_frames=8, size=32, qualities=(23,),
        generators=("unseen",),
    )  # fmt: skip
    unseen = [r.path for r in read_manifest(unseen_manifest)]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    out = tmp_path / "query.json"
    code = query.main(["--index", str(index_dir), seen.path, *unseen, str(broken),
                       "--neighbours", "3", "--json", str(out), "--cluster", "--plot",
                       str(tmp_path / "map.png")])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    first = next(r for r in report["videos"] if r["video"] == seen.path)
    assert first["status"] == "ok"
    assert first["neighbors"][0]["video_id"] == seen.path
    assert first["neighbors"][0]["similarity"] > 0.999
    assert len(first["neighbors"]) == 3
    assert first["classifier"]["generator"] in meta["class_names"]
    for record in report["videos"]:
        if record["status"] == "ok":
            assert record["is_unknown"] == (record["score"] < report["threshold"])
    failed = [r for r in report["videos"] if r["status"] == "failed"]
    assert [r["video"] for r in failed] == [str(broken)] and failed[0]["reason"]
    assert sum(c["size"] for c in report["clusters"]) == 3
    assert (tmp_path / "map.png").stat().st_size > 1000
    assert len(report["videos"]) == 4
    assert "3 of 4 videos attributed" in capsys.readouterr().out

    # evaluation of the same checkpoint on the test split, with the unseen generator
    unknown_csv = tmp_path / "unknown.csv"
    with open(unknown_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "quality", "source_id", "split"])
        for r in read_manifest(unseen_manifest):
            writer.writerow([r.path, r.label, r.quality, r.source_id, "test"])
    report_dir = tmp_path / "report"
    assert evaluate.main(["run", "--checkpoint", str(run / "best.pt"), "--out", str(report_dir),
                          "--unknown-manifest", str(unknown_csv), "--index", str(index_dir),
                          "--device", "cpu"]) == 0  # fmt: skip
    metrics = json.loads((report_dir / "metrics.json").read_text())
    test_rows = [r for r in rows if r.split == "test"]
    assert (report_dir / "report.md").exists() and (report_dir / "confusion_clip.png").exists()
    confusion = np.array(_find(metrics, "confusion_matrix"))
    assert confusion.shape == (5, 5) and confusion.sum() >= len(test_rows)
    assert 0.0 <= _find(metrics, "auroc") <= 1.0 and _find(metrics, "oscr") is not None


def _find(obj: object, key: str) -> object:
    """The first value under ``key`` anywhere in a nested dict/list."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for item in obj:
            found = _find(item, key)
            if found is not None:
                return found
    return None
