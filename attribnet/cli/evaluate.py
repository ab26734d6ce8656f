"""``python -m attribnet.evaluate {run,cross-quality,compare,open-set} ... --out <dir>``

Robustness evaluation of attribution models; every command writes its numbers to
``<out>/metrics.json`` and a ``<out>/report.md`` that links its PNG plots.

``run --checkpoint <run>/best.pt [--manifest m.csv] [--split test] [--qualities crf0,crf23]
[--clips-per-video 4] [--unknown-manifest u.csv] [--index indexes/<name>]``
    Closed-set attribution on the test split of the checkpoint's data (its recipe's face
    cache, restricted to its recipe's manifest when that file exists; with ``--manifest``
    those rows, preprocessed first with the recipe's detector and face size): accuracy,
    per-class accuracy, macro-F1 and confusion matrix (PNG + CSV), at clip level and at
    video level (mean of the clip probabilities of a video), per quality as well when the
    test set holds several. With an embedding head: kNN (k = 14), logistic regression and
    linear SVM fit on VALIDATION embeddings and scored on test, and a t-SNE plot. With a
    class named ``real``: detection metrics, threshold at validation FPR 10%. With
    ``--unknown-manifest`` (videos of generators not in training): open-set AUROC, OSCR
    and TNR at 95% TPR.
``cross-quality --recipe r.yaml --qualities crf0,crf10,crf23 [--train-mode per-quality]``
    The paper's Table 5: one model per training quality (trained with ``train.fit``, or
    reused when its run already finished; an interrupted run is resumed), each tested on
    every quality's test split of the data the recipe names (its ``data.cache`` and
    ``data.manifest``, also for a reused run trained where they were before); a
    video-level confusion matrix (PNG + CSV) per cell, and
    the report says which runs were trained, resumed or reused, with which overrides.
    ``--train-mode augmented`` trains one model on all qualities.
    ``--train-qualities crf0`` trains only those rows (each still tested on every
    ``--qualities``).
    ``--checkpoints crf0=a.pt,crf23=b.pt`` skips training.
``compare --recipes R1.yaml R2.yaml ... [--demo]`` (also ``ablations``)
    Train (or reuse) each recipe and tabulate its per-class test accuracy beside the
    non-deep baseline: the paper's Table 3 with ``recipes/ablations/*.yaml``, its Table 4
    with ``recipes/dfdm_dmasta.yaml recipes/table4/*.yaml``. ``--demo`` runs demo-sized
    variants on the built-in synthetic data.
``open-set --recipe r.yaml``
    Leave one generator out: per class c of the recipe's data (``data.classes``, else
    every class of its manifest; at least 3), a model trained (or reused, or resumed) on
    the other classes, run ``<name>_logo_<c>``, tested with c's TEST-split videos as the
    unknowns (written to ``unknown_<c>.csv``; none shares a source with a training or
    validation video) and the other classes' test videos as the knowns: AUROC, OSCR and
    TNR at 95% TPR of every knownness score, the unknown verdict's marked, and their mean
    over the held-out classes. The run's generator index gives the verdict score (built
    when the recipe builds indexes and it is missing).

Evaluation is deterministic: periodic frame sampling, no augmentation, up to ``clips_per_video``
phase-shifted periodic clips per video (training's frame stride, one clip per full stride
of frames: :func:`attribnet.predict.predict_videos`), seeded classifiers and
t-SNE; the same command gives the same ``metrics.json``. Undefined numbers (a class
without test videos) are ``null`` there.

Exit codes: 0 done, 2 a user error (one line ``error: ...`` on stderr).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attribnet.cli import Parser, add_clips_per_video, add_neighbours, add_verbose, run_cli
from attribnet.config import add_overrides_argument, load_recipe
from attribnet.errors import ConfigError
from attribnet.evaluate.compare_table import compare, compare_recipe, write_compare
from attribnet.evaluate.cross_quality_table import (
    cross_quality,
    quality_variants,
    training_summary,
    write_cross_quality,
)
from attribnet.evaluate.loaded_model import load_checkpoint
from attribnet.evaluate.open_set_table import leave_one_out, write_open_set
from attribnet.evaluate.options import EvalOptions
from attribnet.evaluate.run import evaluate_model, write_run
from attribnet.evaluate.source import recipe_data
from attribnet.evaluate.training import prepare_run, recipe_changes
from attribnet.metrics.embedding import DEFAULT_NEIGHBOURS

log = logging.getLogger(__name__)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (report.md, metrics.json)")
    parser.add_argument("--qualities", help="comma-separated qualities to test, e.g. crf0,crf23")
    add_clips_per_video(parser)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers (recipe's)")
    parser.add_argument("--seed", type=int, help="default: the recipe's train.seed")
    add_verbose(parser)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m attribnet.evaluate``."""
    parser = Parser(command="evaluate", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="evaluate one checkpoint on its test split")
    run.add_argument("--checkpoint", required=True, help="<run>/best.pt or a run folder")
    run.add_argument("--manifest", help="evaluate these rows (preprocessed when needed)")
    run.add_argument("--split", choices=("train", "val", "test"), default="test")
    run.add_argument("--unknown-manifest", help="videos of unseen generators (open set)")
    run.add_argument("--index", help="generator index folder of this checkpoint")
    run.add_argument("--cache", help="face cache folder (default: the recipe's)")
    add_neighbours(run)
    run.add_argument("--no-tsne", action="store_true", help="skip the t-SNE plot")
    _common(run)
    cq = sub.add_parser("cross-quality", help="train x test quality table (Table 5)")
    cq.add_argument("--recipe", help="recipe to train one model per quality from")
    cq.add_argument("--train-mode", choices=("per-quality", "augmented"), default="per-quality")
    cq.add_argument(
        "--train-qualities", help="per-quality rows to train (default: every --qualities)"
    )
    cq.add_argument("--checkpoints", help="row=path,... of trained models (skips training)")
    cq.add_argument("--split", choices=("val", "test"), default="test",
                    help="the split tested (val: to choose between recipes)")  # fmt: skip
    add_overrides_argument(cq)
    _common(cq)
    ab = sub.add_parser(
        "compare", aliases=["ablations"], help="train/evaluate several recipes (Tables 3, 4)"
    )
    ab.add_argument("--recipes", nargs="+", required=True, help="recipe YAML files")
    ab.add_argument(
        "--demo",
        nargs="?",
        const="",
        default=None,
        metavar="DEMO_YAML",
        help="demo-sized variants on the synthetic data (default recipes/demo.yaml)",
    )
    add_overrides_argument(ab)
    _common(ab)
    lo = sub.add_parser("open-set", help="leave-one-generator-out open-set table")
    lo.add_argument("--recipe", required=True, help="recipe whose classes are held out in turn")
    add_overrides_argument(lo)
    _common(lo)
    return parser


def _split_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"expected a comma-separated list, got {text!r}")
    return items


def _parse_checkpoints(text: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in _split_list(text) or []:
        row, sep, path = item.partition("=")
        if not sep or not row or not path:
            raise ConfigError(f"--checkpoints expects row=path,..., got {item!r}")
        out[row.strip()] = Path(path.strip())
    return out


def _options(args: argparse.Namespace) -> EvalOptions:
    if args.clips_per_video < 1:
        raise ConfigError(f"--clips-per-video must be >= 1, got {args.clips_per_video}")
    k = getattr(args, "k", DEFAULT_NEIGHBOURS)
    if k < 1:
        raise ConfigError(f"--neighbours must be >= 1, got {k}")
    return EvalOptions(
        split=getattr(args, "split", "test"),
        qualities=_split_list(args.qualities),
        clips_per_video=args.clips_per_video,
        manifest=getattr(args, "manifest", None),
        unknown_manifest=getattr(args, "unknown_manifest", None),
        cache=getattr(args, "cache", None),
        index=getattr(args, "index", None),
        k=k,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        tsne=not getattr(args, "no_tsne", False),
    )


def _run(args: argparse.Namespace, opts: EvalOptions) -> dict[str, Any]:
    loaded = load_checkpoint(args.checkpoint, args.device)
    result = evaluate_model(loaded, opts)
    return write_run(Path(args.out), result, opts)


def _cross_quality(args: argparse.Namespace, opts: EvalOptions) -> dict[str, Any]:
    if args.checkpoints:
        if args.recipe or args.overrides:
            log.warning("--checkpoints given: --recipe and --set are not used")
        checkpoints = _parse_checkpoints(args.checkpoints)
        qualities = opts.qualities or list(checkpoints)
        training = training_summary({}, {})
    else:
        if not args.recipe or not opts.qualities:
            raise ConfigError("cross-quality needs --recipe and --qualities (or --checkpoints)")
        base = load_recipe(args.recipe, args.overrides)
        rows = _split_list(args.train_qualities) or opts.qualities
        variants = quality_variants(base, rows, args.train_mode)
        runs = {row: prepare_run(r) for row, r in variants.items()}
        checkpoints = {row: run.checkpoint for row, run in runs.items()}
        changes = {row: recipe_changes(base, r) for row, r in variants.items()}
        training = training_summary(runs, changes, args.recipe, args.overrides)
        qualities = opts.qualities
        opts = recipe_data(base, opts)
    metrics = cross_quality(checkpoints, qualities, opts, args.device)
    metrics["train_mode"] = args.train_mode if not args.checkpoints else "given checkpoints"
    metrics["training"] = training
    return write_cross_quality(Path(args.out), metrics)


def _compare(args: argparse.Namespace, opts: EvalOptions) -> dict[str, Any]:
    recipes = [compare_recipe(p, args.overrides, args.demo) for p in args.recipes]
    metrics = compare(recipes, opts, args.device, args.demo is not None)
    return write_compare(Path(args.out), metrics)


def _open_set(args: argparse.Namespace, opts: EvalOptions) -> dict[str, Any]:
    base = load_recipe(args.recipe, args.overrides)
    out = Path(args.out)
    metrics = leave_one_out(base, opts, args.device, out, args.recipe, args.overrides)
    return write_open_set(out, metrics)


COMMANDS = {
    "run": _run,
    "cross-quality": _cross_quality,
    "compare": _compare,
    "ablations": _compare,
    "open-set": _open_set,
}


def _command(args: argparse.Namespace) -> None:
    COMMANDS[args.command](args, _options(args))
    print(f"evaluation written to {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 done, 2 a user error (one line on stderr)."""
    return run_cli(build_parser(), argv, _command)
