"""Decode every video of a manifest once, crop its face, and store the crops in a cache.

    attribnet-preprocess data/dfdm.csv --out cache/dfdm --detector none

Each video keeps ``--max-frames`` evenly spaced frames (all of a shorter video; 0 = all).
A video that cannot be decoded or has no face is skipped and listed with its reason; the
run goes on. Whatever the detector, the face crops of every video must show a face (the
face check, :class:`attribnet.data.face_check.FaceCheck`; ``--no-face-check`` turns it off): a
video of noise, of one colour or without a face in most frames is skipped as "no face".
Re-running the same command resumes: finished and skipped videos are not touched again
(until their file changes: a fixed video is tried again), so an interrupted run loses at
most the video in progress. At the end ``<out>/report.json`` lists what was
done, skipped and failed.

One preprocess at a time per cache: ``<out>/preprocess.lock`` names the running one, and
a second run on the same cache waits for it to finish, then does only what is left.

Exit codes: 0 done (some videos may be skipped), 1 some videos failed with an unexpected
error (they are retried by a re-run), 2 a usage error (missing manifest, bad argument),
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from attribnet.cli import Parser, run_cli
from attribnet.data.faces import FaceDetector, build_detector
from attribnet.data.manifest import read_manifest
from attribnet.data.preprocess import DETECTOR_NAMES, run_preprocess
from attribnet.data.video import BACKENDS
from attribnet.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``attribnet-preprocess``."""
    parser = Parser(command="preprocess", description=__doc__.split("\n")[0])
    parser.add_argument("manifest", help="manifest .csv or .json (path,label,...)")
    parser.add_argument("--out", required=True, help="face cache folder (created or resumed)")
    parser.add_argument(
        "--detector",
        choices=DETECTOR_NAMES,
        default="haar",
        help="'none': frames are already face crops (default haar)",
    )
    parser.add_argument("--cascade", help="Haar cascade XML (default: OpenCV's bundled one)")
    parser.add_argument("--size", type=int, default=224, help="crop side in pixels")
    parser.add_argument(
        "--margin", type=float, default=0.3, help="crop side = face side x (1 + margin)"
    )
    parser.add_argument(
        "--max-frames", type=int, default=64, help="evenly spaced frames kept per video (0 = all)"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="video decoder")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds allowed per video decode (0 = no limit)",
    )
    parser.add_argument(
        "--no-face-check",
        action="store_true",
        help="keep videos whose face crops show no face (noise, one colour, no face in "
        "most frames); by default they are skipped whatever the detector",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _detector_from_args(args: argparse.Namespace) -> FaceDetector:
    if args.cascade and args.detector != "haar":
        raise ConfigError("--cascade only applies to --detector haar")
    kwargs = {"cascade_path": Path(args.cascade)} if args.cascade else {}
    return build_detector(args.detector, **kwargs)


def _command(args: argparse.Namespace) -> int:
    _, report = run_preprocess(
        read_manifest(args.manifest),
        args.out,
        detector=_detector_from_args(args),
        size=args.size,
        margin=args.margin,
        max_frames=args.max_frames,
        backend=args.backend,
        timeout_s=args.timeout or None,
        progress=not args.no_progress,
        face_check=not args.no_face_check,
    )
    return 1 if report["failed"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    resume = "interrupted: run the same command again to resume"
    return run_cli(build_parser(), argv, _command, interrupted=resume)


if __name__ == "__main__":
    sys.exit(main())
