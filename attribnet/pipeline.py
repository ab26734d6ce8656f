"""The jobs chained: train a run, then build its generator index.

``python -m attribnet.train`` runs :func:`train_and_index`: :func:`attribnet.train.fit`
trains and writes the validation report; then, when the recipe builds indexes
(``train.build_index`` and an embedding head), :func:`attribnet.index.build_index_for_run`
embeds the run's training videos into ``train.index_dir/<name>``. Training knows nothing of
the index, and the tables of :mod:`attribnet.evaluate` train through ``fit`` alone (the
open-set table builds the indexes it needs).
"""

from __future__ import annotations

import logging
from pathlib import Path

from attribnet.config import Recipe
from attribnet.distributed import is_main
from attribnet.train import fit

log = logging.getLogger(__name__)


def train_and_index(recipe: Recipe, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Train as the recipe says, then build the run's index; returns the run directory.
    Under torchrun every rank trains and embeds its share, rank 0 writes."""
    run_dir = fit(recipe, resume=resume, overwrite=overwrite)
    if recipe.train.build_index and recipe.model.embedding_dim:
        from attribnet.index import build_index_for_run

        out = build_index_for_run(
            run_dir / "best.pt", Path(recipe.train.index_dir) / recipe.name,
            device=recipe.train.device,
        )  # fmt: skip
        if is_main():
            log.info("generator index written to %s", out)
    return run_dir
