"""The command line: ``python -m attribnet.data.synthetic <out_dir> ...``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from attribnet.cli import Parser, add_verbose, run_cli
from attribnet.data.codec import DFDM_CRFS
from attribnet.data.synthetic import generators
from attribnet.data.synthetic.dataset import REAL_CLASS, generate_demo
from attribnet.data.synthetic.generators import ARCHITECTURES, DEMO_CLASSES, UNSEEN_CLASS
from attribnet.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from attribnet.data import synthetic

    parser = Parser(
        command="synthetic",
        description=f"{synthetic.__doc__}\n{generators.__doc__}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", help="folder to write the videos and manifest.csv into")
    parser.add_argument("--sources", type=int, default=24, help="source sequences")
    parser.add_argument("--frames", type=int, default=20, help="frames per video")
    parser.add_argument("--size", type=int, default=64, help="frame size in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sources and split")
    parser.add_argument(
        "--qualities", type=int, nargs="+", default=list(DFDM_CRFS), help="H.264 crf values"
    )
    parser.add_argument(
        "--generators",
        nargs="+",
        default=list(DEMO_CLASSES),
        choices=[*sorted(ARCHITECTURES), REAL_CLASS],
        help=f"toy generators to render (default: the five classes; '{UNSEEN_CLASS}' is held "
        f"out; '{REAL_CLASS}' writes the un-swapped sources)",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="instances (weight draws) per architecture; > 1 splits by instance",
    )
    add_verbose(parser)
    return parser


def _generate(args: argparse.Namespace) -> int:
    try:
        manifest = generate_demo(
            args.out_dir,
            num_sources=args.sources,
            num_frames=args.frames,
            size=args.size,
            seed=args.seed,
            qualities=args.qualities,
            generators=args.generators,
            instances=args.instances,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    print(manifest)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: generate the demo dataset into a folder (exit codes:
    :mod:`attribnet.cli`)."""
    return run_cli(build_parser(), argv, _generate)
