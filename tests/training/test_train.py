"""Training: every recipe runs, exact resume after a kill, NaN stops cleanly, DDP on gloo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from attribnet.cli import train
from attribnet.config import load_recipe
from attribnet.data import synthetic
from attribnet.files.checkpoints import read_checkpoint
from attribnet.index import GeneratorIndex, build_index_for_run
from attribnet.training import loop
from attribnet.training.run_dir import LOCK_NAME, run_lock
from tests.builders import REPO, tiny_overrides

ROOT = REPO
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))


def args(recipe: Path, manifest: Path, out: Path, **extra: object) -> list[str]:
    sets = tiny_overrides(manifest, out, **extra)
    return [str(recipe)] + [a for s in sets for a in ("--set", s)]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_runs_a_step(recipe, tiny_demo, tiny_demo_instances, tmp_path):
    extra: dict[str, object] = {
        "train.max_steps_per_epoch": 1,
        "loss.arcface_class_margins": {},
        "data.face_margin": 0.3,
        "data.cache_size": 0,
        "data.resize": 0,
        "data.augment.random_crop": False,
    }  # one face cache for all
    written = load_recipe(recipe)
    if "triplet" in recipe.stem:
        extra.update({"train.m_per_class": 2, "train.batch_size": 10})
    if written.train.instances_per_class:  # 5 classes x 2 trainings x 1 clip
        extra.update({"train.m_per_class": 2, "train.batch_size": 10})
    if "spectral" in recipe.stem:  # the tiny demo's 32 px faces hold 16 radial bins
        extra["model.spectral_bins"] = 16
    if written.model.patch_size:  # windows that fit the tiny demo's 32 px faces
        extra["model.patch_size"] = 16
    loss = written.loss
    by_training = (written.train.instances_per_class or loss.instance_adversary_weight
                   or loss.arcface_instance_centres or loss.supcon_weight)  # fmt: skip
    demo = tiny_demo_instances if by_training else tiny_demo
    assert train.main(args(recipe, demo, tmp_path, **extra)) == 0
    run = tmp_path / "runs" / recipe.stem.replace("dma_sta", "ablation_dma_sta")
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "last.pt").exists() and (runs[0] / "recipe.yaml").exists()
    state = read_checkpoint(runs[0] / "last.pt")
    assert state["epoch"] == 0 and state["class_names"] and run


def test_missing_dfdm_data_is_a_clear_error(tmp_path, capsys):
    code = train.main(
        [str(ROOT / "recipes/dfdm_ce_arcface.yaml"), "--set", f"data.manifest={tmp_path}/m.csv"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "Getting DFDM" in err[0] and "m.csv" in err[0]


def _run(manifest, out, epochs, resume=False, flags=(), **extra):
    argv = args(ROOT / "recipes/demo.yaml", manifest, out, **{"train.epochs": epochs, **extra})
    return train.main(argv + (["--resume"] if resume else []) + list(flags))


def _kill_then_resume(tiny_demo, tmp_path, monkeypatch, epochs, kill_step=0, **extra):
    """Train ``epochs`` straight (in a/) and again (in b/) killed, then resumed; both last
    checkpoints must be bitwise equal (model and ArcFace) and both metrics.jsonl hold the
    same training losses and validation results.

    The kill comes at the start of the last epoch, or with ``kill_step`` k > 0 inside
    optimizer step k of the run (counted from 1 over all epochs), before its update. A
    partial file of a save killed mid-write is left in b/ too: the resumed run removes it.
    Returns (straight, resumed) checkpoints and b's metrics.jsonl records."""
    assert _run(tiny_demo, tmp_path / "a", epochs, **extra) == 0
    straight = read_checkpoint(tmp_path / "a/runs/demo/last.pt")
    run = tmp_path / "b/runs/demo"
    with monkeypatch.context() as patch:
        _kill(patch, epochs, kill_step)
        assert _run(tiny_demo, tmp_path / "b", epochs, **extra) == 130  # Ctrl-C's exit code
    assert not (run / LOCK_NAME).exists()  # Ctrl-C released the lock
    partial = run / ".last.pt.k1ll3d_x.pt"
    partial.write_bytes(b"half a checkpoint")
    assert _run(tiny_demo, tmp_path / "b", epochs, resume=True, **extra) == 0
    assert not partial.exists()
    resumed = read_checkpoint(run / "last.pt")
    assert resumed["epoch"] == straight["epoch"] == epochs - 1
    assert "in_epoch" not in resumed
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert torch.equal(straight["loss"]["arcface.W"], resumed["loss"]["arcface.W"])
    records = _metrics(run)
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    assert _metrics(tmp_path / "a/runs/demo") == records
    return straight, resumed, records


def _kill(patch: pytest.MonkeyPatch, epochs: int, kill_step: int) -> None:
    """Make the next training raise KeyboardInterrupt at the start of its last epoch, or
    (``kill_step`` > 0) inside optimizer step ``kill_step``, before the update."""
    if not kill_step:
        real_epoch = loop.train_one_epoch

        def killed_in_last_epoch(*args, **kwargs):
            if args[6] == epochs - 1:  # the epoch
                raise KeyboardInterrupt
            return real_epoch(*args, **kwargs)

        patch.setattr(loop, "train_one_epoch", killed_in_last_epoch)
        return
    real_optimizer, steps = loop.build_optimizer, []

    def killed_in_a_step(task, recipe):
        def count(optimizer, args, kwargs):
            steps.append(1)
            if len(steps) == kill_step:
                raise KeyboardInterrupt

        optimizer = real_optimizer(task, recipe)
        optimizer.register_step_pre_hook(count)
        return optimizer

    patch.setattr(loop, "build_optimizer", killed_in_a_step)


def _metrics(run: Path) -> list[dict]:
    """A run's metrics.jsonl records without their timings."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    drop = ("clips_per_s", "epoch_s")
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


@pytest.mark.slow
def test_resume_after_a_kill_equals_an_uninterrupted_run(tiny_demo, tmp_path, monkeypatch):
    extra = {"data.augment.h264_p": 0.5, "train.max_steps_per_epoch": 3}
    _kill_then_resume(tiny_demo, tmp_path, monkeypatch, 3, **extra)


@pytest.mark.slow
@pytest.mark.parametrize("kill_step", [4, 9], ids=["in_epoch_1", "in_epoch_2"])
def test_resume_after_a_kill_mid_epoch_equals_an_uninterrupted_run(
    tiny_demo, tmp_path, monkeypatch, capsys, kill_step
):
    """5 steps an epoch, last.pt every 2: a kill inside step 4 of an epoch resumes from the
    checkpoint after its step 2 and redoes steps 3 and 4 with the same batches."""
    extra = {"data.augment.h264_p": 0.5, "train.max_steps_per_epoch": 5,
             "train.checkpoint_every_steps": 2}  # fmt: skip
    _kill_then_resume(tiny_demo, tmp_path, monkeypatch, 2, kill_step=kill_step, **extra)
    err = capsys.readouterr().err
    last = tmp_path / "b/runs/demo/last.pt"
    assert f"resumed from {last} at epoch {(kill_step - 1) // 5 + 1}, step 2\n" in err
    assert "by an interrupted write: .last.pt.k1ll3d_x.pt\n" in err


def test_a_kill_in_the_first_epoch_leaves_a_checkpoint(tiny_demo, tmp_path, monkeypatch):
    extra = {"train.max_steps_per_epoch": 5, "train.checkpoint_every_steps": 2}
    with monkeypatch.context() as patch:
        _kill(patch, 2, kill_step=4)
        assert _run(tiny_demo, tmp_path, 2, **extra) == 130
    run = tmp_path / "runs/demo"
    state = read_checkpoint(run / "last.pt")
    assert state["epoch"] == -1  # no epoch finished
    assert state["in_epoch"]["epoch"] == 0 and state["in_epoch"]["step"] == 2
    assert {"total", "ce", "arcface"} <= set(state["in_epoch"]["loss_sums"])
    assert not (run / "best.pt").exists() and not (run / "metrics.jsonl").exists()
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_demo, tmp_path, monkeypatch, capsys
):
    """The check runs where the loss sums are read back from the device (every
    train.log_every_steps steps, before a checkpoint, at an epoch's end), not in every step:
    here at the end of epoch 2, whose first step already gave NaN; it names that step."""
    assert _run(tiny_demo, tmp_path, 1, **{"train.max_steps_per_epoch": 2}) == 0
    good = read_checkpoint(tmp_path / "runs/demo/last.pt")
    real_forward = loop.AttributionTask.forward

    def nan_forward(self, *args):
        outputs, losses = real_forward(self, *args)
        return outputs, {**losses, "total": losses["total"] * float("nan")}

    monkeypatch.setattr(loop.AttributionTask, "forward", nan_forward)
    code = _run(tiny_demo, tmp_path, 2, resume=True, **{"train.max_steps_per_epoch": 2})
    assert code == 1
    assert "non-finite loss at epoch 2, step 1: {" in capsys.readouterr().err
    assert not (tmp_path / "runs/demo" / LOCK_NAME).exists()  # an error released the lock
    kept = read_checkpoint(tmp_path / "runs/demo/last.pt")
    assert kept["epoch"] == good["epoch"] == 0
    for key, value in good["model"].items():
        assert torch.equal(value, kept["model"][key])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.slow
def test_an_existing_run_is_refused_unless_resumed_or_overwritten(tiny_demo, tmp_path, capsys):
    one = {"train.max_steps_per_epoch": 1, "train.if_exists": "refuse"}
    assert _run(tiny_demo, tmp_path, 1, **one) == 0
    run = tmp_path / "runs/demo"
    before = _files(run)
    assert {"best.pt", "last.pt", "metrics.jsonl", "recipe.yaml"} <= set(before)
    capsys.readouterr()
    assert _run(tiny_demo, tmp_path, 1, **one) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: run folder {run} already holds a run (best.pt, last.pt, metrics.jsonl); add "
        "--resume to continue it, --overwrite to move it aside and start again, or choose "
        "another name (--set name=...)"
    ]
    typo = {**one, "data.classes": "[dfaker,fsaceswap]"}  # fails when the data is read
    assert _run(tiny_demo, tmp_path, 2, resume=True, **typo) == 2
    assert _run(tiny_demo, tmp_path, 2, flags=["--overwrite"], **typo) == 2
    assert _files(run) == before and not list((tmp_path / "runs").glob("*.replaced-*"))

    assert _run(tiny_demo, tmp_path, 1, flags=["--overwrite"], **one) == 0
    (aside,) = (tmp_path / "runs").glob("demo.replaced-*")
    assert _files(aside) == before
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["demo", aside.name]


def test_a_run_being_written_is_refused_naming_the_writer(tiny_demo, tmp_path, capsys):
    run = tmp_path / "runs/demo"
    holder = run_lock(run).acquire()
    try:
        assert _run(tiny_demo, tmp_path, 1, **{"train.max_steps_per_epoch": 1}) == 2
    finally:
        holder.release()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: run folder {run} is in use by pid {os.getpid()} on host ")
    assert list(run.iterdir()) == []  # nothing written


@pytest.mark.slow
def test_resume_reads_past_a_torn_metrics_line(tiny_demo, tmp_path, capsys):
    one = {"train.max_steps_per_epoch": 1}
    assert _run(tiny_demo, tmp_path, 1, **one) == 0
    metrics = tmp_path / "runs/demo/metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"epoch": 2, "lr": 0.0')  # killed while writing epoch 2's line
    assert _run(tiny_demo, tmp_path, 2, resume=True, **one) == 0
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2]
    assert "metrics.jsonl:2: ignoring an unfinished line" in capsys.readouterr().err


@pytest.mark.slow
def test_a_torn_row_of_the_last_finished_epoch_is_written_again(tiny_demo, tmp_path, capsys):
    """Killed while appending epoch 2's row (after its last.pt): a resumed run writes the
    row again from last.pt, so the log holds every epoch exactly once, whether the run was
    finished (nothing to train) or goes on."""
    one = {"train.max_steps_per_epoch": 1}
    assert _run(tiny_demo, tmp_path, 2, **one) == 0
    metrics = tmp_path / "runs/demo/metrics.jsonl"
    whole = metrics.read_text()
    torn = whole[: whole.rindex('{"epoch": 2') + 20]
    metrics.write_text(torn)
    assert _run(tiny_demo, tmp_path, 2, resume=True, **one) == 0
    assert metrics.read_text() == whole
    assert "epoch 2's row was lost (interrupted write): written again" in capsys.readouterr().err
    metrics.write_text(torn)
    assert _run(tiny_demo, tmp_path, 3, resume=True, **one) == 0
    lines = metrics.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert lines[:2] == whole.splitlines()


def _must_not_run(*args, **kwargs):
    raise AssertionError("a finished run resumed trains and indexes nothing")


def test_the_demo_command_runs_again_without_training_or_indexing_again(
    tiny_demo, tmp_path, monkeypatch, capsys
):
    """recipes/demo.yaml says train.if_exists: resume, so the README's command can be run
    twice: the second run finds the run finished and its index built from its best.pt,
    reads no data, trains and indexes nothing and changes no file."""
    extra = {"train.max_steps_per_epoch": 1, "train.build_index": True}
    began = time.perf_counter()
    assert _run(tiny_demo, tmp_path, 1, **extra) == 0
    first_s = time.perf_counter() - began
    run, index = tmp_path / "runs/demo", tmp_path / "indexes/demo"
    before = _files(run), _files(index)
    assert {"best.pt", "metrics.jsonl", "val_report.json"} <= set(before[0]) and before[1]
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(loop, "prepare_data", _must_not_run)
        patch.setattr(train, "build_index_for_run", _must_not_run)
        began = time.perf_counter()
        assert _run(tiny_demo, tmp_path, 1, **extra) == 0
        again_s = time.perf_counter() - began
    assert (_files(run), _files(index)) == before
    captured = capsys.readouterr()
    assert f"run {run} already finished (1 of 1 epochs): nothing to train" in captured.err
    assert f"generator index {index} was built from {run / 'best.pt'}" in captured.err
    assert captured.out == f"run finished: {run}\n"
    assert again_s < first_s / 4, (again_s, first_s)


@pytest.mark.slow
def test_the_run_that_generates_the_demo_trains_like_later_runs(tmp_path, monkeypatch):
    """Generating the demo set and its face cache must not move the model's random draws:
    the first run of a command (which makes them) equals a later one bitwise."""
    real = synthetic.generate_demo

    def tiny_generate(root):
        return real(root, num_sources=6, num_frames=8, size=32, qualities=(0, 23))

    monkeypatch.setattr(synthetic, "generate_demo", tiny_generate)
    root = tmp_path / "demo"
    demo = {"data.demo": True, "data.root": root, "data.cache": root / "cache",
            "train.max_steps_per_epoch": 1}  # fmt: skip
    for out in ("first", "later"):
        argv = args(ROOT / "recipes/demo.yaml", root / "manifest.csv", tmp_path / out, **demo)
        assert train.main(argv) == 0
        assert (root / "manifest.csv").is_file() and (root / "cache/index.jsonl").is_file()
    first = read_checkpoint(tmp_path / "first/runs/demo/last.pt")
    later = read_checkpoint(tmp_path / "later/runs/demo/last.pt")
    for key, value in first["model"].items():
        assert torch.equal(value, later["model"][key]), key
    assert torch.equal(first["loss"]["arcface.W"], later["loss"]["arcface.W"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_gloo(tiny_demo, tmp_path):
    extra = {"train.max_steps_per_epoch": 2, "train.epochs": 2, "loss.triplet_weight": 0.5,
             "train.m_per_class": 2, "train.batch_size": 10}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_free_port()}", "-m", "attribnet.train"]  # fmt: skip
    cmd += args(ROOT / "recipes/demo.yaml", tiny_demo, tmp_path, **extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = read_checkpoint(tmp_path / "runs/demo/last.pt")
    assert state["epoch"] == 1
    metrics = tmp_path / "runs/demo/metrics.jsonl"
    assert len(metrics.read_text().splitlines()) == 2  # written by rank 0 only
    before = _files(tmp_path / "runs/demo")
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]  # the ranks agree the run is finished
    assert "already finished (2 of 2 epochs)" in again.stderr
    assert _files(tmp_path / "runs/demo") == before


@pytest.mark.slow
def test_data_classes_subset_holds_out_the_other_generators(tiny_demo, tmp_path, capsys):
    classes = "[dfaker,faceswap,iae,lightweight]"
    extra = {"train.max_steps_per_epoch": 1, "data.classes": classes}
    assert train.main(args(ROOT / "recipes/demo.yaml", tiny_demo, tmp_path, **extra)) == 0
    state = read_checkpoint(tmp_path / "runs/demo/last.pt")
    assert state["class_names"] == ["dfaker", "faceswap", "iae", "lightweight"]
    assert "holding out generators not in data.classes: ['dfl']" in capsys.readouterr().err
    typo = {"train.max_steps_per_epoch": 1, "data.classes": "[dfaker,fsaceswap]"}
    assert train.main(args(ROOT / "recipes/demo.yaml", tiny_demo, tmp_path / "b", **typo)) == 2


def _metric_keys(path: Path) -> set[str]:
    return {k for line in path.read_text().splitlines() for k in json.loads(line)}


@pytest.mark.slow
def test_an_outlier_class_is_trained_as_none_of_the_known(tiny_demo, tmp_path, capsys):
    extra = {"train.max_steps_per_epoch": 2, "data.outlier_classes": "[dfl]",
             "loss.outlier_weight": 0.5, "loss.triplet_weight": 0.5, "train.m_per_class": 2,
             "train.batch_size": 10}  # fmt: skip
    assert train.main(args(ROOT / "recipes/demo.yaml", tiny_demo, tmp_path, **extra)) == 0
    state = read_checkpoint(tmp_path / "runs/demo/last.pt")
    assert state["class_names"] == ["dfaker", "faceswap", "iae", "lightweight"]
    assert state["loss"]["arcface.W"].shape[1] == 4
    keys = _metric_keys(tmp_path / "runs/demo/metrics.jsonl")
    assert {"train_outlier", "train_ce", "train_arcface", "train_triplet"} <= keys
    assert "train_open_space" not in keys
    # m_per_class puts 2 outlier clips (label -1, one more class to the sampler) in each batch
    record = json.loads((tmp_path / "runs/demo/metrics.jsonl").read_text().splitlines()[0])
    assert record["train_outlier"] > 0
    report = json.loads((tmp_path / "runs/demo/val_report.json").read_text())
    assert set(report["val_report"]["per_class_accuracy"]) == set(state["class_names"])
    err = capsys.readouterr().err
    assert "outlier exposure" in err and "holding out" not in err
    # The index chooses its open-set score against the outlier class's validation videos
    # too (known unknowns), besides simulated ones; it never indexes them.
    index = GeneratorIndex.load(build_index_for_run(tmp_path / "runs/demo/last.pt",
                                                    tmp_path / "index"))  # fmt: skip
    assert "dfl" not in index.class_names and index.ntotal > 0
    assert index.open_set.selection_data["method"] == (
        "leave-one-class-out + simulated unknowns + outlier videos"
    )
    assert (
        "data.outlier_classes ['dfl']"
        in index.open_set.selection_data["unknowns"]["outlier videos"]
    )
    assert set(index.open_set.selection.unknown_auroc) == {"simulated unknowns", "outlier videos"}


@pytest.mark.slow
@pytest.mark.parametrize("kill_step", [0, 5], ids=["at_epoch_end", "mid_epoch"])
def test_resume_with_open_space_and_outliers_equals_an_uninterrupted_run(
    tiny_demo, tmp_path, monkeypatch, kill_step
):
    """Mid-epoch (kill inside step 2 of epoch 2, last.pt after every step) with the
    m-per-class sampler and triplet loss too."""
    extra = {"train.max_steps_per_epoch": 3, "loss.open_space_weight": 0.5,
             "loss.open_space_fraction": 0.4, "data.outlier_classes": "[iae]",
             "loss.outlier_weight": 0.5}  # fmt: skip
    if kill_step:
        extra.update({"train.checkpoint_every_steps": 1, "train.m_per_class": 2,
                      "train.batch_size": 10, "loss.triplet_weight": 0.5})  # fmt: skip
    _, resumed, records = _kill_then_resume(
        tiny_demo, tmp_path, monkeypatch, 2, kill_step=kill_step, **extra
    )
    assert resumed["class_names"] == ["dfaker", "dfl", "faceswap", "lightweight"]
    assert not any("open_space" in key for key in [*resumed["model"], *resumed["loss"]])
    assert all(r["train_open_space"] > 0 and "train_outlier" in r for r in records)
