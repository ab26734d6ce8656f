"""``attribnet-convert``: checkpoints of other implementations as attribnet checkpoints.

    attribnet-convert dmasta-authors STATE.pt --out runs/dmasta/best.pt \\
        --classes faceswap,lightweight,iae,dfaker,dfl [--name NAME] [--set KEY=VALUE]

``dmasta-authors``: a state dict of the DMA-STA authors' code (:mod:`attribnet.models.authors`
says how it maps and what the checkpoint holds).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from attribnet.cli import Parser, add_verbose, run_cli
from attribnet.config import add_overrides_argument
from attribnet.errors import ConfigError
from attribnet.models.authors import convert_file


def _class_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ConfigError(f"--classes: expected distinct comma-separated names, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``attribnet-convert``."""
    parser = Parser(
        command="convert",
        description="Convert another implementation's checkpoint into an attribnet checkpoint.",
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    authors = formats.add_parser(
        "dmasta-authors", help="a state dict of the DMA-STA authors' code (Jia, Li, Lyu 2022)"
    )
    authors.add_argument("state", help="the authors' state dict (.pt/.pth)")
    authors.add_argument("--out", required=True, help="the checkpoint to write (runs/<x>/best.pt)")
    authors.add_argument(
        "--classes",
        required=True,
        type=_class_list,
        help="the generators in the order of the classifier's outputs, comma-separated",
    )
    authors.add_argument("--name", help="the recipe's name (default: the --out folder's)")
    authors.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_overrides_argument(authors)
    add_verbose(authors)
    return parser


def _convert(args: argparse.Namespace) -> int:
    convert_file(
        args.state, args.out, args.classes, name=args.name, overrides=args.overrides,
        overwrite=args.overwrite,
    )  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (exit codes: :mod:`attribnet.cli`)."""
    return run_cli(build_parser(), argv, _convert)


if __name__ == "__main__":
    raise SystemExit(main())
