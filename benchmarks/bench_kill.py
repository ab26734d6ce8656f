"""What a kill costs a training: optimizer steps lost, with checkpoints at epoch ends only
(attribnet before ``train.checkpoint_every_steps``) against every N steps.

A tiny demo run (ResNet-10, 32 px, 4 frames) is killed before each optimizer step in turn
(a KeyboardInterrupt from an optimizer pre-hook: the process stops as a SIGKILL would leave
it, its last.pt as it was), and the steps done since the checkpoint it would resume from
are counted. CPU, about a minute per setting:

    python benchmarks/bench_kill.py [--every 3] [--epochs 2]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

from common import machine_line, print_table

from attribnet.cli import train
from attribnet.data.synthetic import generate_demo
from attribnet.files.checkpoints import read_checkpoint
from attribnet.training import loop
from attribnet.training.state import resume_point

ROOT = Path(__file__).resolve().parents[1]


class Killed(Exception):
    """The simulated kill."""


def _argv(manifest: Path, out: Path, epochs: int, every: int) -> list[str]:
    sets = {
        "data.demo": "false", "data.manifest": manifest, "data.cache": manifest.parent / "cache",
        "data.detector": "none", "data.num_frames": 4, "data.image_size": 32,
        "data.num_workers": 0, "model.backbone": "resnet10", "model.num_frames": 4,
        "train.epochs": epochs, "train.batch_size": 2, "train.device": "cpu",
        "train.out_dir": out / "runs", "train.build_index": "false",
        "train.checkpoint_every_steps": every,
    }  # fmt: skip
    return [str(ROOT / "recipes/demo.yaml")] + [
        a for k, v in sets.items() for a in ("--set", f"{k}={v}")
    ]


@contextlib.contextmanager
def _kill_before_step(step: int | None, seen: list[int]):
    """Raise Killed before optimizer step ``step`` (1-based, over the run); count steps."""
    real = loop.build_optimizer

    def build(task: Any, recipe: Any) -> Any:
        optimizer = real(task, recipe)

        def hook(*_: Any) -> None:
            seen.append(1)
            if step is not None and len(seen) == step:
                raise Killed

        optimizer.register_step_pre_hook(hook)
        return optimizer

    loop.build_optimizer = build
    try:
        yield
    finally:
        loop.build_optimizer = real


def steps_lost(
    manifest: Path, work: Path, epochs: int, every: int, kill: int, per_epoch: int
) -> int:
    """Steps done before the kill at step ``kill`` that the resumed run does again."""
    out = work / f"every{every}_kill{kill}"
    with _kill_before_step(kill, []), contextlib.suppress(Killed):
        train.main(_argv(manifest, out, epochs, every))
    last = out / "runs/demo/last.pt"
    saved = 0
    if last.exists():
        at = resume_point(read_checkpoint(last))
        saved = at.epoch * per_epoch + at.steps
    return (kill - 1) - saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=3, help="train.checkpoint_every_steps")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest = generate_demo(work / "demo", num_sources=8, num_frames=8, size=32,
                                 qualities=(0,))  # fmt: skip
        seen: list[int] = []
        with _kill_before_step(None, seen):
            train.main(_argv(manifest, work / "straight", 1, 0))
        per_epoch = len(seen)
        total = per_epoch * args.epochs
        rows = []
        for every in (0, args.every):
            lost = [steps_lost(manifest, work, args.epochs, every, k, per_epoch)
                    for k in range(1, total + 1)]  # fmt: skip
            name = "epoch ends only (before)" if every == 0 else f"every {every} steps (after)"
            rows.append([name, per_epoch, total, statistics.mean(lost), max(lost)])
    rows.append(["ratio before / after", "", "", rows[0][3] / max(rows[1][3], 1e-9),
                 rows[0][4] / max(rows[1][4], 1)])  # fmt: skip
    print(machine_line())
    print_table(
        "Steps a kill costs (killed before each optimizer step in turn, then resumed)",
        ["checkpoints", "steps per epoch", "kills", "mean steps lost", "max steps lost"],
        rows,
    )


if __name__ == "__main__":
    main()
