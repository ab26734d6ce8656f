"""A run's state in its checkpoints, and where a resumed run continues, inside an epoch too.

A checkpoint written at the end of epoch ``e`` (0-based) holds ``"epoch": e`` and resumes
at step 0 of epoch ``e + 1``; it also holds that epoch's metrics.jsonl row (``"metrics"``),
so a resumed run can write the row again when a kill tore it (it is appended after the
checkpoint is saved). One written after ``k`` optimizer steps of epoch ``e``
(every ``train.checkpoint_every_steps``) holds ``"epoch": e - 1`` (the last finished
epoch, -1 in the first) and ``"in_epoch"``: the epoch, ``k`` and the loss sums so far, so
readers that only know ``"epoch"`` see an unfinished epoch as unfinished.

Resuming at step ``k`` of epoch ``e`` draws exactly what an uninterrupted run draws from
there on, so the result is bitwise the same:

- the batches: the loader's order is a function of (seed, epoch) (its generator, the
  m-per-class sampler's re-seeded RandomState, DistributedSampler's epoch); the resumed
  loader draws the whole epoch's order as before and :class:`SkipBatches` drops the first
  ``k`` batches as index lists, never loading them;
- each item's augmentation draws from (seed, epoch, index) (``ClipDataset.item_rngs``);
- open-space simulation draws from (seed, epoch, step, rank) with the absolute step
  (``step_generator``);
- torch's global RNG (anything else random in a step) is saved with the checkpoint and
  restored (:func:`rng_state`, :func:`set_rng_state`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attribnet.config import Recipe
from attribnet.files.atomic import remove_partial_files
from attribnet.files.checkpoints import read_checkpoint, save_checkpoint
from attribnet.files.jsonl import read_jsonl, write_jsonl
from attribnet.training.optim import set_update_kernels
from attribnet.training.run_dir import claim_run_dir

log = logging.getLogger(__name__)


@dataclass
class EpochProgress:
    """One epoch's running totals: optimizer steps done and the sum of each loss part (kept
    on the device while it trains: :class:`~attribnet.training.totals.LossTotals`)."""

    epoch: int
    steps: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        """``train_<part>``: the mean of each loss part over the epoch's steps so far."""
        return {f"train_{k}": v / max(self.steps, 1) for k, v in self.sums.items()}

    def to_state(self) -> dict[str, Any]:
        """The checkpoint's ``in_epoch`` entry."""
        return {"epoch": self.epoch, "step": self.steps, "loss_sums": dict(self.sums)}


def resume_point(state: dict[str, Any]) -> EpochProgress:
    """Where a checkpoint resumes: inside its unfinished epoch, or at the next one."""
    inside = state.get("in_epoch")
    if inside:
        return EpochProgress(int(inside["epoch"]), int(inside["step"]), dict(inside["loss_sums"]))
    return EpochProgress(int(state["epoch"]) + 1)


def checkpoint_due(steps: int, every: int, limit: int) -> bool:
    """Whether to write a mid-epoch checkpoint after ``steps`` optimizer steps of an epoch
    of ``limit`` steps: every ``every`` steps (0 = never), not at the epoch's end (the
    end-of-epoch checkpoint follows)."""
    return every > 0 and steps % every == 0 and steps < limit


class SkipBatches:
    """A batch sampler: the batches of ``batches`` after the first ``skip``.

    The skipped batches are still drawn (so every later batch is the one an uninterrupted
    epoch gets) but as index lists only: no item is loaded.
    """

    def __init__(self, batches: Iterable[list[int]], skip: int = 0):
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self.batches, self.skip = batches, skip

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.batches), self.skip, None)

    def __len__(self) -> int:
        if not isinstance(self.batches, Sized):
            raise TypeError("the wrapped batch sampler has no length")
        return max(len(self.batches) - self.skip, 0)


def rng_state() -> dict[str, Any]:
    """torch's global RNG state (CPU and every CUDA device), for a checkpoint."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_state(
    task: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    args: dict[str, Any],
    class_names: list[str],
    epoch: int,
    best: float | None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What last.pt / best.pt hold after ``epoch`` (the last finished one): the task's
    ``model`` and ``loss`` (ArcFace's class centres), optimizer, lr scheduler, the recipe
    (``args``), class names, the global RNG state, the best validation metric and, at an
    epoch's end, the epoch's metrics row (``metrics``; absent mid-epoch)."""
    extra = {} if metrics is None else {"metrics": metrics}
    return {
        "model": task.model.state_dict(),
        "loss": task.loss.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "args": args,
        "class_names": class_names,
        "rng": rng_state(),
        "best_metric": best,
        **extra,
    }


def save_mid_epoch(
    path: Path, snapshot: Callable[..., dict[str, Any]], best: float | None, at: EpochProgress
) -> None:
    """Write ``path`` (last.pt) after ``at.steps`` steps of epoch ``at.epoch``:
    ``snapshot(last finished epoch, best)`` plus ``in_epoch``."""
    save_checkpoint(path, {**snapshot(at.epoch - 1, best), "in_epoch": at.to_state()})
    log.info("checkpoint at epoch %d, step %d -> %s", at.epoch + 1, at.steps, path)


def load_last(
    path: Path, task: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[EpochProgress, float | None, dict[str, Any] | None]:
    """Restore a run from its last.pt; returns (where to continue, best metric so far, the
    metrics row of the epoch it ended: None mid-epoch or from a checkpoint without one)."""
    state = read_checkpoint(path)
    task.model.load_state_dict(state["model"])
    task.loss.load_state_dict(state["loss"])
    optimizer.load_state_dict(state["optimizer"])
    set_update_kernels(optimizer)
    scheduler.load_state_dict(state["lr_scheduler"])
    set_rng_state(state["rng"])
    start = resume_point(state)
    log.info("resumed from %s at epoch %d, step %d", path, start.epoch + 1, start.steps)
    return start, state["best_metric"], state.get("metrics")


def finished_state(run_dir: Path, recipe: Recipe) -> dict[str, Any] | None:
    """last.pt's state when the run in ``run_dir`` is finished, else None.

    Finished: last.pt ended the recipe's last epoch (or a later one) and the validation
    report was written after it (the run's last step). A run killed before its report, or
    one without validation videos (no report), is resumed the usual way instead: it trains
    no epoch, and the run's last step writes the report if there is one.
    """
    last, report = run_dir / "last.pt", run_dir / "val_report.json"
    if not report.is_file() or report.stat().st_mtime_ns < last.stat().st_mtime_ns:
        return None
    state = read_checkpoint(last)
    return state if resume_point(state).epoch >= recipe.train.epochs else None


def close_finished(run_dir: Path, recipe: Recipe, state: dict[str, Any]) -> None:
    """Resume a finished run: under its lock, clear partial files and write the metrics
    row the log lost (:func:`resume_metrics`); nothing else is written."""
    done = resume_point(state).epoch
    lock = claim_run_dir(run_dir, "resume")
    try:
        remove_partial_files(run_dir)
        resume_metrics(run_dir / "metrics.jsonl", done, state.get("metrics"))
    finally:
        lock.release()
    log.info(
        "run %s already finished (%d of %d epochs): nothing to train (--overwrite trains it again)",
        run_dir,
        done,
        recipe.train.epochs,
    )


def resume_metrics(path: Path, start_epoch: int, last_row: dict[str, Any] | None) -> None:
    """Make the log hold the rows of epochs 1..``start_epoch`` (the finished ones) only:
    drop rows of epochs a resumed run will redo, and torn lines; write again, from
    ``last_row`` (last.pt's copy), the row of epoch ``start_epoch`` when a kill tore it
    (rows are appended after the checkpoint)."""
    kept = [r for r in read_jsonl(path) if int(r.get("epoch", 0)) <= start_epoch]
    lost = start_epoch not in {int(r.get("epoch", 0)) for r in kept}
    if lost and last_row is not None and int(last_row.get("epoch", 0)) == start_epoch:
        log.warning("%s: epoch %d's row was lost (interrupted write): written again from "
                    "last.pt", path, start_epoch)  # fmt: skip
        kept.append(last_row)
    if kept or path.exists():
        write_jsonl(path, kept)
