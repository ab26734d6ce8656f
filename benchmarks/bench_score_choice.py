"""Choosing the open-set score: leave-one-class-out (LOCO) vs simulated unknowns.

    nice -n 10 python benchmarks/bench_score_choice.py                 # the 10 demo LOGO indexes
    python benchmarks/bench_score_choice.py --indexes indexes/demo_logo_dfl --nets 8

An index chooses its knownness score at build time by LOCO over the known classes'
validation videos (``OpenSetPolicy.choose_score``). This measures whether choosing it with
*simulated unknowns* would pick a better score for the generator that is truly held out.

Per index (a leave-one-generator-out model and its index):

1. known: the index's validation videos (split ``val``, the index's classes, as
   ``attribnet.index.build`` selects them) through the model: video embeddings,
   probabilities, logits (``EvalClips``, 4 clips per video, fp32, CPU);
2. simulated unknowns: the same clips, clip ``i`` re-synthesised by net ``i mod --nets``
   of a fresh ``OpenSpaceSimulator`` pool (seed ``--seed`` + the index's position in
   ``--indexes``; training draws its pools from ``pool_seed(train.seed, epoch)``, never
   these), re-quantised with the recipe's mean/std, then the same model;
3. every candidate score against the index (``index.open_set.knownness``), and its AUROC
   with known = positive, simulated = negative. The simulation choice is the argmax (ties:
   order of ``CHOICE_SCORES``); the combined choice the argmax of the mean of the LOCO and
   the simulated AUROC. The LOCO choice is the argmax of the LOCO AUROCs in the index
   sidecar (recomputed from the known outputs as a check); "the index's" is the score the
   index itself chose (since 2026-12-03 the combined choice with its build's own pool of
   nets, seed 10000 for every index, ``attribnet.index.build``), so the simulation and
   combined columns show how much another pool of nets changes the choice.

Each choice is then looked up in the held-out test AUROC of the LOGO evaluation
(``reports/demo_open_set*/metrics.json``; the index must be the one the row names).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from common import machine_line, print_table
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from attribnet.data.eval_clips import DEFAULT_CLIPS_PER_VIDEO, EvalClips
from attribnet.data.open_space import OpenSpaceSimulator
from attribnet.data.sources import recipe_videos, split_videos
from attribnet.openset.choice import select_score
from attribnet.openset.scores import CHOICE_SCORES, Reference
from attribnet.predict import VideoPrediction, _per_video, _run, stack
from attribnet.query.attributor import Attributor

CLASSES = ("dfaker", "dfl", "faceswap", "iae", "lightweight")
DEFAULT_INDEXES = [f"indexes/demo{f}_logo_{c}" for f in ("", "_pose") for c in CLASSES]
REPORTS = {"no pose": "reports/demo_open_set", "pose": "reports/demo_open_set_pose"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--indexes", nargs="+", default=DEFAULT_INDEXES, help="index folders")
    p.add_argument("--nets", type=int, default=8, help="simulated generators per index")
    p.add_argument("--seed", type=int, default=10_000, help="pool seed of the first index")
    return p.parse_args(argv)


def held_out_rows() -> dict[str, tuple[str, str, dict]]:
    """{index folder: (family, held-out class, metrics row)} from the LOGO reports."""
    found = {}
    for family, folder in REPORTS.items():
        rows = json.loads((Path(folder) / "metrics.json").read_text())["rows"]
        for cls, row in rows.items():
            found[str(Path(row["index"]["path"]))] = (family, cls, row)
    return found


def video_outputs(
    attributor: Attributor, dataset: EvalClips, num_videos: int, sim: OpenSpaceSimulator | None
) -> dict[str, np.ndarray]:
    """Embeddings, probabilities, logits (V, .) of the dataset's videos, as ``predict_videos``
    computes them; with ``sim``, dataset item ``i`` is first re-synthesised by net
    ``i mod sim.num_nets``."""
    loader = DataLoader(dataset, batch_size=attributor.recipe.train.batch_size, shuffle=False)

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for batch in loader:
            if sim is not None:
                batch["clip"] = sim(batch["clip"], batch["index"] % sim.num_nets)
            yield batch

    data = attributor.recipe.data
    runner, device = attributor._runner, attributor.device
    with torch.no_grad():  # as predict_videos runs it
        parts = _run(runner, batches(), device, False, False, data.image_size, data.resize)
    videos: list[VideoPrediction] = _per_video(dataset, parts, num_videos)
    return {f: stack(videos, f) for f in ("embedding", "probabilities", "logits")}


def knownness(attributor: Attributor, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    policy = attributor.index.open_set
    return {
        name: policy.knownness(
            out["embedding"], out["probabilities"], logits=out["logits"], score=name
        )
        for name in CHOICE_SCORES
    }


def best(aurocs: dict[str, float]) -> str:
    """The argmax; ties go to the earlier name of CHOICE_SCORES."""
    return max(aurocs, key=lambda n: (aurocs[n], -CHOICE_SCORES.index(n)))


def evaluate_index(folder: str, pool_seed: int, args: argparse.Namespace, row: dict) -> dict:
    a = Attributor.load(folder, device="cpu")
    index, recipe, data = a.index, a.recipe, a.recipe.data
    if row["checkpoint"] != index.checkpoint_path or row["known_classes"] != index.class_names:
        raise SystemExit(f"{folder}: the report row is for {row['checkpoint']}, another model")
    assert recipe.loss.ce_weight > 0, "classifier scores need a trained classifier head"
    cache, entries = recipe_videos(recipe)
    pairs = [(e, e.row) for e in entries]
    val, labels, _ = split_videos(
        pairs, "val", data.eval_qualities, index.class_names, data.num_frames
    )
    dataset = EvalClips(
        cache, val, [-1] * len(val), num_frames=data.num_frames, image_size=data.image_size,
        mean=data.mean, std=data.std, clips_per_video=DEFAULT_CLIPS_PER_VIDEO, resize=data.resize,
    )  # fmt: skip
    sim = OpenSpaceSimulator(args.nets, mean=data.mean, std=data.std, seed=pool_seed)
    known = video_outputs(a, dataset, len(val), None)
    simulated = video_outputs(a, dataset, len(val), sim)
    pos, neg = knownness(a, known), knownness(a, simulated)
    truth = np.r_[np.ones(len(val)), np.zeros(len(val))]
    sim_auroc = {n: float(roc_auc_score(truth, np.r_[pos[n], neg[n]])) for n in CHOICE_SCORES}
    loco = index.open_set.selection.mean_auroc
    redo = select_score(
        Reference(index.vectors(), index.labels, len(index.class_names)),
        known["embedding"], np.asarray(labels), index.class_names,
        probabilities=known["probabilities"], logits=known["logits"], k=index.open_set.knn_k,
    )  # fmt: skip
    drift = max(abs(redo.mean_auroc[n] - loco[n]) for n in CHOICE_SCORES)
    test = {n: row["scores"][n]["auroc"] for n in CHOICE_SCORES}
    combined = {n: (loco[n] + sim_auroc[n]) / 2 for n in CHOICE_SCORES}
    return {
        "videos": len(val),
        "clips": len(dataset),
        "loco": best(loco),
        "index": index.open_set.score,
        "primary": row["primary"],
        "loco_redo": redo.chosen,
        "loco_drift": drift,
        "sim": best(sim_auroc),
        "combined": best(combined),
        "oracle": best(test),
        "sim_auroc": sim_auroc,
        "test": test,
    }


CHOICES = ("loco", "index", "sim", "combined", "oracle")


def family_table(family: str, results: dict[str, dict]) -> None:
    headers = ["held out", "LOCO", "test", "the index's", "test", "simulation", "test",
               "combined", "test", "oracle", "test"]  # fmt: skip
    headers += [f"sim {n}" for n in CHOICE_SCORES]
    rows = []
    for cls, r in results.items():
        choices = [x for c in CHOICES for x in (r[c], r["test"][r[c]])]
        rows.append([cls, *choices, *(r["sim_auroc"][n] for n in CHOICE_SCORES)])
    columns = list(zip(*rows, strict=True))[1:]
    rows.append(["mean", *(float(np.mean(c)) if isinstance(c[0], float) else "" for c in columns)])
    title = f"{family}: held-out test AUROC of each choice, and AUROC on simulated unknowns"
    print_table(title, headers, rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"bench_score_choice: {machine_line()}; {args.nets} nets per index, "
          f"pool seeds {args.seed}..{args.seed + len(args.indexes) - 1}")  # fmt: skip
    reports = held_out_rows()
    by_family: dict[str, dict[str, dict]] = {}
    start = time.perf_counter()
    for i, folder in enumerate(args.indexes):
        key = str(Path(folder))
        if key not in reports:
            raise SystemExit(f"{folder}: not in {', '.join(REPORTS.values())}")
        family, cls, row = reports[key]
        t0 = time.perf_counter()
        r = evaluate_index(folder, args.seed + i, args, row)
        by_family.setdefault(family, {})[cls] = r
        print(
            f"{folder}: {r['videos']} val videos ({r['clips']} clips), "
            f"{time.perf_counter() - t0:.1f} s; LOCO {r['loco']}; index {r['index']} "
            f"(report primary "
            f"{r['primary']}; recomputed {r['loco_redo']}, max |dAUROC| {r['loco_drift']:.2g}); "
            f"simulation {r['sim']}; combined {r['combined']}; oracle {r['oracle']}",
            flush=True,
        )
    for family, results in by_family.items():
        family_table(family, results)
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
