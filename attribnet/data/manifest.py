"""Manifests: one row per video (or frame folder) with its label, quality, source and split.

On disk a manifest is CSV (columns ``path,label,quality,source_id,split,instance``) or JSON
(a list of objects with those keys; ``instance`` may be left out). Relative paths are
relative to the manifest's folder.

Build one from a folder tree and split it by source::

    python -m attribnet.data.manifest build <tree> --out manifest.csv [--split 0.7,0.15,0.15]
        [--random-split | --split-by instance --instance-pattern REGEX] [--seed 0]
        [--layout quality/class] [--source-pattern REGEX]

Tree layouts (see :func:`scan_tree`): ``<class>/<video>.mp4``,
``<quality>/<class>/<video>.mp4`` and the same with frame folders
(``<class>/<video>/<frame>.png``, DFDM's pre-cropped faces) in place of video files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from attribnet.atomic import write_text
from attribnet.errors import AttribnetError, ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
COLUMNS = ("path", "label", "quality", "source_id", "split", "instance")
SPLIT_GROUPS = ("source_id", "instance")
"""What a grouped split keeps together: the source content, or the generator training."""
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
LAYOUTS = ("quality/class", "class/quality")
DEFAULT_SPLIT = (0.7, 0.15, 0.15)
PAPER_RANDOM_SPLIT = (0.7, 0.0, 0.3)
"""DMA-STA's split: 70% train / 30% test, drawn per video (use with ``grouped=False``)."""


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


# ----------------------------------------------------------------------------- read / write


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


# ----------------------------------------------------------------------------- scan a tree


def scan_tree(
    root: str | os.PathLike[str],
    layout: str = "quality/class",
    source_pattern: str | None = None,
) -> list[ManifestRow]:
    """One row (split empty) per video file or frame folder under ``root``.

    A *video* is a file with a suffix in ``VIDEO_SUFFIXES`` or a folder that directly holds
    frame images (``IMAGE_SUFFIXES``; its subfolders are not searched). The folders between
    ``root`` and a video decide its tags, and every video of a tree must sit at one depth:

    - ``<class>/<video>``: label = the folder's name, quality empty;
    - ``<a>/<b>/<video>``: a top-level folder holding class folders that hold videos is a
      quality, so with ``layout="quality/class"`` (default) ``a`` is the quality and ``b``
      the label; ``layout="class/quality"`` reads them the other way round.

    ``source_id`` is the video's file stem or folder name (DFDM renders one source through
    every model and quality under the same name), or with ``source_pattern`` the first
    group (else the whole match) of ``re.search(source_pattern, name)``.
    Hidden files and folders are ignored. Rows come in sorted path order.

    Raises DataError for a missing or empty tree, mixed depths, or a video outside a class
    folder; ConfigError for an unknown layout or a bad pattern.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown tree layout {layout!r}; use one of {LAYOUTS}")
    pattern = _compile(source_pattern)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no such folder: {root}")
    videos = _find_videos(root)
    if not videos:
        raise DataError(
            f"{root}: no videos ({', '.join(VIDEO_SUFFIXES)}) or frame folders found; expected "
            "<class>/<video>.mp4, <quality>/<class>/<video>.mp4 or <class>/<video>/<frame>.png"
        )
    depth = _common_depth(root, videos)
    return [_row_for(root, v, depth, layout, pattern) for v in videos]


def _compile(source_pattern: str | None) -> re.Pattern[str] | None:
    if source_pattern is None:
        return None
    try:
        return re.compile(source_pattern)
    except re.error as exc:
        raise ConfigError(f"bad --source-pattern {source_pattern!r}: {exc}") from exc


def _find_videos(root: Path) -> list[Path]:
    """Video files and frame folders under ``root`` (not ``root`` itself), sorted."""
    found: list[Path] = []
    seen = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        visible = [f for f in filenames if not f.startswith(".")]
        if here != root and any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in visible):
            found.append(here)
            dirnames[:] = []
            continue
        found.extend(here / f for f in visible if Path(f).suffix.lower() in VIDEO_SUFFIXES)
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(here / d)
            if not d.startswith(".") and real not in seen:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
    return sorted(found)


def _common_depth(root: Path, videos: list[Path]) -> int:
    """The number of folders between ``root`` and every video: 1 or 2."""
    by_depth: dict[int, Path] = {}
    for v in videos:
        by_depth.setdefault(len(v.relative_to(root).parts) - 1, v)
    bad = {d: v for d, v in by_depth.items() if d not in (1, 2)}
    if bad:
        d, v = min(bad.items())
        where = "directly in the tree" if d == 0 else f"{d} folders deep"
        raise DataError(
            f"{root}: {v.relative_to(root)} is {where}; a video must be in <class>/ or "
            "<quality>/<class>/ (point at the folder that holds the class or quality folders)"
        )
    if len(by_depth) > 1:
        raise DataError(
            f"{root}: mixed layouts: {by_depth[1].relative_to(root)} is in a class folder but "
            f"{by_depth[2].relative_to(root)} is in <quality>/<class>/; scan them separately"
        )
    return next(iter(by_depth))


def _row_for(
    root: Path, video: Path, depth: int, layout: str, pattern: re.Pattern[str] | None
) -> ManifestRow:
    folders = video.relative_to(root).parts[:-1]
    if depth == 1:
        label, quality = folders[0], ""
    elif layout == "quality/class":
        quality, label = folders
    else:
        label, quality = folders
    name = video.name if video.is_dir() else video.stem
    return ManifestRow(
        path=str(video.resolve()), label=label, quality=quality, source_id=_source(name, pattern)
    )


def _source(name: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return name
    match = pattern.search(name)
    if match is None:
        raise DataError(f"source pattern {pattern.pattern!r} does not match video name {name!r}")
    return match.group(1) if pattern.groups else match.group(0)


# ----------------------------------------------------------------------------- splits


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three finite non-negative numbers summing to 1."""
    values = tuple(float(f) for f in fractions)
    if len(values) != len(SPLITS):
        raise ConfigError(f"split fractions need {len(SPLITS)} values {SPLITS}, got {values}")
    if not all(math.isfinite(f) and f >= 0 for f in values):
        raise ConfigError(f"split fractions must be finite and >= 0, got {values}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got {values} (sum {sum(values):g})")
    return values[0], values[1], values[2]


def assign_splits(
    rows: Sequence[ManifestRow],
    fractions: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    group_by: str | None = "source_id",
    overwrite: bool = False,
) -> list[ManifestRow]:
    """Rows (same order) with ``split`` set to train/val/test in the given proportions.

    ``group_by="source_id"`` keeps every row sharing a ``source_id`` in one split, so a
    source never appears in two splits at any quality (a row without a source_id is its own
    group). ``group_by="instance"`` keeps every row sharing an ``instance`` in one split
    (the cross-instance protocol); every row must name its instance. Groups are dealt in a
    seeded random order, each to the split furthest below its target row count.
    ``group_by=None`` draws per row (DMA-STA's split; see PAPER_RANDOM_SPLIT), with counts
    rounded by largest remainder.

    Rows that already have a split keep it unless ``overwrite``; in grouped mode the rest of
    their group follows them, and a group already spread over two splits is a DataError.
    Fractions apply to the rows still to be assigned. The result depends on ``seed`` and the
    rows' content, not on their order.
    """
    fractions = check_fractions(fractions)
    rng = np.random.default_rng(seed)
    if group_by is None:
        splits = _random_splits(rows, fractions, rng, overwrite)
    elif group_by in SPLIT_GROUPS:
        splits = _grouped_splits(rows, fractions, rng, overwrite, group_by)
    else:
        raise ConfigError(f"cannot group splits by {group_by!r}; use one of {SPLIT_GROUPS}")
    return [replace(r, split=s) for r, s in zip(rows, splits, strict=True)]


def _largest_remainder(n: int, fractions: Sequence[float]) -> list[int]:
    exact = [f * n for f in fractions]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _random_splits(
    rows: Sequence[ManifestRow],
    fractions: Sequence[float],
    rng: np.random.Generator,
    overwrite: bool,
) -> list[str]:
    splits = ["" if overwrite else r.split for r in rows]
    todo = sorted((i for i, s in enumerate(splits) if not s), key=lambda i: (rows[i].path, i))
    order = [todo[j] for j in rng.permutation(len(todo))]
    start = 0
    for name, count in zip(SPLITS, _largest_remainder(len(todo), fractions), strict=True):
        for i in order[start : start + count]:
            splits[i] = name
        start += count
    return splits


def _grouped_splits(
    rows: Sequence[ManifestRow],
    fractions: Sequence[float],
    rng: np.random.Generator,
    overwrite: bool,
    group_by: str,
) -> list[str]:
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        key = getattr(r, group_by)
        if not key and group_by == "instance":
            raise DataError(
                f"{r.path} has no instance: a cross-instance split needs every row's "
                "generator training (the manifest's 'instance' column)"
            )
        groups.setdefault(key or r.path, []).append(i)
    splits = ["" if overwrite else r.split for r in rows]
    open_groups = []
    for key in sorted(groups):
        given = {splits[i] for i in groups[key]} - {""}
        if len(given) > 1:
            raise DataError(
                f"{group_by} {key!r} is already in splits {sorted(given)}; it must stay "
                "in one split (re-split with overwrite=True)"
            )
        if given:
            (split,) = given
            for i in groups[key]:
                splits[i] = split
        else:
            open_groups.append(key)
    order = [groups[open_groups[j]] for j in rng.permutation(len(open_groups))]
    _deal_groups(order, fractions, splits)
    return splits


def _deal_groups(groups: list[list[int]], fractions: Sequence[float], splits: list[str]) -> None:
    """Give each group (in the given order) to the split furthest below its target."""
    total = sum(len(g) for g in groups)
    targets = [f * total for f in fractions]
    filled = [0] * len(SPLITS)
    allowed = [s for s, f in enumerate(fractions) if f > 0]
    for group in groups:
        k = max(allowed, key=lambda s: (targets[s] - filled[s], -s))
        filled[k] += len(group)
        for i in group:
            splits[i] = SPLITS[k]


# ----------------------------------------------------------------------------- command line


def _parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise ConfigError(f"--split {text!r}: expected three numbers like 0.7,0.15,0.15") from exc
    return check_fractions(values)


def _summary(rows: list[ManifestRow]) -> str:
    splits = Counter(r.split or "none" for r in rows)
    qualities = sorted({r.quality for r in rows if r.quality})
    return (
        f"{len(rows)} rows, {len(class_names(rows))} classes {class_names(rows)}, "
        f"qualities {qualities or 'none'}, splits {dict(sorted(splits.items()))}, "
        f"{len({r.source_id for r in rows})} sources, "
        f"{len({r.instance for r in rows if r.instance})} instances"
    )


def _build(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"--out {out}: use a .csv or .json file name")
    if args.random_split and args.split_by == "instance":
        raise ConfigError("--random-split and --split-by instance exclude each other")
    if args.split_by == "instance" and not args.instance_pattern:
        raise ConfigError("--split-by instance needs --instance-pattern (the generator training)")
    rows = scan_tree(args.tree, layout=args.layout, source_pattern=args.source_pattern)
    if args.instance_pattern:
        pattern = _compile(args.instance_pattern)
        rows = [replace(r, instance=_source(Path(r.path).stem, pattern)) for r in rows]
    if args.split != "none":
        default = PAPER_RANDOM_SPLIT if args.random_split else DEFAULT_SPLIT
        fractions = _parse_fractions(args.split) if args.split else default
        group_by = None if args.random_split else args.split_by
        rows = assign_splits(rows, fractions, seed=args.seed, group_by=group_by)
    write_manifest(rows, out)
    print(f"wrote {out}: {_summary(rows)}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m attribnet.data.manifest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="scan a folder tree into a manifest")
    build.add_argument("tree", help="folder of <class>/ or <quality>/<class>/ folders")
    build.add_argument("--out", required=True, help="manifest to write (.csv or .json)")
    build.add_argument(
        "--split",
        default="",
        help="train,val,test fractions (default 0.7,0.15,0.15 grouped by source; "
        "0.7,0.0,0.3 with --random-split); 'none' leaves splits empty",
    )
    build.add_argument(
        "--random-split",
        action="store_true",
        help="split per video at random (the paper's 70/30), not by source_id",
    )
    build.add_argument(
        "--split-by",
        choices=SPLIT_GROUPS,
        default="source_id",
        help="what one split keeps together: the source content (paper-like protocol) or "
        "the generator training (cross-instance protocol; needs --instance-pattern)",
    )
    build.add_argument(
        "--instance-pattern",
        default=None,
        help="regex picking the instance (generator training) from a video's name; "
        "group 1 if it has one, e.g. '-to-(.+)$'",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--layout", choices=LAYOUTS, default=LAYOUTS[0])
    build.add_argument("--source-pattern", default=None, help="regex picking source_id")
    build.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; user errors print one line and return 2."""
    from attribnet.logs import setup_logging

    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        _build(args)
    except AttribnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
