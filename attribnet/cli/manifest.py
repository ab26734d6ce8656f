"""The command line: ``python -m attribnet.data.manifest build ...``."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from attribnet.cli import Parser, add_verbose, run_cli
from attribnet.data.manifest.rows import ManifestRow, class_names, write_manifest
from attribnet.data.manifest.splits import (
    DEFAULT_SPLIT,
    PAPER_RANDOM_SPLIT,
    SPLIT_GROUPS,
    assign_splits,
    check_fractions,
)
from attribnet.data.manifest.tree import LAYOUTS, compile_pattern, name_part, scan_tree
from attribnet.errors import ConfigError


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
        pattern = compile_pattern(args.instance_pattern)
        rows = [replace(r, instance=name_part(Path(r.path).stem, pattern)) for r in rows]
    if args.split != "none":
        default = PAPER_RANDOM_SPLIT if args.random_split else DEFAULT_SPLIT
        fractions = _parse_fractions(args.split) if args.split else default
        group_by = None if args.random_split else args.split_by
        rows = assign_splits(rows, fractions, seed=args.seed, group_by=group_by)
    write_manifest(rows, out)
    print(f"wrote {out}: {_summary(rows)}")


def _parser() -> argparse.ArgumentParser:
    from attribnet.data import manifest

    parser = Parser(
        command="manifest",
        description=manifest.__doc__,
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
    add_verbose(build)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; exit codes as :mod:`attribnet.cli` says."""
    return run_cli(_parser(), argv, _build)
