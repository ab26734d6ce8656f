"""Realistic attribution: face swaps of real people by many generator trainings, tested on
trainings and faces no training video came from.

    python benchmarks/bench_realistic.py --faces ../shared/data/faces --quick     # CPU, hours
    python benchmarks/bench_realistic.py --faces ../shared/data/faces --quick --recipes srm,main
    python benchmarks/bench_realistic.py --faces ../shared/data/faces --quick --recipes srm \\
        --instance-curve 1,2,4,8,12,24 --curve-folds 0

1. Dataset (``realistic/build_dataset.py``, resumable, ``--jobs`` trainings in parallel): the
   nine talking-head videos of ``--faces`` cut into segments; for each of DFDM's five
   architectures, one small face-swap autoencoder per identity pair and replica (36 pairs x
   2 seeds: 72 trainings per architecture), every segment of both identities swapped and
   written at H.264 crf 0, 10 and 23; the unswapped segments are the class ``real``.
2. Protocols. ``folds`` (cross-instance, the one that counts): the identities dealt into 3
   groups (``realistic/protocols.py``); fold f tests on the trainings made on pairs inside
   group f, validates on those inside group f+1 and trains on every training whose pair has
   no identity of group f, so test videos come from unseen trainings AND show unseen faces;
   over the folds the 9 pairs inside a group are tested once each (x 2 replicas: 18 test
   trainings per architecture). ``paper`` (paper-like): the same videos split by source segment, so
   every training makes training and test videos, as in DFDM's random split.
3. Recipes: files of ``recipes/realistic/`` (``--recipes``, names without .yaml), each run
   as it is but for its data paths, run name, seed and an epoch count that gives every run
   the same number of optimizer steps (``--steps``; more videos, fewer epochs); one whose
   ``model.weights`` is another recipe's best.pt (srm_pretext, srm_synth) has that one
   trained first, per fold (``realistic/runs.py``, ``first_stage``); srm_synth's first stage
   learns eight synthetic decoder architectures, each trained on every pair of the fold's
   training identities (``dataset_synth_<mode>_fold<f>``, built here first). A recipe
   whose ``data.train_qualities`` holds several qualities trains on all of them together
   (``evaluate cross-quality --train-mode augmented``), else on crf0; every model is tested
   at crf 0, 10 and 23 (``attribnet.evaluate cross-quality``), next to the DFT baseline
   (logistic regression on the faces' log-amplitude spectrum) fit on the same videos.
4. Report: per protocol, recipe and test quality the video accuracy pooled over the folds
   with a 95% bootstrap interval over test TRAININGS (resampled within each architecture,
   a pair's replicas together since they share its faces: 9 groups per architecture;
   ``attribnet.metrics.grouped_accuracy``; over source segments for the paper-like
   protocol), the per-fold accuracies, the goals, and with ``--instance-curve`` the
   accuracy against the number of training instances per architecture. Everything goes to
   ``<work>/results_<mode>.json`` too. Finished runs are reused, interrupted ones resumed.

``--quick`` keeps the recipes' CPU size (ResNet-10, 112 px, 4 frames) and the dataset's CPU
generators (S=32, widths / 8, 500 steps). Without it (a GPU): ResNet-50 at 224 px, 10
frames, and larger generators (S=64, widths / 2, 10,000 steps, 256 px frames).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import machine_line, markdown_table
from realistic.build_dataset import build, build_parser
from realistic.runs import (
    DEFAULT_STEPS,
    GENERATOR_SIZES,
    RECIPES,
    cell_sets,
    curve_manifest,
    evaluate,
    fold_of,
    protocol_manifests,
    replicas_tag,
    run_cell,
)
from realistic.tables import (
    BASELINE,
    QUALITIES,
    cell,
    gaps_to,
    goals,
    pair_table,
    protocol_table,
    summary,
)

from attribnet.cli.logs import setup_logging
from attribnet.data.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
DATASET = ["--pairs", "36", "--replicas", "2", "--real"]  # + GENERATOR_SIZES of the mode
DEFAULT_RECIPES = "srm,srm_all_qualities,srm_patches,srm_supcon"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--faces", required=True, type=Path, help="folder of real face videos")
    p.add_argument("--work", type=Path, default=Path("data/realistic"), help="data, runs, reports")
    p.add_argument("--quick", action="store_true", help="CPU sizes (see above)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--jobs", type=int, default=2, help="generator trainings in parallel")
    p.add_argument("--dataset-args", default="", help="extra build_dataset.py arguments")
    p.add_argument("--recipes", default=DEFAULT_RECIPES, help="names in recipes/realistic/")
    p.add_argument("--protocols", default="folds,paper", help="folds and/or paper")
    p.add_argument("--folds", type=int, default=3, help="identity groups (folds)")
    p.add_argument("--run-folds", default="", help="run only these folds, e.g. 0 (default all)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimizer steps per training")
    p.add_argument("--seeds", type=int, default=1, help="train.seed 0..N-1 per cell")
    p.add_argument("--instance-curve", default="", help="training instances per class, e.g. 1,4,24")
    p.add_argument("--curve-folds", default="", help="folds of the curve (default --run-folds)")
    p.add_argument(
        "--real-check",
        default="",
        help="recipes whose models (on --curve-folds) answer the real test videos through an "
        "index: how many are named as a generator, e.g. srm,srm_real",
    )
    p.add_argument(
        "--open-set",
        action="store_true",
        help="leave-one-generator-out with the first recipe on --curve-folds",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    missing = [r for r in args.recipes if not (RECIPES / f"{r}.yaml").is_file()]
    if missing:
        p.error(
            f"no recipes/realistic/{missing[0]}.yaml; have "
            f"{', '.join(sorted(x.stem for x in RECIPES.glob('*.yaml')))}"
        )
    args.protocols = [x for x in ("folds", "paper") if x in args.protocols.split(",")]
    args.run_folds = _ints(p, args.run_folds) or list(range(args.folds))
    args.curve = _ints(p, args.instance_curve)
    args.curve_folds = _ints(p, args.curve_folds) or args.run_folds
    args.real_check = [r.strip() for r in args.real_check.split(",") if r.strip()]
    if not args.protocols or args.seeds < 1 or args.steps < 1:
        p.error("need a protocol (folds, paper), --seeds >= 1 and --steps >= 1")
    return args


def _ints(p: argparse.ArgumentParser, text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        p.error(f"expected comma-separated numbers, got {text!r}")


def build_dataset(args: argparse.Namespace, mode: str, device: str) -> tuple[Path, float]:
    sizes = [*DATASET, *GENERATOR_SIZES[mode]]
    argv = [
        "--faces",
        str(args.faces),
        "--out",
        str(args.work / f"dataset_{mode}"),
        "--device",
        device,
        "--jobs",
        str(args.jobs),
        *sizes,
        *args.dataset_args.split(),
    ]
    print("dataset: build_dataset.py " + " ".join(argv[4:]), flush=True)
    start = time.perf_counter()
    return build(build_parser().parse_args(argv)), time.perf_counter() - start


def open_set(args: argparse.Namespace, manifests: dict, device: str) -> dict[str, Any]:
    """Leave-one-generator-out (``evaluate open-set``) with the first recipe on the folds of
    ``--curve-folds``: per fold, one model per held-out architecture; the unknowns are the
    held-out architecture's test videos (unseen trainings, unseen faces). Mean AUROC per
    knownness score and of the score each index chose (the verdict's)."""
    recipe, out = args.recipes[0], {}
    for m in [m for m in manifests["folds"] if fold_of(m) in args.curve_folds]:
        name, sets = cell_sets(args, recipe, m, m.stem.removeprefix("manifest_"), 0, device)
        command = [
            "open-set",
            "--recipe",
            str(RECIPES / f"{recipe}.yaml"),
            "--device",
            device,
            "--qualities",
            "crf0",
        ]
        metrics = evaluate(command, args.work / "reports" / f"{name}_logo", sets)
        out[m.stem] = {"mean": metrics["mean"], "verdict_mean": metrics["verdict_mean"]}
    scores = list(next(iter(out.values()))["mean"])
    rows = [
        [f, *(f"{v['mean'][s]['auroc']:.3f}" for s in scores), f"{v['verdict_mean']['auroc']:.3f}"]
        for f, v in out.items()
    ]
    print(f"\n### Leave-one-generator-out, {recipe}: mean AUROC over the held-out architectures\n")
    print(markdown_table(["fold", *scores, "the verdict's score"], rows))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "quick" if args.quick else "full"
    device = (
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    setup_logging()
    print(machine_line())
    manifest, dataset_s = build_dataset(args, mode, device)
    manifests = protocol_manifests(manifest.parent, args)
    report: dict[str, Any] = {
        "mode": mode,
        "machine": machine_line(),
        "steps": args.steps,
        "seeds": args.seeds,
        "recipes": args.recipes,
        "protocols": {},
    }
    for protocol in args.protocols:
        runs: dict[str, list[dict]] = {}
        for recipe in args.recipes:
            for m in manifests[protocol]:
                tag = (
                    m.stem.removeprefix("manifest_")
                    if protocol == "folds"
                    else "paper" + replicas_tag(m.parent)
                )
                for seed in range(args.seeds):
                    runs.setdefault(recipe, []).append(run_cell(args, recipe, m, tag, seed, device))
        records = {
            BASELINE: {q: summary(runs[args.recipes[0]], q, True, protocol) for q in QUALITIES}
        }
        records.update(
            {r: {q: summary(ms, q, False, protocol) for q in QUALITIES} for r, ms in runs.items()}
        )
        report["protocols"][protocol] = records
        over = "test trainings" if protocol == "folds" else "source segments"
        print(
            f"\n### {protocol} protocol: video accuracy pooled over "
            f"{len(manifests[protocol])} run(s) x {args.seeds} seed(s), 95% interval over {over}\n"
        )
        print(protocol_table(records, protocol))
        if protocol == "folds":
            print("\nGoals (cross-instance):\n" + "\n".join(goals(records)))
            print("\nBy test pair of faces (each: every architecture's training of it):\n")
            print(pair_table(records))
            report["validation"] = validation(args, manifests["folds"], device)
    if args.curve:
        report["instance_curve"] = instance_curve(args, manifests, device)
    if args.real_check:
        report["real_videos"] = real_check(args, manifests, device)
    if args.open_set:
        report["open_set"] = open_set(args, manifests, device)
    print(f"\ndataset: {manifest.parent} (this call {dataset_s:.0f} s)")
    out = args.work / f"results_{mode}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"results written to {out}", flush=True)
    return 0


def validation(args: argparse.Namespace, folds: Sequence[Path], device: str) -> dict[str, Any]:
    """The choice between recipes: each fold model on its fold's VALIDATION trainings at
    every quality (pooled over folds and seeds), the mean over the qualities, and each
    recipe's gap to the best with a paired interval over validation trainings."""
    records: dict[str, Any] = {}
    runs: dict[str, list[dict]] = {}
    for recipe in args.recipes:
        runs[recipe] = [
            run_cell(args, recipe, m, m.stem.removeprefix("manifest_"), seed, device, "val")
            for m in folds
            for seed in range(args.seeds)
        ]
        if not records:
            records[BASELINE] = {q: summary(runs[recipe], q, True, "folds") for q in QUALITIES}
        records[recipe] = {q: summary(runs[recipe], q, False, "folds") for q in QUALITIES}
    for r in records.values():
        r["mean"] = float(np.mean([r[q]["accuracy"] for q in QUALITIES]))
    chosen = max(args.recipes, key=lambda r: records[r]["mean"])
    gaps = gaps_to(runs, chosen)
    for recipe, gap in gaps.items():
        records[recipe]["gap"] = gap
    rows = [
        [
            label,
            *(cell(r[q]) for q in QUALITIES),
            f"{r['mean']:.3f}",
            f"{r['gap']['drop']:+.3f} [{r['gap']['low']:+.3f}, {r['gap']['high']:+.3f}]"
            if "gap" in r and label != chosen
            else "",
        ]
        for label, r in records.items()
    ]
    print("\n### Validation trainings (the choice: best mean over the qualities)\n")
    headers = ["recipe", *(f"val {q}" for q in QUALITIES), "mean", f"minus {chosen} (paired)"]
    print(markdown_table(headers, rows))
    tied = [r for r in args.recipes if r != chosen and gaps[r]["high"] >= 0]
    print(f"\nchosen on validation: {chosen}")
    if tied:
        print(f"not told apart from it (paired interval reaches 0): {', '.join(tied)}")
    return {"records": records, "chosen": chosen, "tied": tied}


def instance_curve(args: argparse.Namespace, manifests: dict, device: str) -> dict[str, Any]:
    """Accuracy (trained on crf0 or as the recipe says, tested at every quality) of the
    first recipe against the number of training instances per architecture, on the folds
    of ``--curve-folds``."""
    recipe = args.recipes[0]
    folds = [m for m in manifests["folds"] if fold_of(m) in args.curve_folds]
    points: dict[str, Any] = {}
    for k in args.curve:
        runs = [
            run_cell(
                args,
                recipe,
                curve_manifest(m, k),
                f"{m.stem.removeprefix('manifest_')}_k{k}",
                0,
                device,
            )
            for m in folds
        ]
        points[str(k)] = {q: summary(runs, q, False, "folds") for q in QUALITIES}
        points[str(k)][BASELINE] = summary(runs, "crf0", True, "folds")
    rows = [[k, *(cell(p[q]) for q in QUALITIES), cell(p[BASELINE])] for k, p in points.items()]
    print(f"\n### Instance curve: {recipe}, folds {args.curve_folds}\n")
    print(
        markdown_table(
            ["instances per class", *(f"test {q}" for q in QUALITIES), f"{BASELINE} crf0"], rows
        )
    )
    return points


def real_check(args: argparse.Namespace, manifests: dict, device: str) -> dict[str, Any]:
    """For each recipe of ``--real-check``, on the folds of ``--curve-folds``: the fold's
    model (trained as the tables' runs, reused) gets its generator index (training
    videos), then answers the fold's real TEST videos (faces it never saw, unswapped): the
    share named as one of the generators at the index's open-set threshold, per quality
    (neither "unknown generator" nor, for a model with the class, "real")."""
    from attribnet.cli.index import main as index_main
    from attribnet.query import UNKNOWN, Attributor

    out: dict[str, Any] = {}
    folds = [m for m in manifests["folds"] if fold_of(m) in args.curve_folds]
    for recipe in args.real_check:
        named: dict[str, list[bool]] = {q: [] for q in QUALITIES}
        for m in folds:
            metrics = run_cell(args, recipe, m, m.stem.removeprefix("manifest_"), 0, device)
            checkpoint = Path(next(iter(metrics["checkpoints"].values())))
            index = args.work / "indexes" / checkpoint.parent.name
            build = ["build", "--checkpoint", str(checkpoint), "--out", str(index)]
            if not (index / "meta.json").is_file() and index_main(build):
                raise SystemExit(f"index build for {checkpoint} failed")
            real = [r for r in read_manifest(m) if r.split == "test" and r.label == "real"]
            answers = Attributor.load(index, device=device).attribute(
                [r.path for r in real], cache_dir=args.work / "query_cache"
            )
            for row, a in zip(real, answers, strict=True):
                named[row.quality].append(a.ok and a.verdict not in (UNKNOWN, "real"))
        out[recipe] = {q: {"named": int(sum(v)), "videos": len(v)} for q, v in named.items()}
    rows = [
        [r, *(f"{v[q]['named']} / {v[q]['videos']}" for q in QUALITIES)] for r, v in out.items()
    ]
    print("\n### Real test videos named as a generator (at the index's threshold)\n")
    print(markdown_table(["recipe", *QUALITIES], rows))
    return out


if __name__ == "__main__":
    sys.exit(main())
