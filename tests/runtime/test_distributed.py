"""Work shared over torchrun's processes: each rank's share of the batches, contiguous shards
gathered back in order, BatchNorm synchronised on the CPU, and 2 gloo processes training
like 1 process with the same clips per step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions as pml_common
from torch import nn
from torch.utils.data import BatchSampler, SequentialSampler

from attribnet.cli.query import main as query_main
from attribnet.errors import ConfigError
from attribnet.files.checkpoints import read_checkpoint
from attribnet.index import GeneratorIndex
from attribnet.runtime import device
from attribnet.runtime.distributed import (
    RankBatches,
    convert_sync_batchnorm,
    gather,
    process_group_backend,
    shard,
)
from tests.builders import REPO, tiny_overrides

ROOT = REPO
# these tests run torchrun on the CPU (gloo) wherever they run: on a GPU machine the CUDA
# path would change the numbers they compare and need one GPU per process
GLOO_ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ranks_take_disjoint_turns_of_the_same_batches():
    batches = BatchSampler(SequentialSampler(range(23)), 5, drop_last=True)  # 4 batches
    one = list(RankBatches(batches))
    ranks = [list(RankBatches(batches, r, 2)) for r in range(2)]
    assert [len(RankBatches(batches, r, 2)) for r in range(2)] == [2, 2]
    assert ranks[0] == [one[0], one[2]] and ranks[1] == [one[1], one[3]]
    seen = [i for part in ranks for b in part for i in b]
    assert len(seen) == len(set(seen)) == 20
    # a step that would leave a rank without a batch is dropped on every rank
    assert [len(list(RankBatches(batches, r, 3))) for r in range(3)] == [1, 1, 1]
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        RankBatches(batches, 2, 2)


def test_m_per_class_batches_are_dealt_out_not_redrawn_per_rank():
    labels = np.repeat(np.arange(5), 8)

    def stream(rank: int, world: int) -> list[list[int]]:
        pml_common.NUMPY_RANDOM = np.random.RandomState(7)  # what train_loader seeds
        sampler = MPerClassSampler(labels, 2, batch_size=10, length_before_new_iter=40)
        return list(RankBatches(BatchSampler(sampler, 10, drop_last=True), rank, world))

    one = stream(0, 1)
    ranks = [stream(r, 2) for r in range(2)]
    assert len(one) == 4 and [len(p) for p in ranks] == [2, 2]  # the epoch is shared out
    assert ranks[0] == one[0::2] and ranks[1] == one[1::2]
    for batch in ranks[0] + ranks[1]:  # every rank's batch keeps m clips per class
        assert set(np.bincount(labels[batch])[np.unique(labels[batch])]) == {2}


def test_shards_are_contiguous_and_cover_every_item_once():
    for n in (0, 1, 7, 10):
        parts = [shard(n, r, 3) for r in range(3)]
        assert [i for p in parts for i in p] == list(range(n))
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    assert gather([1, 2]) == [1, 2]  # no process group: the items themselves


def _sync_bn_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x, w = _bn_inputs()
        mine = x[shard(len(x), rank, world)].clone().requires_grad_(True)
        bn = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), torch.device("cpu"))
        torch.manual_seed(1)
        nn.init.normal_(bn[0].weight)
        nn.init.normal_(bn[0].bias)
        y = bn(mine)
        # each rank's loss is the mean over its own clips; DDP then averages the gradients
        (y * w[shard(len(x), rank, world)]).mean().backward()
        weight_grad = bn[0].weight.grad.clone()
        dist.all_reduce(weight_grad)
        parts = gather([(y.detach(), mine.grad)], to_all=True)
        if rank == 0:
            torch.save({"y": torch.cat([p[0] for p in parts]),
                        "x_grad": torch.cat([p[1] for p in parts]) / world,
                        "weight_grad": weight_grad / world,
                        "running": (bn[0].running_mean, bn[0].running_var)}, out)  # fmt: skip
    finally:
        dist.destroy_process_group()


def _bn_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, 4, 4, generator=g) * 3 + 1, torch.randn(6, 3, 4, 4, generator=g)


@pytest.mark.slow
def test_cpu_sync_batchnorm_over_two_ranks_equals_one_batchnorm(tmp_path):
    out = tmp_path / "sync.pt"
    mp.spawn(_sync_bn_worker, args=(2, _free_port(), str(out)), nprocs=2)
    got = torch.load(out)
    x, w = _bn_inputs()
    x.requires_grad_(True)
    bn = nn.BatchNorm2d(3)
    torch.manual_seed(1)
    nn.init.normal_(bn.weight)
    nn.init.normal_(bn.bias)
    y = bn(x)
    (y * w).mean().backward()
    torch.testing.assert_close(got["y"], y.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["x_grad"], x.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got["weight_grad"], bn.weight.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got["running"][0], bn.running_mean)
    torch.testing.assert_close(got["running"][1], bn.running_var)
    # the same module without a process group is plain BatchNorm, state-dict keys unchanged
    plain = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), torch.device("cpu"))
    assert set(plain.state_dict()) == set(nn.Sequential(nn.BatchNorm2d(3)).state_dict())


def _train(manifest: Path, out: Path, nproc: int, **extra: object) -> Path:
    sets = tiny_overrides(manifest, out, **extra)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={_free_port()}", "-m", "attribnet.train",
           str(ROOT / "recipes/demo.yaml")]  # fmt: skip
    cmd += [a for s in sets for a in ("--set", s)]
    env = {**os.environ, **GLOO_ENV}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "runs/demo"


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_with_the_same_clips_per_step(tiny_demo, tmp_path):
    """Per rank batch 5 on 2 ranks against batch 10 in 1 process: the same clips per step
    (RankBatches), BatchNorm over all 10 (train.sync_bn), DDP's mean of the gradients. SGD,
    so the weights move by the gradients themselves. An untrained net amplifies float
    rounding from step to step (measured with equal inputs: 1e-8 after one step, 5e-6 after
    two), so the bound is loose; one process with batch 5 (other clips per step) lands 70x
    farther away, which shows the bound tells the two apart."""
    common = {"train.max_steps_per_epoch": 2, "optim.name": "sgd", "optim.lr": 0.002,
              "optim.schedule": "constant", "optim.warmup_epochs": 0,
              "train.sync_bn": True}  # fmt: skip
    one = _train(tiny_demo, tmp_path / "one", 1, **{**common, "train.batch_size": 10})
    two = _train(tiny_demo, tmp_path / "two", 2, **{**common, "train.batch_size": 5})
    other = _train(tiny_demo, tmp_path / "other", 1, **{**common, "train.batch_size": 5})
    a, b, c = (read_checkpoint(run / "last.pt") for run in (one, two, other))

    def far(x: dict, y: dict) -> float:
        return max((x["model"][k].float() - y["model"][k].float()).abs().max().item()
                   for k in x["model"] if x["model"][k].is_floating_point())  # fmt: skip

    assert far(a, b) < 2e-4 and far(a, c) > 20 * far(a, b)
    torch.testing.assert_close(b["loss"]["arcface.W"], a["loss"]["arcface.W"], atol=2e-4, rtol=0)
    # validation: each rank ran its shard, rank 0 logged the gathered result once
    lines = [(run / "metrics.jsonl").read_text().splitlines() for run in (one, two)]
    assert len(lines[1]) == 1
    recs = [json.loads(line[-1]) for line in lines]
    assert recs[0]["val_accuracy"] == recs[1]["val_accuracy"]
    assert recs[0]["val_loss"] == pytest.approx(recs[1]["val_loss"], abs=1e-4)


def _torchrun(module: str, argv: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={_free_port()}", "-m", module, *argv]  # fmt: skip
    env = {**os.environ, **GLOO_ENV}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_an_index_built_by_two_gloo_processes_equals_the_one_process_index(world, tmp_path):
    """world["index"] was built by one process with the same command line."""
    out = tmp_path / "two"
    argv = ["build", "--checkpoint", str(world["checkpoint"]), "--manifest", str(world["manifest"])]
    done = _torchrun("attribnet.index", [*argv, "--out", str(out)])
    assert done.stdout.count("index written to") == 1  # rank 0 alone writes and says so
    one, two = GeneratorIndex.load(world["index"]), GeneratorIndex.load(out)
    assert two.video_ids == one.video_ids and two.qualities == one.qualities
    np.testing.assert_array_equal(two.labels, one.labels)
    np.testing.assert_allclose(two.vectors(), one.vectors(), atol=1e-5)
    np.testing.assert_allclose(two.prototypes, one.prototypes, atol=1e-5)
    info_one, info_two = one.info(), two.info()
    for key in ("vectors", "classes", "threshold_score", "threshold_split", "index_type"):
        assert info_two[key] == info_one[key], key
    assert info_two["threshold"] == pytest.approx(info_one["threshold"], abs=1e-4)


@pytest.mark.slow
def test_a_query_shared_by_two_gloo_processes_reports_like_one(world, tmp_path):
    """A manifest plus a folder (with a corrupt file and a text file): the same videos,
    verdicts and failures in the same order, one report written by rank 0."""
    argv = ["--index", str(world["index"]), str(world["queries"]),
            "--manifest", str(world["manifest"])]  # fmt: skip
    assert query_main([*argv, "--json", str(tmp_path / "one.json")]) in (0, 1)
    done = _torchrun("attribnet.query", [*argv, "--json", str(tmp_path / "two.json"),
                                         "--cache", str(tmp_path / "cache")])  # fmt: skip
    assert done.stdout.count("videos attributed") == 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["rank0", "rank1"]
    one = json.loads((tmp_path / "one.json").read_text())["videos"]
    two = json.loads((tmp_path / "two.json").read_text())["videos"]
    assert len(one) == len(world_videos := two) and len(one) > 12
    for a, b in zip(one, world_videos, strict=True):
        assert (a["video"], a["status"], a.get("verdict"), a.get("reason")) == (
            b["video"], b["status"], b.get("verdict"), b.get("reason"))  # fmt: skip
        if a["status"] == "ok":
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
            assert [n["video_id"] for n in a["neighbors"]] == [
                n["video_id"] for n in b["neighbors"]]  # fmt: skip


@pytest.mark.parametrize(
    ("gpus", "per_machine", "backend"),
    [(0, 2, "gloo"), (1, 2, "gloo"), (2, 2, "cpu:gloo,cuda:nccl"), (8, 4, "cpu:gloo,cuda:nccl")],
)
def test_nccl_only_when_every_process_has_a_gpu(monkeypatch, gpus, per_machine, backend):
    """Seen on a 1-GPU machine: two torchrun processes with train.device=cpu chose NCCL
    (CUDA was there) and failed; gloo serves CPU tensors beside NCCL now."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(per_machine))
    assert process_group_backend() == backend


def test_a_process_without_its_own_gpu_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(device, "rank_and_world", lambda: (1, 2))
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="needs GPU 1, but it has 1.*--nproc_per_node=1"):
        device.resolve_device("cuda")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert device.resolve_device("cuda") == torch.device("cuda", 0)
