"""Atomic file writes: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, and a killed writer leaves the old file intact
(and a hidden ``.<name>.<8 random characters><suffix>`` temporary file, which
:func:`remove_partial_files` clears once no writer can be running).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# tempfile.mkstemp's names: prefix + 8 characters of [a-z0-9_] + suffix
_PARTIAL = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]+)?")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temporary file keeps the target's suffix, so libraries that pick a format from the
    file name (``np.save``, ``faiss.write_index``) behave as for the target.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


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
