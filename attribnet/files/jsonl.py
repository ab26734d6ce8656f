"""JSON Lines files that survive a kill: read past a torn line, append on a fresh line.

A writer killed in the middle of an append leaves a torn (unfinished) last line. Readers
skip it with a warning instead of failing, and the next append first ends that line, so
the record it writes is whole and is read back. Every ``*.jsonl`` of the project (a run's
``metrics.jsonl``, a face cache's ``index.jsonl`` and ``skipped.jsonl``) goes through here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from attribnet.files.atomic import write_text

log = logging.getLogger(__name__)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records (JSON objects) of a JSONL file, in order; [] when it does not exist.

    A line that is not a JSON object (a torn line left by a killed writer) is skipped with a
    warning naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            log.warning("%s:%d: ignoring an unfinished line (interrupted write?)", path, number)
    return records


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append ``record`` as one line and flush it to disk.

    When the file does not end with a newline (a torn last line), the record starts on a
    fresh line, so it is not glued to the torn one and lost with it.
    """
    line = json.dumps(record).encode() + b"\n"
    with open(path, "ab+") as f:
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = b"\n" + line
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Replace the file with ``records``, one per line, atomically."""
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))
