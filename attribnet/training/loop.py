"""The training loop: :func:`fit` trains an attribution model from a recipe.

Data (demo generation, face cache), model, losses, the loop (AMP, checkpoints, exact
resume, DDP under torchrun), and at the end the validation report. The command
``python -m attribnet.train`` (:mod:`attribnet.cli.train`) runs it and then builds the
generator index. The run goes to ``train.out_dir/<name>``; a name that already
holds a run needs ``resume`` (continue it) or ``overwrite`` (move it aside to
``<name>.replaced-<UTC time>`` and start again), from the command line or the recipe's
``train.if_exists``. With
``train.checkpoint_every_steps`` N > 0, last.pt is also written every N steps inside an
epoch, and ``--resume`` continues from that step (see :mod:`attribnet.training.state`).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from attribnet.config import Recipe, dump_recipe, to_dict
from attribnet.data.open_space import pool_seed, step_generator
from attribnet.errors import ConfigError
from attribnet.files.atomic import remove_partial_files, write_text
from attribnet.files.checkpoints import save_checkpoint
from attribnet.files.jsonl import append_jsonl
from attribnet.losses import AttributionLoss
from attribnet.metrics import closed_set_report
from attribnet.models import build_model
from attribnet.predict import class_scores, run_model
from attribnet.runtime.compile import compile_training_forward
from attribnet.runtime.device import autocast, resolve_device
from attribnet.runtime.distributed import (
    barrier,
    convert_sync_batchnorm,
    from_main,
    gather,
    init_from_env,
    is_main,
    rank_and_world,
)
from attribnet.runtime.prefetch import DevicePrefetcher
from attribnet.training.data import Data, eval_loader, prepare_data, train_loader
from attribnet.training.optim import build_open_space, build_optimizer, lr_factor
from attribnet.training.run_dir import check_run_dir, claim_run_dir, run_mode
from attribnet.training.state import (
    EpochProgress,
    checkpoint_due,
    checkpoint_state,
    close_finished,
    finished_state,
    load_last,
    resume_metrics,
    save_mid_epoch,
)
from attribnet.training.task import AttributionTask
from attribnet.training.totals import LossTotals

log = logging.getLogger(__name__)


def _predict(task: AttributionTask, out: dict[str, np.ndarray]) -> np.ndarray:
    """Class predictions: the classifier when CE trains it, else ArcFace's class centres
    (:func:`attribnet.predict.class_scores`)."""
    centres = None
    if not task.loss.weights["ce"] and task.loss.arcface is not None:
        centres = task.loss.arcface.W.detach().float().cpu().numpy().T
    return class_scores(out["logits"], out.get("embedding"), centres).argmax(1)


def validate(
    task: AttributionTask,
    data: Data,
    recipe: Recipe,
    device: torch.device,
    sharded: bool = False,
) -> dict[str, Any]:
    """Validation accuracy, CE loss and per-class report on the val split. ``sharded``
    (every rank of a process group calls it): each rank runs its share, every rank gets the
    whole result."""
    if data.val is None:
        return {}
    loader = eval_loader(data.val, recipe, sharded=sharded)
    out = run_model(task.model, loader, device, amp=recipe.train.amp)
    if sharded:
        out = _gathered(out)
    pred = _predict(task, out)
    logits = torch.from_numpy(out["logits"])
    ce = torch.nn.functional.cross_entropy(logits, torch.from_numpy(out["label"])).item()
    report = closed_set_report(out["label"], pred, data.class_names)
    return {"val_accuracy": report["accuracy"], "val_loss": ce, "val_report": report}


def _gathered(mine: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every rank's validation outputs (contiguous shards), joined in dataset order."""
    parts = gather([mine], to_all=True)
    assert parts is not None
    keys = {k for p in parts for k in p}  # a rank with no val clips returns {}
    return {k: np.concatenate([p[k] for p in parts if k in p]) for k in keys}


def _is_better(recipe: Recipe, metrics: dict[str, Any], best: float | None) -> bool:
    key = recipe.train.select_metric
    if key not in metrics:
        return best is None
    value = metrics[key]
    if best is None:
        return True
    return value > best if key == "val_accuracy" else value < best


def train_one_epoch(
    step_fn: Any,
    task: AttributionTask,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    recipe: Recipe,
    device: torch.device,
    epoch: int,
    progress: EpochProgress | None = None,
    checkpoint: Callable[[EpochProgress], None] | None = None,
) -> dict[str, float]:
    """One pass over the loader; returns the mean of each loss part and clips/s.

    ``progress`` continues an epoch resumed after ``progress.steps`` steps (the loader
    skips those batches); ``checkpoint(progress)`` is called every
    ``train.checkpoint_every_steps`` steps. With an open-space simulator on the task, its
    pool is re-drawn from (seed, epoch) and each batch gets simulated clips appended (label
    -2) from a generator seeded by (seed, epoch, step, rank): no global RNG is touched, so
    a resumed run draws the same.

    A step does not wait for the device: batches arrive on it one step ahead
    (:class:`~attribnet.runtime.prefetch.DevicePrefetcher`) and the loss parts are summed
    there (:class:`~attribnet.training.totals.LossTotals`), read back every
    ``train.log_every_steps`` steps, before a checkpoint and at the end, which is also when
    a NaN or infinite loss stops the run (NonFiniteLossError, naming the step).
    """
    task.train()
    seed = recipe.train.seed
    rank, _ = rank_and_world()
    if task.open_space is not None:
        task.open_space.redraw(pool_seed(seed, epoch))
    progress = progress or EpochProgress(epoch)
    totals = LossTotals(progress, device)
    clips, start = 0, time.perf_counter()
    total = len(loader) + progress.steps
    limit = min(recipe.train.max_steps_per_epoch or total, total)
    batches = DevicePrefetcher(itertools.islice(loader, max(limit - progress.steps, 0)), device)
    bar = tqdm(total=limit, initial=progress.steps, desc=f"epoch {epoch + 1}",
               disable=not sys.stderr.isatty(), leave=False)  # fmt: skip
    with bar:
        for batch in batches:
            x, y, instances = batch["clip"], batch["label"], batch["instance"]
            loaded = len(y)
            if task.open_space is not None:
                generator = step_generator(seed, epoch, progress.steps, rank)
                x, y = task.open_space.extend(x, y, generator)
                instances = torch.cat([instances, instances.new_full((len(y) - loaded,), -1)])
            with autocast(device, recipe.train.amp):
                _, losses = step_fn(x, y, instances)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if recipe.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(task.parameters(), recipe.train.grad_clip)
            optimizer.step()
            totals.add(losses)
            clips += loaded
            bar.update()
            due = checkpoint is not None and checkpoint_due(
                progress.steps, recipe.train.checkpoint_every_steps, limit
            )
            if due or progress.steps % recipe.train.log_every_steps == 0:
                _show(bar, totals.read(), progress.steps, clips / (time.perf_counter() - start),
                      optimizer.param_groups[0]["lr"])  # fmt: skip
            if due and checkpoint is not None:
                checkpoint(progress)
    totals.read()
    elapsed = time.perf_counter() - start
    return {**progress.means(), "clips_per_s": clips / max(elapsed, 1e-9), "epoch_s": elapsed}


def _show(bar: tqdm, sums: dict[str, float], steps: int, clips_s: float, lr: float) -> None:
    """The progress bar's figures: the epoch's mean loss so far, clips/s and lr."""
    mean = sums.get("total", 0.0) / max(steps, 1)
    bar.set_postfix(loss=f"{mean:.3f}", clips_s=f"{clips_s:.1f}", lr=f"{lr:.2e}")


def fit(recipe: Recipe, resume: bool = False, overwrite: bool = False) -> Path:
    """Train as the recipe says; returns the run directory ``train.out_dir/name``.

    A folder that already holds a run is refused unless ``resume`` (continue from its
    last.pt) or ``overwrite`` (move it aside, start again), or else the recipe's
    ``train.if_exists`` says so; a folder another process writes is refused (see
    :mod:`attribnet.training.run_dir`). Resuming a finished run trains nothing and
    builds nothing (:func:`~attribnet.training.state.finished_state`). Nothing is written
    into the folder before the data and model are built, and its lock is released however
    training ends.
    """
    distributed = init_from_env()
    main_rank = is_main()
    run_dir = Path(recipe.train.out_dir) / recipe.name
    mode = from_main(run_mode(resume, overwrite, recipe.train.if_exists, run_dir))
    check_run_dir(run_dir, mode)
    finished = finished_state(run_dir, recipe) if mode == "resume" and main_rank else None
    if from_main(finished is not None):
        if finished is not None:
            close_finished(run_dir, recipe, finished)
        barrier()
        return run_dir
    device = resolve_device(recipe.train.device)
    data = prepare_data(recipe)
    # seeded after the data: generating the demo set or filling the cache draws from the
    # global RNG or not, and must not change the model
    torch.manual_seed(recipe.train.seed)
    model = build_model(recipe.model, len(data.class_names))
    loss = _build_loss(recipe, data, model.encoder.feature_dim, distributed)
    task = AttributionTask(model, loss, build_open_space(recipe)).to(device)
    if recipe.train.channels_last and device.type == "cuda":
        task = task.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(task, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(recipe, e))
    lock = claim_run_dir(run_dir, mode) if main_rank else None
    try:
        start, best, last_row = EpochProgress(0), None, None
        if main_rank:
            remove_partial_files(run_dir)  # a save killed mid-write; we hold the lock
        if mode == "resume":
            start, best, last_row = load_last(run_dir / "last.pt", task, optimizer, scheduler)
            if start.epoch >= recipe.train.epochs:
                log.info("run %s already trained its %d epochs: nothing to train", run_dir,
                         start.epoch)  # fmt: skip
        if main_rank:
            write_text(run_dir / "recipe.yaml", dump_recipe(recipe))
            resume_metrics(run_dir / "metrics.jsonl", start.epoch, last_row)
        _train_epochs(task, data, recipe, device, optimizer, scheduler, run_dir, start, best)
        if main_rank:
            _finish(recipe, run_dir, data, device)
    finally:
        if lock is not None:
            lock.release()
    barrier()  # rank 0 has written best.pt and the report
    return run_dir


def _train_epochs(
    task: AttributionTask,
    data: Data,
    recipe: Recipe,
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    run_dir: Path,
    start: EpochProgress,
    best: float | None,
) -> None:
    """From ``start`` (an epoch, maybe some steps into it) to the last epoch: train,
    validate, checkpoint (also every ``train.checkpoint_every_steps``), log metrics."""
    distributed = rank_and_world()[1] > 1
    main_rank = is_main()
    ddp_task: Any = task
    if recipe.train.sync_bn and not distributed:
        log.info("train.sync_bn: one process, nothing to synchronise")
    if distributed and recipe.train.sync_bn:
        convert_sync_batchnorm(task, device)  # in place: the optimizer's parameters stay the same
    if recipe.train.compile:
        compile_training_forward(task.model.encoder)  # eager again, with a warning, if it fails
    if distributed:
        ddp_task = torch.nn.parallel.DistributedDataParallel(
            task,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=_has_untrained_head(recipe),
        )
    snapshot = functools.partial(
        checkpoint_state, task, optimizer, scheduler, to_dict(recipe), data.class_names
    )
    for epoch in range(start.epoch, recipe.train.epochs):
        progress = start if epoch == start.epoch else EpochProgress(epoch)
        data.train.set_epoch(epoch)
        loader = train_loader(data, recipe, epoch, skip=progress.steps, device=device)
        save = functools.partial(save_mid_epoch, run_dir / "last.pt", snapshot, best)
        stats = train_one_epoch(
            ddp_task, task, loader, optimizer, recipe, device, epoch, progress,
            save if main_rank else None,
        )  # fmt: skip
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        val: dict[str, Any] = {}
        last_epoch = epoch + 1 == recipe.train.epochs
        if (epoch + 1) % recipe.train.val_every == 0 or last_epoch:
            val = validate(task, data, recipe, device, sharded=distributed)
        improved = bool(val) and _is_better(recipe, val, best)
        if improved:
            best = val[recipe.train.select_metric]
        if main_rank:
            record = {
                "epoch": epoch + 1,
                "lr": lr,
                **stats,
                **{k: v for k, v in val.items() if k != "val_report"},
            }
            state = snapshot(epoch, best, record)
            if improved or (best is None and last_epoch):
                save_checkpoint(run_dir / "best.pt", state)
            save_checkpoint(run_dir / "last.pt", state)
            append_jsonl(run_dir / "metrics.jsonl", record)
            log.info(
                "epoch %d/%d  %s",
                epoch + 1,
                recipe.train.epochs,
                "  ".join(
                    f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float) and k != "lr"
                ),
            )


def _has_untrained_head(recipe: Recipe) -> bool:
    """Whether some head may get no gradient in a step (DDP must then be told, or it waits
    for its gradients): the classifier without CE, the embedding head without ArcFace and
    triplet, the instance adversary (a batch may hold no row with an instance)."""
    loss = recipe.loss
    idle_embedding = recipe.model.embedding_dim > 0 and not (
        loss.arcface_weight or loss.triplet_weight or loss.supcon_weight
    )
    return idle_embedding or not loss.ce_weight or bool(loss.instance_adversary_weight)


def _build_loss(
    recipe: Recipe, data: Data, feature_dim: int, distributed: bool = False
) -> AttributionLoss:
    """The recipe's loss for ``data``'s classes (and training instances); its batches hold
    rows that are no class only with outlier classes or open-space simulation."""
    unknown_rows = bool(recipe.data.outlier_classes or recipe.loss.open_space_weight)
    try:
        return AttributionLoss(recipe.loss, data.class_names, recipe.model.embedding_dim,
                               distributed, data.instance_names, feature_dim,
                               unknown_rows)  # fmt: skip
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _finish(recipe: Recipe, run_dir: Path, data: Data, device: torch.device) -> None:
    """Validation report of the best checkpoint."""
    from attribnet.models.restore import load_model

    model, _, _, state = load_model(run_dir / "best.pt")
    model.to(device)
    task = AttributionTask(model, _build_loss(recipe, data, model.encoder.feature_dim))
    task.loss.load_state_dict(state["loss"])
    val = validate(task, data, recipe, device)
    if val:
        report = {"epoch": state["epoch"] + 1, **val}
        write_text(run_dir / "val_report.json", json.dumps(report, indent=2) + "\n")
        per_class = ", ".join(
            f"{k} {v:.3f}" for k, v in val["val_report"]["per_class_accuracy"].items()
        )
        log.info(
            "best epoch %d: val accuracy %.3f (%s)", report["epoch"], val["val_accuracy"], per_class
        )
