"""Where an index finds its checkpoint: the path in ``meta.json`` is the index folder's, so
an index moved together with its run, or queried from another working directory, still
loads; an older index whose path was the working directory's still reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from attribnet.cli.index import main as index_main
from attribnet.cli.query import main as query_main
from attribnet.errors import IndexMismatchError
from attribnet.files.checkpoints import file_sha256
from attribnet.index import META_FILE, GeneratorIndex
from attribnet.query import Attributor
from tests.index.test_index import NAMES, fake_checkpoint
from tests.world import other_checkpoint


def test_an_index_moved_with_its_run_is_queried_from_anywhere(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built with a checkpoint path relative to the working directory (as a user types
    it), moved with its run to another folder, queried from a third."""
    project = tmp_path / "project"
    shutil.copytree(world["checkpoint"].parent, project / "runs" / "demo")
    monkeypatch.chdir(project)
    argv = ["build", "--checkpoint", "runs/demo/best.pt", "--manifest", str(world["manifest"])]
    assert index_main([*argv, "--out", "indexes/demo"]) == 0
    meta = json.loads((project / "indexes" / "demo" / META_FILE).read_text())
    assert meta["checkpoint"]["path"] == "../../runs/demo/best.pt"

    moved = tmp_path / "elsewhere" / "moved"
    shutil.move(project, moved)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    index = Path("..") / "elsewhere" / "moved" / "indexes" / "demo"
    attributor = Attributor.load(index)
    assert Path(attributor.checkpoint) == moved / "runs" / "demo" / "best.pt"
    result = attributor.attribute(world["queries"] / "deep" / "beta.mp4")
    assert result.ok and result.verdict
    out = tmp_path / "out.json"
    video = str(world["queries"] / "deep" / "alpha.mp4")
    assert query_main(["--index", str(index), video, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert Path(report["checkpoint"]) == moved / "runs" / "demo" / "best.pt"
    assert report["videos"][0]["status"] == "ok"
    # the checkpoint found is still checked: another model in its place is refused
    shutil.copy(other_checkpoint(world), moved / "runs" / "demo" / "best.pt")
    with pytest.raises(IndexMismatchError, match="sha256"):
        Attributor.load(index)


def test_an_older_index_with_a_path_of_the_working_directory_still_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the path was the index folder's, it was stored as given: relative to the
    working directory of the build. It is read so where that file exists, else against the
    index folder where the file is there, else as stored."""
    ours = fake_checkpoint(tmp_path / "runs" / "demo" / "best.pt")
    x = np.eye(len(NAMES), 16, dtype=np.float32)
    index = GeneratorIndex.build(x, np.arange(len(NAMES)), NAMES, use_gpu=False,
                                 checkpoint_sha256=file_sha256(ours))  # fmt: skip
    folder = tmp_path / "indexes" / "demo"
    index.save(folder)
    meta = json.loads((folder / META_FILE).read_text())
    meta["checkpoint"] = {"path": "runs/demo/best.pt", "sha256": file_sha256(ours)}
    (folder / META_FILE).write_text(json.dumps(meta))

    monkeypatch.chdir(tmp_path)  # where it was built: the stored path is this folder's
    assert Path(GeneratorIndex.load(folder, use_gpu=False).checkpoint_path) == ours
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")  # not here, nor beside the index: as stored
    assert GeneratorIndex.load(folder, use_gpu=False).checkpoint_path == "runs/demo/best.pt"
    beside = folder / "runs" / "demo" / "best.pt"
    beside.parent.mkdir(parents=True)
    shutil.copy(ours, beside)  # found beside the index
    assert Path(GeneratorIndex.load(folder, use_gpu=False).checkpoint_path) == beside
