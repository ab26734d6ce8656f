"""The command line: ``python -m attribnet.index build ...`` and ``... info <folder>``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from attribnet.cli import (
    Parser,
    add_clips_per_video,
    add_speed,
    add_verbose,
    check_batch_size,
    run_cli,
)
from attribnet.index.build import build_index_for_run
from attribnet.index.faiss_store import DEFAULT_IVF_THRESHOLD
from attribnet.index.store import GeneratorIndex
from attribnet.runtime.distributed import command_process_group

DESCRIPTION = "The generator index: nearest-neighbour search over embeddings of training videos."


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m attribnet.index``."""
    parser = Parser(command="index", description=DESCRIPTION)
    add_verbose(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    build = sub.add_parser("build", help="embed a run's training videos into an index")
    build.add_argument("--checkpoint", required=True, help="<run>/best.pt or a run folder")
    build.add_argument("--out", required=True, help="index folder, e.g. indexes/<name>")
    build.add_argument("--manifest", help="index these rows instead of the recipe's cache")
    add_clips_per_video(build)
    add_speed(build, "the recipe's train.batch_size")
    build.add_argument("--ivf-threshold", type=int, default=DEFAULT_IVF_THRESHOLD)
    build.add_argument(
        "--nprobe", type=int, default=None,
        help="IVF lists searched (default: tuned to recall@10 >= 0.95 at build time)",
    )  # fmt: skip
    info = sub.add_parser("info", help="summarise an index folder")
    info.add_argument("folder", help="index folder")
    info.add_argument("--checkpoint", help="also check that this checkpoint matches")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.command == "build":
        check_batch_size(args.batch_size)
        # under torchrun: every rank embeds its share, rank 0 writes
        with command_process_group() as main_rank:
            out = build_index_for_run(
                args.checkpoint,
                args.out,
                args.manifest,
                clips_per_video=args.clips_per_video,
                ivf_threshold=args.ivf_threshold,
                nprobe=args.nprobe,
                batch_size=args.batch_size,
                precision=args.precision,
            )
        if main_rank:
            print(f"index written to {out}")
        return
    index = GeneratorIndex.load(args.folder, args.checkpoint)
    print(json.dumps(index.info(), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 done, 2 a user error (one line on stderr), 130
    interrupted (:func:`attribnet.cli.run_cli`)."""
    return run_cli(build_parser(), argv, _run)
