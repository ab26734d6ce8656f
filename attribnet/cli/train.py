"""``python -m attribnet.train recipes/<x>.yaml [--set a.b=v ...] [--resume | --overwrite]``

Trains a run (:func:`attribnet.training.fit`) and then, when the recipe builds indexes
(``train.build_index`` and an embedding head), embeds the run's training videos into the
generator index ``train.index_dir/<name>`` (:func:`attribnet.index.build_index_for_run`),
unless that index was built from the same best.pt already. Training knows nothing of the
index; the tables of :mod:`attribnet.evaluate` train through ``fit`` alone.

A name that already holds a run needs ``--resume`` (continue it; a finished run is left as
it is) or ``--overwrite`` (move it aside to ``<name>.replaced-<UTC time>``, never deleted,
and start again); without either, the recipe's ``train.if_exists`` decides (``refuse`` by
default; recipes/demo.yaml says ``resume``, so running it again costs nothing).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from attribnet.cli import Parser, add_verbose, run_cli
from attribnet.config import Recipe, add_overrides_argument, load_recipe
from attribnet.index import build_index_for_run, index_built_from
from attribnet.runtime.distributed import command_process_group, from_main, is_main
from attribnet.training.loop import fit

log = logging.getLogger(__name__)


def train_and_index(recipe: Recipe, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Train as the recipe says, then build the run's index; returns the run directory.
    Under torchrun every rank trains and embeds its share, rank 0 writes."""
    run_dir = fit(recipe, resume=resume, overwrite=overwrite)
    if recipe.train.build_index and recipe.model.embedding_dim:
        best, out = run_dir / "best.pt", Path(recipe.train.index_dir) / recipe.name
        if from_main(is_main() and index_built_from(out, best)):
            log.info("generator index %s was built from %s: kept as it is", out, best)
            return run_dir
        build_index_for_run(best, out, device=recipe.train.device)
        if is_main():
            log.info("generator index written to %s", out)
    return run_dir


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(command="train", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("recipe", help="YAML recipe, e.g. recipes/demo.yaml")
    add_overrides_argument(parser)
    parser.add_argument("--resume", action="store_true", help="continue from <run>/last.pt")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start the run again; an existing run folder is moved aside to "
        "<run>.replaced-<UTC time>, never deleted",
    )
    add_verbose(parser)
    return parser


def _run(args: argparse.Namespace) -> int:
    with command_process_group() as main_rank:
        recipe = load_recipe(args.recipe, args.overrides)
        run_dir = train_and_index(recipe, resume=args.resume, overwrite=args.overwrite)
    if main_rank:
        print(f"run finished: {run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Train, then index; exit codes as :mod:`attribnet.cli` says."""
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
