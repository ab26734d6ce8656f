"""Run folders: an existing run is refused, replaced runs are moved aside, one writer at a
time (a lock naming its holder; stale locks taken over), and lock files are removed."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from attribnet.errors import ConfigError, LockedError, RunExistsError
from attribnet.files.lock import FileLock, LockHolder
from attribnet.training.run_dir import LOCK_NAME, check_run_dir, claim_run_dir, run_mode


def _finished_run(run_dir):
    run_dir.mkdir(parents=True)
    for name, text in (("last.pt", "L"), ("best.pt", "B"), ("metrics.jsonl", '{"epoch": 1}\n')):
        (run_dir / name).write_text(text)
    return run_dir


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def _write_holder(path, pid: int, host: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = {"pid": pid, "host": host or socket.gethostname(), "started": "2020-01-01T00:00:00Z"}
    path.write_text(json.dumps(holder))


def test_a_fresh_name_is_checked_without_writing_anything(tmp_path):
    run_dir = tmp_path / "runs" / "fresh"
    check_run_dir(run_dir, "new")
    check_run_dir(run_dir, "overwrite")
    assert not (tmp_path / "runs").exists()
    lock = claim_run_dir(run_dir, "new")
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert list(run_dir.iterdir()) == []


@pytest.mark.parametrize("step", [check_run_dir, claim_run_dir])
def test_an_existing_run_is_refused_and_left_as_it_was(tmp_path, step):
    run_dir = _finished_run(tmp_path / "demo")
    before = {p.name: p.read_text() for p in run_dir.iterdir()}
    with pytest.raises(RunExistsError) as exc:
        step(run_dir, "new")
    message = str(exc.value)
    assert "\n" not in message
    assert "already holds a run (best.pt, last.pt, metrics.jsonl)" in message
    assert "--resume" in message and "--overwrite" in message
    assert {p.name: p.read_text() for p in run_dir.iterdir()} == before  # no lock left


def test_resume_needs_a_last_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="--resume: no checkpoint at"):
        check_run_dir(tmp_path / "none", "resume")
    with pytest.raises(ConfigError, match="--resume: no checkpoint at"):
        claim_run_dir(tmp_path / "none", "resume")
    assert not (tmp_path / "none").exists()  # the folder made for the lock is gone again
    with pytest.raises(ConfigError, match="exclude each other"):
        run_mode(resume=True, overwrite=True)
    assert run_mode(False, False) == "new" and run_mode(True, False) == "resume"


def test_the_recipe_says_what_to_do_with_an_existing_run_and_the_flags_win(tmp_path):
    run_dir = _finished_run(tmp_path / "demo")
    fresh, broken = tmp_path / "fresh", tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.jsonl").write_text('{"epoch": 1}\n')  # a run without last.pt
    for folder, resume in ((run_dir, "resume"), (fresh, "new"), (broken, "new")):
        assert run_mode(False, False, "resume", folder) == resume, folder
        assert run_mode(False, False, "refuse", folder) == "new"
        assert run_mode(False, False, "overwrite", folder) == "overwrite"
        for if_exists in ("refuse", "resume", "overwrite"):
            assert run_mode(True, False, if_exists, folder) == "resume"
            assert run_mode(False, True, if_exists, folder) == "overwrite"
    with pytest.raises(RunExistsError, match="already holds a run"):
        check_run_dir(broken, run_mode(False, False, "resume", broken))
    with pytest.raises(ValueError, match="if_exists must be one of"):
        run_mode(False, False, "resum", run_dir)


def test_overwrite_moves_the_old_run_aside(tmp_path, caplog):
    run_dir = _finished_run(tmp_path / "demo")
    with caplog.at_level(logging.WARNING):
        lock = claim_run_dir(run_dir, "overwrite")
    (aside,) = tmp_path.glob("demo.replaced-*")
    assert (aside / "last.pt").read_text() == "L" and (aside / "best.pt").read_text() == "B"
    assert sorted(p.name for p in aside.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]
    assert [p.name for p in run_dir.iterdir()] == [LOCK_NAME]
    assert f"moved aside to {aside}" in caplog.text
    lock.release()
    (run_dir / "last.pt").write_text("L2")
    claim_run_dir(run_dir, "overwrite").release()  # within the same second: another name
    asides = sorted(tmp_path.glob("demo.replaced-*"))
    assert len(asides) == 2 and {(p / "last.pt").read_text() for p in asides} == {"L", "L2"}


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    run_dir = tmp_path / "demo"
    first = claim_run_dir(run_dir, "new")
    me = f"pid {os.getpid()} on host {socket.gethostname()}"
    for attempt in (lambda: check_run_dir(run_dir, "new"), lambda: claim_run_dir(run_dir, "new")):
        with pytest.raises(LockedError) as exc:
            attempt()
        assert str(exc.value).startswith(f"run folder {run_dir} is in use by {me}, started ")
        assert "\n" not in str(exc.value) and str(run_dir / LOCK_NAME) in str(exc.value)
    assert first.held and (run_dir / LOCK_NAME).exists()
    first.release()
    assert not (run_dir / LOCK_NAME).exists()
    claim_run_dir(run_dir, "new").release()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    run_dir = tmp_path / "demo"
    dead = _dead_pid()
    _write_holder(run_dir / LOCK_NAME, dead)
    check_run_dir(run_dir, "new")  # stale: not refused
    with caplog.at_level(logging.WARNING):
        lock = claim_run_dir(run_dir, "new")
    assert f"taking over the stale lock {run_dir / LOCK_NAME} of pid {dead}" in caplog.text
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_live_or_foreign_holder_is_refused_even_without_its_flock(tmp_path):
    """A lock file naming a live process here, or any process on another host, is not
    stale (flock may not work across hosts): refused, saying which file to delete."""
    run_dir = tmp_path / "demo"
    lock_file = run_dir / LOCK_NAME
    for pid, host in ((os.getppid(), None), (_dead_pid(), "another-host.example")):
        _write_holder(lock_file, pid, host)
        with pytest.raises(LockedError, match=f"if that process has ended, delete {lock_file}"):
            claim_run_dir(run_dir, "new")
        with pytest.raises(LockedError, match=f"pid {pid}"):
            check_run_dir(run_dir, "new")
        assert json.loads(lock_file.read_text())["pid"] == pid  # left untouched
    with pytest.raises(LockedError):  # waiting for another host's holder could be forever
        FileLock(lock_file, "x").acquire(wait=True, poll_s=0.01)


def test_wait_takes_the_lock_once_the_holder_releases_it(tmp_path, caplog):
    path = tmp_path / "cache" / "preprocess.lock"
    holder = FileLock(path, "face cache c").acquire()
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    start = time.monotonic()
    waiter = FileLock(path, "face cache c")
    with caplog.at_level(logging.INFO), waiter.acquire(wait=True, poll_s=0.02):
        waited = time.monotonic() - start
        assert json.loads(path.read_text())["pid"] == os.getpid()
    timer.join()
    assert waited >= 0.25 and not path.exists()
    assert caplog.text.count("face cache c is in use by pid") == 1 and "waiting" in caplog.text


def test_holder_parse_and_describe():
    me = LockHolder.me()
    assert LockHolder.parse(json.dumps(me.__dict__)) == me and me.is_alive() is True
    assert LockHolder.parse("") is None and LockHolder.parse('{"pid": "x"}') is None
    assert me.describe().startswith(f"pid {os.getpid()} on host ")
    assert LockHolder(1, "elsewhere.example", "t").is_alive() is None


def test_without_flock_the_holder_in_the_file_decides(tmp_path, monkeypatch):
    """On a file system without flock (ENOLCK), a live holder still refuses; no crash."""

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    lock_file = tmp_path / "demo" / LOCK_NAME
    claim_run_dir(tmp_path / "demo", "new").release()
    _write_holder(lock_file, os.getppid())
    with pytest.raises(LockedError, match=f"in use by pid {os.getppid()}"):
        claim_run_dir(tmp_path / "demo", "new")
