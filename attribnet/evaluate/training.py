"""The training runs behind the table commands: a recipe's finished run is reused, an
interrupted one resumed, else it is trained from scratch (:func:`attribnet.training.loop.fit`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attribnet.config import Recipe, to_dict
from attribnet.files.checkpoints import read_checkpoint

log = logging.getLogger(__name__)

ACTIONS = ("trained", "resumed", "reused")


@dataclass(frozen=True)
class TrainedRun:
    """What :func:`prepare_run` did for one recipe's run: ``action`` is one of
    :data:`ACTIONS`; ``differs`` lists the recipe keys a reused run was trained with other
    values of (empty when it matches or was not reused)."""

    name: str
    run_dir: Path
    checkpoint: Path
    action: str
    differs: tuple[str, ...] = ()


def _flat(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _run_finished(last: Path, recipe: Recipe) -> bool:
    """Whether the run's last.pt (if any) reached the recipe's final epoch."""
    if not last.is_file():
        return True
    return int(read_checkpoint(last)["epoch"]) + 1 >= recipe.train.epochs


def _warn_if_recipe_differs(best: Path, recipe: Recipe) -> list[str]:
    """The recipe keys ``best`` was trained with other values of (warned about)."""
    saved = _flat(read_checkpoint(best)["args"])
    wanted = _flat(to_dict(recipe))
    differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if differ:
        log.warning(
            "reusing %s although it was trained with other %s; delete its run folder to retrain",
            best,
            ", ".join(differ),
        )
    return differ


def recipe_changes(base: Recipe, recipe: Recipe) -> dict[str, Any]:
    """``{dotted key: value}`` of the fields where ``recipe`` differs from ``base``."""
    before, after = _flat(to_dict(base)), _flat(to_dict(recipe))
    keys = sorted(set(before) | set(after))
    return {k: after.get(k) for k in keys if before.get(k) != after.get(k)}


def train_or_reuse(recipe: Recipe) -> Path:
    """The best.pt of the recipe's run (``train.out_dir/name``): reused when the run
    finished, resumed from last.pt when it was interrupted, else trained from scratch."""
    return prepare_run(recipe).checkpoint


def prepare_run(recipe: Recipe) -> TrainedRun:
    """:func:`train_or_reuse`, saying which of the three it did."""
    from attribnet.training.loop import fit

    run_dir = Path(recipe.train.out_dir) / recipe.name
    best, last = run_dir / "best.pt", run_dir / "last.pt"
    if best.is_file() and _run_finished(last, recipe):
        differs = _warn_if_recipe_differs(best, recipe)
        log.info("reusing the finished run %s", run_dir)
        return TrainedRun(recipe.name, run_dir, best, "reused", tuple(differs))
    resume = last.is_file()
    log.info("%s run %s", "resuming" if resume else "training", run_dir)
    fit(recipe, resume=resume)
    return TrainedRun(recipe.name, run_dir, best, "resumed" if resume else "trained")
