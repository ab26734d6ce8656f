"""Realistic accuracy: the 3x3 cross-quality matrix on face swaps of real faces.

    python benchmarks/bench_realistic.py --faces ../shared/data/faces --work work/realistic --quick
    python benchmarks/bench_realistic.py --faces ../shared/data/faces --work work/realistic  # GPU

1. Builds (or reuses) the realistic dataset with ``realistic/build_dataset.py``: the real
   talking-head videos of ``--faces`` swapped pairwise by small face-swap autoencoders of
   DFDM's five architectures, at H.264 crf 0, 10 and 23, splits grouped by source segment.
2. Runs ``attribnet.evaluate cross-quality`` (train on one quality, test on each) for the
   DMA-STA paper recipe (``recipes/dfdm_dmasta.yaml``) and attribnet's main recipe
   (``recipes/dfdm_ce_arcface.yaml``), pointed at that dataset with ``--set`` overrides.
   Finished runs are reused, interrupted ones resumed. The videos are head-centred
   crops already (the face box is the central 2/3 of each frame), so both recipes read
   them with ``data.detector=none`` (as for DFDM's face frames): OpenCV's Haar cascade
   misses many of the blurry swapped faces of CPU-trained generators, and dropping those
   videos would drop them unevenly across classes.
3. Prints one table: per train -> test cell the video-level accuracy of both and their
   difference, and whether the goals hold: main beats DMA-STA on every cell, and no
   off-diagonal cell of main is more than 5 points below its row's diagonal.

``--seeds N`` repeats every training with ``train.seed`` 0 .. N-1 (seed 0's runs keep
their names, so a later call with more seeds reuses them) and reports each cell's mean
and standard deviation over the seeds; the goals are judged on the means, and each
seed's worst drop is listed. One quick-mode cell has 35 test videos (one video is 2.9
points), so a single training cannot settle a 5-point goal; seeds narrow it.

Every drop below a row's diagonal also gets a 95% paired bootstrap interval (the same test
videos at two qualities, resampled by source segment, the seeds' results of a video kept
together: ``attribnet.evaluate.cross_quality_table.quality_drops``), and the drop goal is
called settled only when the intervals decide it: met if every interval ends at or below
5 points, missed if one starts above, not settled otherwise. The intervals cover the test
sample, not the training noise between seeds (the per-seed drops show that).

``--quick`` (CPU) shrinks the attribution models (resnet10 at 112 px, 4 frames, 100
epochs, batch 10 for both, no loader workers) and keeps the dataset's CPU defaults. (At
40 epochs both recipes were far from converged: DMA-STA's best validation accuracy on crf0
was 0.49 after 40 epochs and 0.97 after 100.)
Without it the recipes run as written (ResNet-50 at 224 px, 10 frames, 300 / 100 epochs)
on a larger dataset (generators at S=64, widths / 2, 10,000 steps; 12 pairs and 12
segments of 16 frames per identity: 4,320 videos, about 215 test videos per cell instead of
35): settings for a GPU.
The settings used are printed above the table and saved in ``<work>/results_<mode>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from common import machine_line, markdown_table
from realistic.build_dataset import build, build_parser

from attribnet.evaluate import main as evaluate_main
from attribnet.evaluate.cross_quality_table import quality_drops
from attribnet.logs import setup_logging
from attribnet.report import drop_cell

ROOT = Path(__file__).resolve().parent.parent
QUALITIES = ("crf0", "crf10", "crf23")
RECIPES = {
    "DMA-STA": ("dmasta", ROOT / "recipes" / "dfdm_dmasta.yaml"),
    "main": ("main", ROOT / "recipes" / "dfdm_ce_arcface.yaml"),
}
QUICK_OVERRIDES = [
    "model.backbone=resnet10",
    "data.image_size=112",
    "data.num_frames=4",
    "model.num_frames=4",
    "train.epochs=100",
    "train.batch_size=10",
    "data.num_workers=0",
]
FULL_OVERRIDES: list[str] = []
QUICK_DATASET: list[str] = []  # build_dataset.py's CPU defaults
FULL_DATASET = [
    "--size", "64", "--width-div", "2", "--steps", "10000", "--batch", "16",
    "--frame-px", "256", "--pairs", "12", "--segments", "12", "--length", "16",
]  # fmt: skip
MAX_DROP = 0.05


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--faces", required=True, type=Path, help="folder of real face videos")
    p.add_argument("--work", required=True, type=Path, help="folder for data, runs, reports")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quick", action="store_true", help="CPU-sized models (see above)")
    p.add_argument(
        "--dataset-args",
        default="",
        help="extra build_dataset.py arguments, e.g. '--steps 400 --pairs 3'",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra recipe override for both recipes (after the mode's)",
    )
    p.add_argument("--recipes", default="DMA-STA,main", help="which recipes to run")
    p.add_argument(
        "--seeds", type=int, default=1, help="train every cell with train.seed 0..N-1 (N >= 1)"
    )
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    return args


def device_of(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def build_dataset(args: argparse.Namespace, mode: str, device: str) -> tuple[Path, float]:
    dataset_args = QUICK_DATASET if args.quick else FULL_DATASET
    argv = [
        "--faces", str(args.faces), "--out", str(args.work / f"dataset_{mode}"),
        "--device", device, *dataset_args, *args.dataset_args.split(),
    ]  # fmt: skip
    print("dataset: build_dataset.py " + " ".join(argv[4:]), flush=True)
    start = time.perf_counter()
    manifest = build(build_parser().parse_args(argv))
    return manifest, time.perf_counter() - start


def seed_suffix(seed: int) -> str:
    """Run and report name suffix: none for seed 0 (the runs of a one-seed call)."""
    return f"_s{seed}" if seed else ""


def run_name(tag: str, mode: str, seed: int) -> str:
    """The recipe name of one seed's cross-quality runs (each run adds ``_<quality>``)."""
    return f"realistic_{tag}_{mode}{seed_suffix(seed)}"


def overrides_for(
    args: argparse.Namespace, mode: str, tag: str, manifest: Path, device: str, seed: int = 0
) -> list[str]:
    work = args.work.resolve()
    return [
        f"name={run_name(tag, mode, seed)}",
        f"train.seed={seed}",
        f"data.manifest={manifest.resolve()}",
        f"data.cache={work / f'cache_{mode}'}",
        "data.detector=none",
        f"train.out_dir={work / 'runs'}",
        f"train.index_dir={work / 'indexes'}",
        "train.build_index=false",
        f"train.device={device}",
        *(QUICK_OVERRIDES if args.quick else FULL_OVERRIDES),
        *args.overrides,
    ]


def cross_quality(recipe: Path, out: Path, overrides: list[str], device: str) -> tuple[dict, float]:
    """Run ``python -m attribnet.evaluate cross-quality`` in process; its metrics.json."""
    argv = ["cross-quality", "--recipe", str(recipe), "--qualities", ",".join(QUALITIES),
            "--out", str(out), "--device", device]  # fmt: skip
    for item in overrides:
        argv += ["--set", item]
    print("python -m attribnet.evaluate " + " ".join(argv), flush=True)
    start = time.perf_counter()
    code = evaluate_main(argv)
    if code != 0:
        raise SystemExit(f"cross-quality for {recipe.name} failed (exit code {code})")
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - start


def matrix(metrics: dict, level: str = "video") -> dict[tuple[str, str], float]:
    rows, tests = metrics["train_rows"], metrics["test_qualities"]
    return {
        (r, q): float(metrics["matrix"][level][i][j])
        for i, r in enumerate(rows)
        for j, q in enumerate(tests)
    }


def mean_matrix(accs: list[dict[tuple[str, str], float]]) -> dict[tuple[str, str], float]:
    return {cell: statistics.fmean(a[cell] for a in accs) for cell in accs[0]}


def sd_matrix(accs: list[dict[tuple[str, str], float]]) -> dict[tuple[str, str], float]:
    """Per-cell sample standard deviation over seeds (0 for one seed)."""
    if len(accs) < 2:
        return {cell: 0.0 for cell in accs[0]}
    return {cell: statistics.stdev(a[cell] for a in accs) for cell in accs[0]}


def worst_drop(acc: dict[tuple[str, str], float]) -> tuple[float, tuple[str, str]]:
    """Largest (diagonal - off-diagonal) accuracy drop within a training row."""
    drops = [(acc[(r, r)] - acc[(r, q)], (r, q)) for r in QUALITIES for q in QUALITIES if q != r]
    return max(drops)


def drop_verdict(drops: dict[str, dict[str, dict]]) -> str:
    """Whether the 95% intervals of every off-diagonal drop settle the drop goal."""
    cells = [d for row in drops.values() for d in row.values()]
    if any(d["low"] > MAX_DROP for d in cells):
        return "missed"
    if cells and all(d["high"] <= MAX_DROP for d in cells):
        return "met"
    return "not settled"


def drop_table(drops: dict[str, dict[str, dict]]) -> str:
    """Rows = training quality, columns = test quality: drop [interval] in points."""
    rows = [[r, *(drop_cell(drops.get(r, {}).get(q)) for q in QUALITIES)] for r in QUALITIES]
    return markdown_table(["train \\ test", *QUALITIES], rows)


def training_summary(work: Path, name: str) -> str:
    """Sum of epoch seconds and best validation accuracy of each per-quality run (from
    its metrics.jsonl, so resumed runs count every epoch once)."""
    parts, total = [], 0.0
    for q in QUALITIES:
        path = work / "runs" / f"{name}_{q}" / "metrics.jsonl"
        if not path.is_file():
            continue
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        secs = sum(x.get("epoch_s", 0.0) for x in lines)
        best = max((x.get("val_accuracy") or 0.0 for x in lines), default=float("nan"))
        total += secs
        parts.append(f"{q} {len(lines)} epochs {secs / 60:.1f} min, best val acc {best:.3f}")
    return f"training {total / 60:.1f} min in all ({'; '.join(parts)})"


def cache_report(work: Path, mode: str) -> str:
    path = work / f"cache_{mode}" / "report.json"
    if not path.is_file():
        return "no cache report"
    report = json.loads(path.read_text())
    return (
        f"{report['done']} of {report['videos']} videos cached, {len(report['skipped'])} skipped "
        f"(no face / unreadable), {len(report['failed'])} failed"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "quick" if args.quick else "full"
    device = device_of(args.device)
    setup_logging()
    print(machine_line())
    if device == "cpu" and not args.quick:
        print("warning: the full settings are meant for a GPU; on a CPU use --quick", flush=True)
    manifest, dataset_s = build_dataset(args, mode, device)
    wanted = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = sorted(set(wanted) - set(RECIPES))
    if unknown:
        raise SystemExit(f"unknown --recipes {unknown}; choose from {sorted(RECIPES)}")
    results: dict[str, list[dict]] = {label: [] for label in wanted}
    seconds: dict[str, float] = dict.fromkeys(wanted, 0.0)
    for label in wanted:
        for seed in range(args.seeds):
            tag, recipe = RECIPES[label]
            out = args.work / "reports" / f"{tag}_{mode}{seed_suffix(seed)}"
            overrides = overrides_for(args, mode, tag, manifest, device, seed)
            metrics, secs = cross_quality(recipe, out, overrides, device)
            results[label].append(metrics)
            seconds[label] += secs
    report(args, mode, manifest, dataset_s, results, seconds)
    return 0


def report(
    args: argparse.Namespace,
    mode: str,
    manifest: Path,
    dataset_s: float,
    results: dict[str, list[dict]],
    seconds: dict[str, float],
) -> None:
    """Print the table and the goals (on per-cell means over seeds); write results json."""
    build_info = json.loads((manifest.parent / "build.json").read_text())
    settings = QUICK_OVERRIDES if args.quick else FULL_OVERRIDES
    seeds = args.seeds
    print(f"\n## Realistic cross-quality ({mode} settings)\n")
    print(f"- machine: {machine_line()}")
    print(f"- dataset: {manifest} ({build_info['videos']} videos; built in "
          f"{build_info['seconds']:.0f} s, this call {dataset_s:.0f} s)")  # fmt: skip
    print(f"- dataset settings: {json.dumps(build_info['settings'])}")
    print(f"- recipe overrides ({mode}): {' '.join(settings + args.overrides) or 'none'}")
    print(f"- seeds: train.seed 0..{seeds - 1} ({seeds} training(s) per cell)")
    print(f"- face cache: {cache_report(args.work, mode)}")
    for label, secs in seconds.items():
        for seed in range(seeds):
            name = run_name(RECIPES[label][0], mode, seed)
            print(f"- {label} seed {seed}: {training_summary(args.work, name)}")
        print(f"- {label}: this call (training what was not finished + {9 * seeds} "
              f"evaluations) {secs / 60:.1f} min")  # fmt: skip
    results = {label: results[label] for label in RECIPES if label in results}  # table order
    per_seed = {label: [matrix(m) for m in ms] for label, ms in results.items()}
    per_seed_clip = {label: [matrix(m, "clip") for m in ms] for label, ms in results.items()}
    accs = {label: mean_matrix(a) for label, a in per_seed.items()}
    sds = {label: sd_matrix(a) for label, a in per_seed.items()}
    first = next(iter(results.values()))[0]
    support = first["cells"][QUALITIES[0]][QUALITIES[0]]["video"].get("support") or {}
    n_test = sum(support.values()) if isinstance(support, dict) else support

    def cell(label: str, c: tuple[str, str]) -> str:
        if seeds == 1:
            return f"{accs[label][c]:.3f}"
        return f"{accs[label][c]:.3f} ± {sds[label][c]:.3f}"

    rows = []
    for r in QUALITIES:
        for q in QUALITIES:
            row: list = [r, q, *(cell(label, (r, q)) for label in accs)]
            if len(accs) == 2:
                row.append(f"{(accs['main'][(r, q)] - accs['DMA-STA'][(r, q)]) * 100:+.1f}")
            rows.append(row)
    what = "accuracy" if seeds == 1 else f"accuracy, mean ± sd over {seeds} seeds"
    headers = ["train", "test", *(f"{label} {what}" for label in accs)]
    if len(accs) == 2:
        headers.append("main - DMA-STA (points)")
    print(f"\nVideo-level test accuracy (chance 0.20; test videos per cell: {n_test}):\n")
    print(markdown_table(headers, rows))
    means = {label: sum(a.values()) / len(a) for label, a in accs.items()}
    print("\nMean of the 9 cells: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    p = sum(means.values()) / len(means)
    se = 100 * (p * (1 - p) / n_test) ** 0.5
    print(f"One test video is {100 / n_test:.1f} points of a cell; the binomial standard error "
          f"of a cell at accuracy {p:.2f} is {se:.1f} points. Every seed is tested on the same "
          "videos: seeds average out training noise, not this.")  # fmt: skip
    goals = {}
    on = "" if seeds == 1 else f" (on the means over {seeds} seeds)"
    drops = {label: quality_drops([m["cells"] for m in ms]) for label, ms in results.items()}
    for label in accs:
        worst = [worst_drop(a) for a in per_seed[label]]
        text = "; ".join(f"seed {s}: {d * 100:.1f} ({c[0]} -> {c[1]})" for s, (d, c) in
                         enumerate(worst))  # fmt: skip
        print(f"\n{label}'s worst drop from its row's diagonal, per seed: {text}")
        print(f"\n{label}'s drop from its row's diagonal{on}, points, with its 95% paired "
              "bootstrap interval over the test videos:\n")  # fmt: skip
        print(drop_table(drops[label]))
    verdict = None
    if "main" in accs:
        drop, c = worst_drop(accs["main"])
        d = drops["main"][c[0]][c[1]]
        verdict = drop_verdict(drops["main"])
        goals[f"main: no off-diagonal cell > 5 points below its row's diagonal{on}"] = (
            drop <= MAX_DROP,
            f"worst drop {drop * 100:.1f} points ({c[0]} -> {c[1]}), 95% interval "
            f"[{100 * d['low']:.1f}, {100 * d['high']:.1f}]; settled by the intervals: {verdict}",
        )
    if len(accs) == 2:
        wins = sum(accs["main"][c] > accs["DMA-STA"][c] for c in accs["main"])
        goals[f"main beats DMA-STA on every cell{on}"] = (wins == 9, f"{wins} of 9 cells")
    print("\nGoals:")
    for goal, (ok, detail) in goals.items():
        print(f"- {goal}: {'yes' if ok else 'NO'} ({detail})")

    def by_cell(a: dict[tuple[str, str], float]) -> dict[str, float]:
        return {f"{r}->{q}": v for (r, q), v in a.items()}

    out = args.work / f"results_{mode}.json"
    out.write_text(
        json.dumps(
            {
                "mode": mode,
                "machine": machine_line(),
                "dataset": str(manifest),
                "dataset_settings": build_info["settings"],
                "recipe_overrides": settings + args.overrides,
                "seeds": seeds,
                "seconds": {"dataset_call": dataset_s, **seconds},
                "video_accuracy": {k: by_cell(a) for k, a in accs.items()},
                "video_accuracy_sd": {k: by_cell(a) for k, a in sds.items()},
                "video_accuracy_per_seed": {
                    k: [by_cell(a) for a in v] for k, v in per_seed.items()
                },
                "clip_accuracy": {k: by_cell(mean_matrix(v)) for k, v in per_seed_clip.items()},
                "mean_video_accuracy": means,
                "test_videos_per_cell": n_test,
                "goals": {g: ok for g, (ok, _) in goals.items()},
                "video_accuracy_drops": drops,
                "drop_goal_by_intervals": verdict,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nresults written to {out}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
