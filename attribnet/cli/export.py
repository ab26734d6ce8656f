"""The command line of ``python -m attribnet.export`` (``attribnet-export``).

    python -m attribnet.export onnx --checkpoint runs/<name>/best.pt --out model.onnx --sam
    python -m attribnet.export onnx --checkpoint runs/<name>/best.pt --out int8.onnx --sam --int8

Writes the ONNX graph (:mod:`attribnet.export.onnx_export`) with the checkpoint's recipe
(YAML), class names (JSON) and sha256 as metadata, then runs one random clip through ONNX
Runtime and PyTorch and fails when an output differs by more than
:data:`attribnet.export.onnx_export.TOLERANCE` (``--no-check`` skips this).

``--int8`` writes the int8 model instead (:mod:`attribnet.export.onnx_int8`): calibrated on
the run's training videos, checked on its validation videos, refused below
``--min-agreement``. Nothing is written when a check fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from attribnet.cli import Parser, add_verbose, run_cli
from attribnet.errors import AttribnetError, DataError
from attribnet.export.onnx_export import ONNX_OPSET, TOLERANCE, export_onnx, max_differences
from attribnet.export.onnx_export import require as require_module
from attribnet.export.onnx_int8 import (
    DEFAULT_MIN_AGREEMENT,
    agreement,
    calibration_clips,
    draw,
    quantize,
    set_metadata,
)
from attribnet.export.onnx_runtime_model import OnnxRuntimeModel
from attribnet.files.atomic import atomic_path

if TYPE_CHECKING:
    from attribnet.config import Recipe
    from attribnet.models import AttributionModel

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m attribnet.export``."""
    parser = Parser(
        command="export",
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
    int8 = onnx.add_argument_group("int8 (static quantisation by ONNX Runtime)")
    int8.add_argument("--int8", action="store_true", help="write the int8 model")
    int8.add_argument("--manifest", help="videos to calibrate and check on (default: the run's)")
    int8.add_argument("--calibration-videos", type=_positive, default=64,
                      help="training videos calibrated on, one clip each (default 64)")  # fmt: skip
    int8.add_argument("--check-videos", type=_positive, default=64,
                      help="validation videos checked on (default 64)")  # fmt: skip
    int8.add_argument(
        "--min-agreement", type=_share, default=DEFAULT_MIN_AGREEMENT,
        help="refuse below this share of checked videos with PyTorch's top generator "
        f"(default {DEFAULT_MIN_AGREEMENT})",
    )  # fmt: skip
    add_verbose(onnx)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def _export(args: argparse.Namespace) -> int:
    """Export the checkpoint, then check it with ONNX Runtime (unless --no-check)."""
    from attribnet.config import dump_recipe
    from attribnet.files.checkpoints import file_sha256, resolve_checkpoint
    from attribnet.models.restore import load_model

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
    if args.int8:
        return _export_int8(args, model, recipe, class_names, metadata)
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


def _export_int8(
    args: argparse.Namespace,
    model: AttributionModel,
    recipe: Recipe,
    class_names: list[str],
    metadata: dict[str, str],
) -> int:
    """Export, quantise (calibrated on training videos), check on validation videos."""
    from attribnet.data.sources import run_videos, split_videos

    require_module("onnxruntime")
    data = recipe.data
    cache, pairs = run_videos(recipe, args.manifest)
    train, _, _ = split_videos(pairs, "train", data.train_qualities, class_names, data.num_frames)
    if not train:
        raise DataError(
            f"int8 calibration needs the run's training videos: none of classes {class_names} "
            f"in cache {cache.root}; give --manifest with videos of them"
        )
    check, _, _ = split_videos(pairs, "val", data.eval_qualities, class_names, data.num_frames)
    if not check and not args.no_check:
        log.warning("no validation videos: checking on the training videos that calibrated it")
        check = train
    clips = calibration_clips(cache, train, recipe, args.calibration_videos)
    with tempfile.TemporaryDirectory(prefix="attribnet-int8-") as tmp, atomic_path(args.out) as out:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(model, fp32, num_frames=data.num_frames, image_size=data.image_size,
                    sam=args.sam, metadata=metadata, opset=args.opset)  # fmt: skip
        kept = quantize(fp32, out, clips)
        log.info("quantised on %d training clips; kept in fp32: %s", len(clips), ", ".join(kept))
        if not args.no_check:
            runtime = OnnxRuntimeModel.load(out)
            figures = agreement(runtime, model, cache, draw(check, args.check_videos), recipe)
            report = (f"{figures['top1_agreement']:.3f} of {int(figures['videos'])} videos with "
                      f"PyTorch's top generator, probabilities within "
                      f"{figures['max_probability_difference']:.3g}, embedding cosine >= "
                      f"{figures['min_embedding_cosine']:.4f}")  # fmt: skip
            if figures["top1_agreement"] < args.min_agreement:
                raise AttribnetError(f"int8 model refused (--min-agreement "
                                     f"{args.min_agreement}): {report}")  # fmt: skip
            set_metadata(out, {"int8_agreement": json.dumps(figures)})
            log.info("int8 against PyTorch: %s", report)
    log.info("wrote %s (int8)", args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (exit codes: :mod:`attribnet.cli`)."""
    return run_cli(build_parser(), argv, _export)
