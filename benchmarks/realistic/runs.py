"""bench_realistic's runs: the protocols' manifests, and one training of a recipe on one of
them, tested (or validated) at every quality through ``attribnet.evaluate``."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attribnet.cli.evaluate import main as evaluate_main
from attribnet.cli.train import main as train_main
from attribnet.config import load_recipe
from attribnet.data.manifest import read_manifest, write_manifest
from realistic.build_dataset import INSTANCE_MANIFEST, build, build_parser
from realistic.generators import SYNTHETIC
from realistic.protocols import first_instances, fold_split, identity_groups
from realistic.tables import QUALITIES

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "realistic"
FULL_OVERRIDES = [
    "model.backbone=resnet50",
    "data.image_size=224",
    "data.num_frames=10",
    "model.num_frames=10",
    "data.num_workers=8",
]

# build_dataset's generator sizes: --quick (CPU) and without it (a GPU)
GENERATOR_SIZES = {
    "quick": ["--steps", "500", "--threads", "1"],
    "full": ["--size", "64", "--width-div", "2", "--steps", "10000", "--batch", "16",
             "--frame-px", "256"],
}  # fmt: skip
SYNTH_STAGE = "synth_decoders"
# optimizer steps per training; a run with other steps is named for them, so it is never
# reused for (nor reuses) a run of the default
DEFAULT_STEPS = 1500


def replicas_tag(dataset: Path) -> str:
    """``_r<n>`` for a dataset built with n > 1 trainings per pair (its ``build.json``): in
    its fold manifests' names and so in every run's and report's name, so that they never
    mix with a one-replica build's (whose manifests stay on disk beside them)."""
    meta = dataset / "build.json"
    n = json.loads(meta.read_text())["settings"].get("replicas", 1) if meta.is_file() else 1
    return f"_r{n}" if n > 1 else ""


def protocol_manifests(dataset: Path, args: argparse.Namespace) -> dict[str, list[Path]]:
    """Protocol -> its manifests (one per fold run; paper: one). Fold manifests are written
    from the dataset's manifest (with the identity groups in ``folds.json``) as
    ``manifest_fold<f><replicas_tag>.csv``."""
    rows = read_manifest(dataset / "manifest.csv")
    ids = sorted({i for r in rows for i in r.instance.split("@")[0].split("+")})
    groups = identity_groups(ids, args.folds)
    (dataset / "folds.json").write_text(json.dumps({"groups": groups}, indent=1) + "\n")
    out: dict[str, list[Path]] = {"paper": [dataset / "manifest.csv"], "folds": []}
    tag = replicas_tag(dataset)
    for f in range(args.folds):
        path = dataset / f"manifest_fold{f}{tag}.csv"
        write_manifest(fold_split(rows, groups, f), path)
        if f in args.run_folds:
            out["folds"].append(path)
    return out


def curve_manifest(fold_manifest: Path, k: int) -> Path:
    path = fold_manifest.with_name(f"{fold_manifest.stem}_k{k}.csv")
    write_manifest(first_instances(read_manifest(fold_manifest), k), path)
    return path


def epochs_for(recipe_path: Path, manifest: Path, steps: int, overrides: Sequence[str]) -> int:
    """Epochs that give ``steps`` optimizer steps on the manifest's training videos."""
    recipe = load_recipe(recipe_path, [f"data.manifest={manifest}", *overrides])
    qualities = set(recipe.data.train_qualities)
    classes = set(recipe.data.classes)
    n = sum(
        1
        for r in read_manifest(manifest)
        if r.split == "train"
        and (not qualities or r.quality in qualities)
        and (not classes or r.label in classes)
    )
    return max(1, round(steps / math.ceil(n / recipe.train.batch_size)))


def cell_sets(
    args: argparse.Namespace, recipe: str, manifest: Path, tag: str, seed: int, device: str
) -> tuple[str, list[str]]:
    """The run name and the recipe overrides of one training of ``recipe`` on ``manifest``:
    its data paths, seed, device, mode sizes and the epochs that give ``--steps`` steps (a
    name ending in ``_steps<n>`` unless that is :data:`DEFAULT_STEPS`)."""
    path = RECIPES / f"{recipe}.yaml"
    name = f"realistic_{recipe}_{tag}" + (f"_s{seed}" if seed else "")
    name += f"_steps{args.steps}" if args.steps != DEFAULT_STEPS else ""
    size = load_recipe(path).data.cache_size
    work = args.work.resolve()
    cache = work / (
        ("cache_quick_face" if args.quick else "cache_full_face") + (str(size) if size else "")
    )
    sets = [
        f"name={name}",
        f"train.seed={seed}",
        f"data.manifest={manifest.resolve()}",
        f"data.cache={cache}",
        f"train.out_dir={work / 'runs'}",
        f"train.device={device}",
        *([] if args.quick else FULL_OVERRIDES),
        *first_stage(args, recipe, manifest, tag, seed, device),
        *args.overrides,
    ]
    return name, [*sets, f"train.epochs={epochs_for(path, manifest, args.steps, sets)}"]


def first_stage(
    args: argparse.Namespace, recipe: str, manifest: Path, tag: str, seed: int, device: str
) -> list[str]:
    """For a recipe whose ``model.weights`` is the best.pt of another recipe's run here
    (``<runs>/realistic_<other>/best.pt``: srm_pretext after pretext_transforms), that
    recipe trained first as a cell of the same manifest, seed and step budget (a finished
    run is reused), and the override pointing ``model.weights`` at its best.pt."""
    weights = Path(load_recipe(RECIPES / f"{recipe}.yaml").model.weights or "")
    first = RECIPES / f"{weights.parent.name.removeprefix('realistic_')}.yaml"
    if weights.name != "best.pt" or not first.is_file():
        return []
    if first.stem == SYNTH_STAGE:
        manifest = synthetic_manifest(args, manifest, device)
    name, sets = cell_sets(args, first.stem, manifest, tag, seed, device)
    argv = [str(first)] + [a for s in [*sets, "train.if_exists=resume"] for a in ("--set", s)]
    print("python -m attribnet.train " + " ".join(argv), flush=True)
    if train_main(argv) != 0:
        raise SystemExit(f"training {name}, the first stage of {recipe}, failed")
    return [f"model.weights={args.work.resolve() / 'runs' / name / 'best.pt'}"]


def synthetic_manifest(args: argparse.Namespace, fold_manifest: Path, device: str) -> Path:
    """The data of the synthetic-decoder pre-training for one fold: every architecture of
    ``realistic.generators.SYNTHETIC`` trained on every pair of the fold's TRAINING
    identities (none of its test group, from ``folds.json``), at the main dataset's
    generator sizes, written at crf 0 (``<work>/dataset_synth_<mode>_fold<f>``, built or reused
    by ``build_dataset``); its manifest split by training (validation on other trainings)."""
    f = fold_of(fold_manifest)
    groups = json.loads((fold_manifest.parent / "folds.json").read_text())["groups"]
    ids = sorted(i for g, group in enumerate(groups) if g != f for i in group)
    mode = "quick" if args.quick else "full"
    argv = [
        "--faces", str(args.faces), "--out", str(args.work / f"dataset_synth_{mode}_fold{f}"),
        "--device", device, "--jobs", str(args.jobs), *GENERATOR_SIZES[mode],
        "--pairs", str(len(ids) * (len(ids) - 1) // 2), "--qualities", "0",
        "--generators", *SYNTHETIC, "--identities", *ids,
    ]  # fmt: skip
    print("dataset: build_dataset.py " + " ".join(argv[4:]), flush=True)
    return build(build_parser().parse_args(argv)).with_name(INSTANCE_MANIFEST)


def evaluate(command: list[str], out: Path, sets: Sequence[str]) -> dict[str, Any]:
    """Run ``python -m attribnet.evaluate <command> --out out --set ...`` in process; its
    metrics.json. A metrics.json written after every checkpoint it names, by the same
    command, is read instead (a later call of the benchmark reuses the evaluation)."""
    argv = [*command, "--out", str(out)] + [a for item in sets for a in ("--set", item)]
    if _current(out, argv):
        return json.loads((out / "metrics.json").read_text())
    print("python -m attribnet.evaluate " + " ".join(argv), flush=True)
    if evaluate_main(argv) != 0:
        raise SystemExit(f"evaluate {command[0]} into {out} failed")
    (out / "command.json").write_text(json.dumps(argv) + "\n")
    return json.loads((out / "metrics.json").read_text())


def _current(out: Path, argv: list[str]) -> bool:
    """Whether ``out`` holds the metrics of this very command, newer than its checkpoints."""
    metrics, command = out / "metrics.json", out / "command.json"
    if not (metrics.is_file() and command.is_file()) or json.loads(command.read_text()) != argv:
        return False
    paths = [Path(p) for p in json.loads(metrics.read_text()).get("checkpoints", {}).values()]
    return all(p.is_file() and p.stat().st_mtime < metrics.stat().st_mtime for p in paths)


def run_cell(
    args: argparse.Namespace,
    recipe: str,
    manifest: Path,
    tag: str,
    seed: int,
    device: str,
    split: str = "test",
) -> dict[str, Any]:
    """Train (or reuse) one model of ``recipe`` on ``manifest`` and test it at every
    quality on ``split``: the metrics.json of ``evaluate cross-quality``."""
    name, sets = cell_sets(args, recipe, manifest, tag, seed, device)
    path = RECIPES / f"{recipe}.yaml"
    several = len(load_recipe(path, sets).data.train_qualities) > 1
    rows = ["--train-mode", "augmented"] if several else ["--train-qualities", "crf0"]
    command = [
        "cross-quality",
        "--recipe",
        str(path),
        "--qualities",
        ",".join(QUALITIES),
        "--device",
        device,
        "--split",
        split,
        *rows,
    ]
    return evaluate(
        command, args.work / "reports" / (name + ("" if split == "test" else f"_{split}")), sets
    )


def fold_of(manifest: Path) -> int:
    return int(manifest.stem.removeprefix("manifest_fold").split("_")[0])
