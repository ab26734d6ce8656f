"""The command line of ``python -m attribnet.export`` (``attribnet-export``).

    python -m attribnet.export onnx --checkpoint runs/<name>/best.pt --out model.onnx --sam

Writes the ONNX graph (:mod:`attribnet.export.onnx_export`) with the checkpoint's recipe
(YAML), class names (JSON) and sha256 as metadata, then runs one random clip through ONNX
Runtime and PyTorch and fails when an output differs by more than
:data:`attribnet.export.onnx_export.TOLERANCE` (``--no-check`` skips this).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

import torch

from attribnet.cli import Parser, add_verbose, run_cli
from attribnet.errors import AttribnetError
from attribnet.export.onnx_export import ONNX_OPSET, TOLERANCE, export_onnx, max_differences
from attribnet.export.onnx_export import require as require_module
from attribnet.export.onnx_runtime_model import OnnxRuntimeModel

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m attribnet.export``."""
    parser = Parser(
        prog="python -m attribnet.export",
        description="Export a trained model for other runtimes.",
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    onnx = formats.add_parser("onnx", help="ONNX graph of the model (ONNX Runtime and others)")
    onnx.add_argument("--checkpoint", required=True, help="runs/<name>/best.pt or a run folder")
    onnx.add_argument("--out", required=True, help="the .onnx file to write")
    onnx.add_argument(
        "--sam", action="store_true", help="also output the SAM maps (needed by the query)"
    )
    onnx.add_argument("--opset", type=int, default=ONNX_OPSET, help="ONNX opset version")
    onnx.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime check")
    add_verbose(onnx)
    return parser


def _export(args: argparse.Namespace) -> int:
    """Export the checkpoint, then check it with ONNX Runtime (unless --no-check)."""
    from attribnet.checkpoint import file_sha256, load_model, resolve_checkpoint
    from attribnet.config import dump_recipe

    require_module("onnx")
    if not args.no_check:
        require_module("onnxruntime")
    model, recipe, class_names, _ = load_model(args.checkpoint)
    source = resolve_checkpoint(args.checkpoint)  # as load_model reads it
    size, frames = recipe.data.image_size, recipe.data.num_frames
    metadata = {
        "recipe": dump_recipe(recipe),
        "class_names": json.dumps(class_names),
        "checkpoint_sha256": file_sha256(source),
    }
    names = export_onnx(
        model, args.out, num_frames=frames, image_size=size, sam=args.sam,
        metadata=metadata, opset=args.opset,
    )  # fmt: skip
    log.info("wrote %s: clips (B, %d, 3, %d, %d) -> %s", args.out, frames, size, size, names)
    if args.no_check:
        return 0
    clips = torch.randn(1, frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    diffs = max_differences(OnnxRuntimeModel.load(args.out), model, clips, size)
    report = ", ".join(f"{n} {d:.2g}" for n, d in diffs.items())
    if max(diffs.values()) > TOLERANCE:
        raise AttribnetError(f"ONNX Runtime differs from PyTorch beyond {TOLERANCE}: {report}")
    log.info("ONNX Runtime matches PyTorch (max |difference|: %s)", report)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (exit codes: :mod:`attribnet.cli`)."""
    return run_cli(build_parser(), argv, _export)
