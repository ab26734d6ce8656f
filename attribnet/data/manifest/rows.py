"""Manifest rows (:class:`ManifestRow`), and reading and writing them as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from attribnet.errors import DataError
from attribnet.files.atomic import write_text

SPLITS = ("train", "val", "test")
COLUMNS = ("path", "label", "quality", "source_id", "split", "instance")


@dataclass(frozen=True)
class ManifestRow:
    """One video or frame folder.

    ``label`` is the generator's class name; ``quality`` a free-form tag such as ``crf23``;
    ``source_id`` names the source content, shared by every generator's and quality's
    rendering of it, so that splits can keep it in one split only. ``instance`` names the
    generator training that made the video (DFDM: the identity pair its autoencoder was
    trained on, or a model run); a cross-instance split keeps each instance in one split,
    so that test videos come from trainings no training video came from.
    """

    path: str
    label: str
    quality: str = ""
    source_id: str = ""
    split: str = ""
    instance: str = ""

    @property
    def video_id(self) -> str:
        """A stable identifier: the path as written in the manifest."""
        return self.path


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestRow]:
    """Read a CSV or JSON manifest; resolve relative paths against its folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(records, list):
            raise DataError(f"{path}: a JSON manifest is a list of objects")
    else:
        records = list(csv.DictReader(io.StringIO(text)))
    rows = [_row_from_record(r, i, path) for i, r in enumerate(records)]
    if not rows:
        raise DataError(f"{path}: manifest has no rows")
    return rows


def _row_from_record(record: object, i: int, manifest: Path) -> ManifestRow:
    if not isinstance(record, dict):
        raise DataError(f"{manifest}: row {i + 1} is not an object")
    if None in record:
        raise DataError(f"{manifest}: row {i + 1} has more fields than the header {COLUMNS}")
    known = {f.name for f in fields(ManifestRow)}
    unknown = set(record) - known
    if unknown:
        raise DataError(f"{manifest}: unknown column(s) {sorted(unknown)}; expected {COLUMNS}")
    for required in ("path", "label"):
        if not record.get(required):
            raise DataError(f"{manifest}: row {i + 1} has no '{required}'")
    values = {k: str(v) if v is not None else "" for k, v in record.items()}
    if values.get("split") and values["split"] not in SPLITS:
        raise DataError(f"{manifest}: row {i + 1} has split {values['split']!r}; use {SPLITS}")
    p = Path(values["path"])
    values["path"] = str(p if p.is_absolute() else (manifest.parent / p).resolve())
    return ManifestRow(**values)


def write_manifest(rows: list[ManifestRow], path: str | os.PathLike[str]) -> None:
    """Write rows as CSV or JSON (by suffix) atomically; paths inside the manifest's folder
    are stored relative to it so the folder can move."""
    path = Path(path)
    base = path.parent.resolve()
    records = []
    for row in rows:
        record = asdict(row)
        p = Path(row.path).resolve()
        if p.is_relative_to(base):
            record["path"] = str(p.relative_to(base))
        records.append(record)
    if path.suffix.lower() == ".json":
        write_text(path, json.dumps(records, indent=1) + "\n")
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text(path, buffer.getvalue())


def class_names(rows: list[ManifestRow]) -> list[str]:
    """The sorted distinct labels: index in this list = generator id."""
    return sorted({r.label for r in rows})
