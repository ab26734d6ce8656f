"""A run folder (``train.out_dir/<name>``) belongs to one run.

- A name whose folder already holds a run (a checkpoint or metrics) is refused unless the
  run is resumed (``--resume``) or replaced (``--overwrite``), or the recipe's
  ``train.if_exists`` says to (:func:`run_mode`). Replacing moves the old folder aside to
  ``<name>.replaced-<UTC time>``; nothing is deleted.
- One writer at a time: while training, ``<run>/run.lock`` holds the writer's pid, host and
  start time (see :class:`~attribnet.files.lock.FileLock`).
- :func:`check_run_dir` refuses early and writes nothing; :func:`claim_run_dir` takes the
  folder, and training calls it only once the recipe, data and model are built, so a start
  that fails leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from pathlib import Path

from attribnet.config.choices import IF_EXISTS
from attribnet.errors import ConfigError, RunExistsError
from attribnet.files.lock import FileLock

log = logging.getLogger(__name__)

RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl")
LOCK_NAME = "run.lock"
MODES = ("new", "resume", "overwrite")


def run_mode(
    resume: bool,
    overwrite: bool,
    if_exists: str = "refuse",
    run_dir: str | os.PathLike[str] | None = None,
) -> str:
    """``new``, ``resume`` or ``overwrite``: the command line's flag, else the recipe's
    ``train.if_exists`` (:data:`~attribnet.config.choices.IF_EXISTS`) for ``run_dir``.

    ``if_exists`` ``resume`` resumes a folder that holds a last.pt and starts one that holds
    no run (one with other run files but no last.pt is refused as with ``refuse``);
    ``overwrite`` moves a run aside whenever there is one. ConfigError for both flags.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: choose one")
    if resume or overwrite:
        return "resume" if resume else "overwrite"
    if if_exists not in IF_EXISTS:
        raise ValueError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}")
    if if_exists == "overwrite":
        return "overwrite"
    if if_exists == "resume" and run_dir is not None and "last.pt" in run_files(run_dir):
        return "resume"
    return "new"


def run_files(run_dir: str | os.PathLike[str]) -> list[str]:
    """The files of :data:`RUN_FILES` present in ``run_dir``: what makes it a run."""
    return [name for name in RUN_FILES if (Path(run_dir) / name).is_file()]


def run_lock(run_dir: str | os.PathLike[str]) -> FileLock:
    """The (not yet acquired) lock of a run folder."""
    return FileLock(Path(run_dir) / LOCK_NAME, f"run folder {run_dir}")


def check_run_dir(run_dir: str | os.PathLike[str], mode: str) -> None:
    """Refuse a start that :func:`claim_run_dir` would refuse; reads only.

    LockedError when another live process writes the folder; RunExistsError when ``mode``
    is ``new`` and the folder holds a run; ConfigError when ``mode`` is ``resume`` and
    there is no ``last.pt``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    run_lock(run_dir).check()
    _check_contents(Path(run_dir), mode)


def claim_run_dir(run_dir: str | os.PathLike[str], mode: str) -> FileLock:
    """Take ``run_dir`` for this run; returns its held lock (release it when done).

    Checks again under the lock (as :func:`check_run_dir`). With ``overwrite`` an existing
    run is moved aside first and the new run gets a fresh folder. On any error the lock is
    released and a folder made here is removed again.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    lock = run_lock(run_dir).acquire()
    try:
        _check_contents(run_dir, mode)
        if mode == "overwrite" and run_files(run_dir):
            lock = _replace(run_dir, lock)
    except BaseException:
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        raise
    return lock


def aside_path(run_dir: Path) -> Path:
    """A free ``<name>.replaced-<UTC time>[-k]`` beside ``run_dir``."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def _check_contents(run_dir: Path, mode: str) -> None:
    found = run_files(run_dir)
    if mode == "new" and found:
        raise RunExistsError(
            f"run folder {run_dir} already holds a run ({', '.join(found)}); add --resume to "
            "continue it, --overwrite to move it aside and start again, or choose another "
            "name (--set name=...)"
        )
    if mode == "resume" and "last.pt" not in found:
        raise ConfigError(
            f"--resume: no checkpoint at {run_dir / 'last.pt'} (start without --resume)"
        )


def _replace(run_dir: Path, old_lock: FileLock) -> FileLock:
    """Move the locked old run aside, lock a fresh ``run_dir``, free the old lock."""
    aside = aside_path(run_dir)
    os.rename(run_dir, aside)
    old_lock.move_to(aside / LOCK_NAME)
    try:
        lock = run_lock(run_dir).acquire()
    finally:
        old_lock.release()
    log.warning("the previous run in %s was moved aside to %s", run_dir, aside)
    return lock
