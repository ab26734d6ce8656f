"""The command line: ``python -m attribnet.data.synthetic <out_dir> ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from attribnet.data.codec import DFDM_CRFS
from attribnet.data.synthetic import generators
from attribnet.data.synthetic.dataset import REAL_CLASS, generate_demo
from attribnet.data.synthetic.generators import ARCHITECTURES, DEMO_CLASSES, UNSEEN_CLASS


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: generate the demo dataset into a folder."""
    from attribnet.data import synthetic
    from attribnet.logs import setup_logging

    parser = argparse.ArgumentParser(
        prog="python -m attribnet.data.synthetic",
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
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
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
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(manifest)
    return 0
