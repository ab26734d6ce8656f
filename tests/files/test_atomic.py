"""Atomic writes: files get the user's umask, temporary files are recognisable and cleared."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from attribnet.files.atomic import (
    atomic_path,
    is_partial_file,
    remove_partial_files,
    write_json,
    write_text,
)
from attribnet.files.checkpoints import save_checkpoint


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request) -> int:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_get_the_umask(tmp_path, umask):
    write_text(tmp_path / "report.html", "<p>hi</p>")
    write_json(tmp_path / "meta.json", {"a": 1})
    save_checkpoint(tmp_path / "best.pt", {"model": {"w": torch.ones(2)}, "args": {}})
    with atomic_path(tmp_path / "index.npy") as tmp:
        np.save(tmp, np.arange(3))
    expected = 0o666 & ~umask
    for name in ("report.html", "meta.json", "best.pt", "index.npy"):
        assert _mode(tmp_path / name) == expected, name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt", "index.npy", "meta.json", "report.html"
    ]  # fmt: skip


def test_a_replaced_file_gets_the_umask_not_its_old_mode(tmp_path, umask):
    target = tmp_path / "best.pt"
    target.write_bytes(b"old")
    target.chmod(0o600)
    write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "meta.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_temporary_files_are_recognised_as_partial_and_removed(tmp_path):
    """A writer killed mid-write leaves its temporary file: it is named as one, and
    remove_partial_files clears it (and only it)."""
    target = tmp_path / "index.faiss"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".faiss" and tmp.exists()
        assert is_partial_file(tmp.name) and not is_partial_file(target.name)
        left = tmp_path / "left" / tmp.name
        left.parent.mkdir()
        os.link(tmp, left)  # what the kill would leave
        raise KeyboardInterrupt
    os.rename(left, tmp)
    assert remove_partial_files(tmp_path) == [tmp]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss", "left"]
    assert target.read_text() == "old"
