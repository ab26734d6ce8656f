"""The command line of ``python -m attribnet.query``: :func:`build_parser`, :func:`run`
(the report written with ``--json``) and :func:`main` (the report printed as tables).

Exit codes: 0 at least one video was attributed, 1 none could be, 2 a usage error.

Under torchrun (``torchrun --nproc_per_node N -m attribnet.query --manifest M.csv ...``)
every rank crops and attributes a contiguous share of the videos on its own device (with
``--cache C``, into ``C/rank<r>``: ranks do not wait on one cache's lock), and rank 0
gathers the results in input order and writes the report; the others print nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attribnet.cli import (
    DONE,
    NOTHING,
    Parser,
    add_clips_per_video,
    add_neighbours,
    add_speed,
    add_verbose,
    check_batch_size,
    run_cli,
)
from attribnet.data.manifest import read_manifest
from attribnet.errors import ConfigError
from attribnet.files.atomic import write_json
from attribnet.query.attributor import Attribution, Attributor
from attribnet.query.cluster import cluster_embeddings, default_cluster_threshold, describe_clusters
from attribnet.query.html import write_html
from attribnet.query.render import format_clusters, format_table, plot_embeddings
from attribnet.query.videos import find_videos
from attribnet.runtime.distributed import command_process_group, gather, rank_and_world, shard

if TYPE_CHECKING:
    from attribnet.index import GeneratorIndex

log = logging.getLogger(__name__)

DESCRIPTION = "Which known generator made each video, how sure, or is it from an unseen generator?"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m attribnet.query``."""
    parser = Parser(command="query", description=DESCRIPTION)
    parser.add_argument("inputs", nargs="*", help="video files, frame folders or folders")
    parser.add_argument(
        "--manifest", help="also the videos of this manifest (CSV/JSON; its labels are unused)"
    )
    parser.add_argument("--index", required=True, help="index folder, e.g. indexes/<name>")
    parser.add_argument("--checkpoint", help="model (default: the one the index was built by)")
    add_neighbours(parser)
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--cluster", action="store_true", help="group the queries")
    parser.add_argument("--cluster-threshold", type=float, help="cosine-distance cut")
    parser.add_argument("--plot", help="write a 2-D PCA plot (PNG) to this file")
    parser.add_argument("--html", help="write a self-contained HTML report (index.html) here")
    parser.add_argument("--cache", help="face cache folder for the queries (default: temp)")
    add_clips_per_video(parser)
    parser.add_argument(
        "--onnx",
        metavar="FILE",
        help="run the model with ONNX Runtime on the CPU from FILE, written by "
        "'python -m attribnet.export onnx --sam' from the index's checkpoint",
    )
    add_speed(parser, "one video per pass, its answer independent of the other queries")
    add_verbose(parser)
    return parser


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    """Do what the command line asks; returns the report written with --json (None on the
    ranks other than 0 under torchrun)."""
    if args.k < 1:
        raise ConfigError(f"--neighbours must be >= 1, got {args.k}")
    check_batch_size(args.batch_size)
    inputs = list(args.inputs)
    if args.manifest:
        inputs += [row.path for row in read_manifest(args.manifest)]
    if not inputs:
        raise ConfigError("nothing to query: give videos, folders or --manifest")
    attributor = Attributor.load(
        args.index, args.checkpoint, onnx=args.onnx, precision=args.precision
    )
    results = gather(_attribute_share(attributor, inputs, args))
    if results is None:  # not rank 0: its results are on rank 0 now
        return None
    index = attributor.index
    report: dict[str, Any] = {
        "index": str(args.index),
        "checkpoint": str(attributor.checkpoint),
        "threshold": index.open_set.threshold,
        "score_name": index.open_set.score,
        "k": args.k,
        "videos": [r.to_dict() for r in results],
    }
    if args.onnx:
        report["onnx"] = str(args.onnx)
        meta = attributor.onnx.metadata
        if meta.get("precision", "fp32") != "fp32":  # an int8 model, and its export's check
            report["precision"] = meta["precision"]
            report["int8_agreement"] = json.loads(meta.get("int8_agreement", "null"))
    if args.precision != "fp32":
        report["precision"] = args.precision
    ok = [r for r in results if r.ok]
    if (args.cluster or args.plot) and ok:
        _cluster(args, index, ok, report)
    if args.html:
        page = write_html(
            args.html, results, index, face_cache=attributor.recipe.data.cache,
            index_name=str(args.index), cluster_threshold=args.cluster_threshold,
        )  # fmt: skip
        report["html"] = str(page)
    return report


def _attribute_share(
    attributor: Attributor, inputs: list[str], args: argparse.Namespace
) -> list[Attribution]:
    """Attribute this rank's share of ``inputs`` (all of them outside a process group).

    Rank ``r`` takes a contiguous block of the videos found; rank 0 also reports the inputs
    that are not videos, first, as one process does, so the gathered list is in its order.
    """
    rank, world = rank_and_world()
    cache = args.cache
    if world > 1:
        videos, missing = find_videos(inputs)
        inputs = [videos[i] for i in shard(len(videos))] + (list(missing) if rank == 0 else [])
        cache = str(Path(args.cache) / f"rank{rank}") if args.cache else None
    if not inputs:
        return []
    found = attributor.attribute(
        inputs,
        k=args.k,
        clips_per_video=args.clips_per_video,
        cache_dir=cache,
        progress=sys.stderr.isatty(),
        batch_size=args.batch_size,
    )
    return found if isinstance(found, list) else [found]


def _cluster(
    args: argparse.Namespace, index: GeneratorIndex, ok: list[Attribution], report: dict[str, Any]
) -> None:
    """Add ``clusters`` (with --cluster) to the report and draw --plot."""
    embeddings = np.stack([r.embedding for r in ok])
    cut = args.cluster_threshold or default_cluster_threshold(index)
    clusters = cluster_embeddings(embeddings, cut)
    if args.cluster:
        report["cluster_threshold"] = cut
        unknown = np.array([r.is_unknown for r in ok])
        paths = [r.video for r in ok]
        report["clusters"] = describe_clusters(index, embeddings, clusters, paths, unknown)
    if args.plot:
        plot_embeddings(index, embeddings, args.plot, clusters)
        report["plot"] = str(args.plot)


def _print_report(report: dict[str, Any]) -> None:
    print(format_table(report["videos"]))
    if "clusters" in report:
        print(f"\nclusters (cosine-distance cut {report['cluster_threshold']:.3f}):")
        print(format_clusters(report["clusters"]))
    ok = sum(r["status"] == "ok" for r in report["videos"])
    print(f"\n{ok} of {len(report['videos'])} videos attributed")


def _command(args: argparse.Namespace) -> int:
    """Run, write --json, print the tables; 0 when a video was attributed, else 1. Under
    torchrun the ranks share the videos and rank 0 reports."""
    with command_process_group():
        report = run(args)
    if report is None:
        return DONE
    if args.json:
        write_json(args.json, report)
    _print_report(report)
    if args.json:
        log.info("results written to %s", args.json)
    if args.html:
        log.info("HTML report written to %s", report["html"])
    return DONE if any(r["status"] == "ok" for r in report["videos"]) else NOTHING


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring for the exit codes."""
    return run_cli(build_parser(), argv, _command)
