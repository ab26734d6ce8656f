"""Atomic file writes: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, and a killed writer leaves the old file intact
(and a hidden ``.<name>.<8 random characters><suffix>`` temporary file, which
:func:`remove_partial_files` clears once no writer can be running). The written file gets
the user's umask like any new file (0o644 under umask 0o022), not ``tempfile.mkstemp``'s
0o600.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# temporary names: "." + target name + "." + 8 characters of [a-z0-9_] + target suffix
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_PARTIAL = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]+)?")
_TRIES = 100


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temporary file keeps the target's suffix, so libraries that pick a format from the
    file name (``np.save``, ``faiss.write_index``) behave as for the target.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temporary(target)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def _new_temporary(target: Path) -> Path:
    """Create an empty, new ``.<name>.<8 random characters><suffix>`` beside ``target``.

    Created with mode 0o666 less the umask, as ``open`` creates files: the mode survives the
    rename onto ``target`` (writers that truncate the file keep it).
    """
    for _ in range(_TRIES):
        stem = "".join(secrets.choice(_NAME_CHARS) for _ in range(8))
        tmp = target.with_name(f".{target.name}.{stem}{target.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {target} after {_TRIES} tries")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def is_partial_file(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_path`'s temporary files."""
    match = _PARTIAL.fullmatch(name)
    return bool(match) and Path(match["target"]).suffix == (match["suffix"] or "")


def remove_partial_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in ``folder`` (not
    its subfolders); returns them. Call it only while no other writer can use ``folder``
    (e.g. holding its lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.iterdir() if p.is_file() and is_partial_file(p.name))
    for path in found:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if found:
        log.warning(
            "removed %d partial file(s) left in %s by an interrupted write: %s",
            len(found),
            folder,
            ", ".join(p.name for p in found),
        )
    return found
