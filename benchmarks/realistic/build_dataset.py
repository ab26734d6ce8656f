"""Build a realistic attribution dataset: real faces swapped by DFDM's five architectures.

    python benchmarks/realistic/build_dataset.py --faces ../shared/data/faces --out data/realistic

Steps (each resumable: footage crops, trained models and written videos are reused when a
re-run finds them, and the manifest is written last):

1. Footage (:mod:`realistic.footage`): every video of ``--faces`` cut into ``--segments``
   segments of ``--length`` frames, face tracked with attribnet's Haar detector, each
   frame cropped head-centred to ``--frame-px`` pixels.
2. Pairs: the identities in a seeded order, paired consecutively (``--pairs`` pairs;
   with 9 identities 4 pairs use 8 of them, more pairs reuse identities). A pair is a
   generator *instance*: every architecture trains one autoencoder on it.
3. For every generator architecture (:mod:`realistic.generators`; ``--generators`` may also
   name its synthetic ones, and ``--identities`` keep to some faces: bench_realistic's
   pre-training data) and every pair (A, B):
   one face-swap autoencoder trained on A's and B's faces (:mod:`realistic.training`).
   Every pair is rendered by every generator, as in DFDM, so the content of a video
   (who, where) says nothing about its class.
4. Rendering (:mod:`realistic.render`): each segment of A swapped to B and each of B to A,
   written with attribnet's ``write_video`` at H.264 crf 0, 10 and 23 (DFDM's qualities).

Layout (what ``python -m attribnet.data.manifest build`` reads as ``<quality>/<class>/``)::

    out/manifest.csv                               path,label,quality,source_id,split,instance
                                                   (split by source: paper-like protocol)
    out/manifest_instance.csv                      the same rows split by instance
                                                   (cross-instance protocol)
    out/build.json                                 settings, pairs, per-model training
    out/preview.png                                one frame per generator, first pair
    out/crf{0,10,23}/<class>/<A>_seg<k>-to-<B>.mp4 segment k of A with B's face
    out/models/<class>/<A>+<B>.pt                  trained generator weights
    out/footage/<id>.npy                           cropped footage (a cache)

``source_id`` is ``<A>_seg<k>``, the real segment the fake was made from: the paper-like
splits (70/15/15, seeded) are grouped by it, so no source segment is in two splits at any
quality or class. ``instance`` is the pair ``<A>+<B>``: the cross-instance splits (the same
fractions, dealt by pair) keep every pair, with all five architectures' trainings on it, in
one split, so test videos come from generator trainings that made no training video (6
pairs: 4 train, 1 validation, 1 test). Source segments of an identity in two pairs repeat
across those splits under another donor face; every pair is rendered by every architecture,
so that content says nothing about the class.
The same manifest comes from
``python -m attribnet.data.manifest build OUT --source-pattern '^(.+_seg\\d+)-to-'``.

Deterministic for a given ``--seed`` and ``--threads`` on one machine (the videos are
bit-identical). The defaults took 31 minutes on a 2-core CPU (footage 1 minute, the 20
generators 1 to 3 minutes each, shared with other jobs). On a GPU, larger models (what
``bench_realistic.py`` uses without ``--quick``): ``--device cuda --size 64 --width-div 2
--steps 10000 --batch 16 --frame-px 256``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``realistic`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from attribnet.data.codec import DFDM_CRFS, write_video  # noqa: E402
from attribnet.data.manifest import (  # noqa: E402
    DEFAULT_SPLIT,
    ManifestRow,
    assign_splits,
    read_manifest,
    write_manifest,
)
from attribnet.files.atomic import atomic_path, write_json  # noqa: E402
from realistic.footage import FootageSettings, Identity, face_region, load_identities  # noqa: E402
from realistic.generators import (  # noqa: E402
    ARCHITECTURES,
    GENERATORS,
    build_generator,
    count_parameters,
)
from realistic.render import swap_frames  # noqa: E402
from realistic.training import TrainSettings, train_pair  # noqa: E402

log = logging.getLogger("build_dataset")

FORMAT = 2
INSTANCE_MANIFEST = "manifest_instance.csv"
FPS = 25
SOURCE_PATTERN = r"^(.+_seg\d+)-to-"
REAL = "real"


def select_identities(
    identities: Sequence[Identity], wanted: Sequence[str] | None, faces: Path
) -> dict[str, Identity]:
    """Id -> identity for those of ``wanted`` (every one when None); a wanted id that
    ``faces`` lacks is an error that names it."""
    found = {i.id: i for i in identities}
    missing = sorted(set(wanted or ()) - set(found))
    if missing:
        raise SystemExit(f"error: --identities {', '.join(missing)}: no such video in {faces}")
    return {k: v for k, v in found.items() if not wanted or k in wanted}


def choose_pairs(ids: Sequence[str], pairs: int, seed: int) -> list[tuple[str, str]]:
    """``pairs`` distinct identity pairs. The ids are put in a seeded order o; the pairs
    are (o0, o1), (o2, o3), ... (disjoint as far as they go), then (o_i, o_i+1) for odd i,
    then (o_i, o_i+2), ... (indices modulo the number of ids), skipping repeats."""
    n = len(ids)
    if n < 2:
        raise ValueError("need at least two identities")
    if not 1 <= pairs <= n * (n - 1) // 2:
        raise ValueError(f"{n} identities make 1 to {n * (n - 1) // 2} pairs, not {pairs}")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(n)]
    out: list[tuple[str, str]] = []
    seen: set[frozenset[str]] = set()
    for d in range(1, n):
        for first in (0, 1):
            for i in range(first, n, 2):
                a, b = order[i], order[(i + d) % n]
                if frozenset((a, b)) not in seen:
                    seen.add(frozenset((a, b)))
                    out.append((a, b))
    return out[:pairs]


def model_seed(seed: int, generator: str, pair: int, replica: int = 0) -> int:
    """The seed of one training; replica 0 keeps the seed builds had before replicas."""
    key = [seed, ARCHITECTURES.index(generator), pair] + ([replica] if replica else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def instance_name(a: str, b: str, replica: int = 0) -> str:
    """A training's name: the identity pair, and ``@k`` for the k-th replica (another seed
    on the same pair) when k > 0."""
    return f"{a}+{b}" + (f"@{replica}" if replica else "")


def face_crops(identity: Identity, offset: int, region: int) -> np.ndarray:
    """All of an identity's face boxes (segments * length, region, region, 3)."""
    boxes = identity.frames[:, :, offset : offset + region, offset : offset + region]
    return boxes.reshape(-1, region, region, 3)


def quality_tag(crf: int) -> str:
    return f"crf{int(crf)}"


def video_name(identity: Identity, k: int, donor: str, replica: int = 0) -> str:
    return f"{identity.segment_id(k)}-to-{donor}" + (f"@{replica}" if replica else "") + ".mp4"


@dataclass(frozen=True)
class Job:
    """One generator training: architecture x identity pair x replica."""

    generator: str
    pair_index: int
    pair: tuple[str, str]
    replica: int

    @property
    def instance(self) -> str:
        return instance_name(*self.pair, self.replica)


def train_or_load(
    job: Job, ids: tuple[Identity, Identity], args: argparse.Namespace, out: Path
) -> tuple[torch.nn.Module, dict]:
    """The generator of one job: loaded when its weights exist, else trained and saved."""
    offset, region = face_region(args.frame_px, FootageSettings.context)
    path = out / "models" / job.generator / f"{job.instance}.pt"
    seed = model_seed(args.seed, job.generator, job.pair_index, job.replica)
    torch.manual_seed(seed)
    model = build_generator(job.generator, size=args.size, width_div=args.width_div)
    info = {"generator": job.generator, "pair": list(job.pair), "replica": job.replica,
            "seed": seed, "parameters": count_parameters(model)}  # fmt: skip
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        model.to(args.device).eval()
        return model, {**info, **state["stats"], "trained_now": False}
    settings = TrainSettings(steps=args.steps, batch=args.batch, lr=args.lr)
    faces = (face_crops(ids[0], offset, region), face_crops(ids[1], offset, region))
    stats = train_pair(model, faces, settings, seed=seed, device=args.device)
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "stats": stats}, tmp)
    return model, {**info, **stats, "trained_now": True}


def render_pair(
    model: torch.nn.Module, job: Job, ids: tuple[Identity, Identity], out: Path, args
) -> tuple[list[ManifestRow], np.ndarray]:
    """Write every segment of A swapped to B and of B to A at every crf; the rows and
    one swapped frame (for the preview)."""
    offset, region = face_region(args.frame_px, FootageSettings.context)
    rows: list[ManifestRow] = []
    preview = None
    for side, (target, donor) in ((1, ids), (0, ids[::-1])):
        for k in range(len(target.frames)):
            name = video_name(target, k, donor.id, job.replica)
            paths = [out / quality_tag(c) / job.generator / name for c in args.qualities]
            if not all(p.is_file() for p in paths) or preview is None:
                fake = swap_frames(model, side, target.frames[k], offset, region)
                preview = fake[0] if preview is None else preview
                for crf, path in zip(args.qualities, paths, strict=True):
                    if not path.is_file():
                        write_video(path, fake, crf=crf, fps=FPS)
            rows += [
                ManifestRow(str(path), job.generator, quality_tag(crf), target.segment_id(k),
                            instance=job.instance)
                for crf, path in zip(args.qualities, paths, strict=True)
            ]  # fmt: skip
    return rows, preview


def render_real(
    identities: Sequence[Identity], out: Path, crfs: Sequence[int]
) -> list[ManifestRow]:
    """The class ``real``: every source segment as it is, at every crf. A real video's
    instance is its identity (no generator training made it)."""
    rows = []
    for identity in identities:
        for k, frames in enumerate(identity.frames):
            for crf in crfs:
                path = out / quality_tag(crf) / REAL / f"{identity.segment_id(k)}.mp4"
                if not path.is_file():
                    write_video(path, frames, crf=crf, fps=FPS)
                rows.append(ManifestRow(str(path), REAL, quality_tag(crf),
                                        identity.segment_id(k), instance=identity.id))  # fmt: skip
    return rows


_WORKER: dict = {}


def _start_worker(args: argparse.Namespace, out: Path) -> None:
    """A job process: its torch threads, logging, and every identity's footage (cached)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")  # fmt: skip
    torch.set_num_threads(args.threads)
    ids = load_identities(Path(args.faces), out, footage_settings(args))
    _WORKER.update(args=args, out=out, identities={i.id: i for i in ids})


def run_job(job: Job) -> tuple[list[ManifestRow], dict, np.ndarray]:
    """Train (or load) one generator and render its videos; the rows, the training's
    record (with ``train_s`` / ``render_s``) and a preview frame."""
    args, out, identities = _WORKER["args"], _WORKER["out"], _WORKER["identities"]
    ids = (identities[job.pair[0]], identities[job.pair[1]])
    start = time.perf_counter()
    model, info = train_or_load(job, ids, args, out)
    trained_s = time.perf_counter() - start
    rows, preview = render_pair(model, job, ids, out, args)
    render_s = time.perf_counter() - start - trained_s
    info.update(train_s=round(trained_s, 2), render_s=round(render_s, 2))
    return rows, info, preview


def jobs_of(args: argparse.Namespace, pairs: Sequence[tuple[str, str]]) -> list[Job]:
    """Replica-major, then pair, then architecture: an interrupted build has whole pairs."""
    return [
        Job(name, p, pair, r)
        for r in range(args.replicas)
        for p, pair in enumerate(pairs)
        for name in args.generators
    ]


def settings_of(args: argparse.Namespace, faces: Path) -> dict:
    settings = {
        "format": FORMAT,
        "faces": str(faces.resolve()),
        "footage": asdict(footage_settings(args)),
        "generators": list(args.generators),
        "size": args.size,
        "width_div": args.width_div,
        "train": asdict(TrainSettings(steps=args.steps, batch=args.batch, lr=args.lr)),
        "pairs": args.pairs,
        "qualities": [int(q) for q in args.qualities],
        "seed": args.seed,
        "threads": args.threads,
        "device": args.device,
    }
    if args.replicas != 1 or args.real:  # builds made before these options keep their record
        settings.update(replicas=args.replicas, real=args.real)
    if args.identities:
        settings["identities"] = sorted(args.identities)
    return settings


def footage_settings(args: argparse.Namespace) -> FootageSettings:
    return FootageSettings(segments=args.segments, length=args.length, frame_px=args.frame_px)


def same_trainings(old: dict, new: dict) -> bool:
    """Whether a build with settings ``old`` can be continued with ``new``: the same settings
    but for ``replicas`` and ``real`` (a replica's trainings and videos, and the real videos,
    are the same whatever those say, so a build grows or shrinks by them and reuses what is
    on disk)."""
    extra = ("replicas", "real")
    return {k: v for k, v in old.items() if k not in extra} == {
        k: v for k, v in new.items() if k not in extra
    }


def is_complete(out: Path, settings: dict) -> bool:
    """Whether ``out`` holds a finished build made with ``settings``."""
    meta, manifest = out / "build.json", out / "manifest.csv"
    if not (meta.is_file() and manifest.is_file() and (out / INSTANCE_MANIFEST).is_file()):
        return False
    record = json.loads(meta.read_text())
    if record.get("settings") != settings or not record.get("finished"):
        return False
    return all(Path(r.path).is_file() for r in read_manifest(manifest))


def run_jobs(jobs: Sequence[Job], args: argparse.Namespace, out: Path):
    """Each job's (rows, info, preview) in job order, ``args.jobs`` processes at a time
    (each with ``args.threads`` torch threads); progress logged with each training's time."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.jobs, initializer=_start_worker, initargs=(args, out)) as pool:
        for i, (rows, info, preview) in enumerate(pool.imap(run_job, jobs), 1):
            log.info(
                "[%d/%d] %-11s %s: %s %.0f s, render %.0f s",
                i, len(jobs), info["generator"], jobs[i - 1].instance,
                "trained" if info["trained_now"] else "loaded", info["train_s"], info["render_s"],
            )  # fmt: skip
            yield rows, info, preview


def build(args: argparse.Namespace) -> Path:
    """Build (or finish, or reuse) the dataset; returns the manifest path."""
    faces, out = Path(args.faces), Path(args.out)
    settings = settings_of(args, faces)
    manifest = out / "manifest.csv"
    if is_complete(out, settings):
        log.info("dataset already complete: %s", manifest)
        return manifest
    meta = out / "build.json"
    old = json.loads(meta.read_text()).get("settings") if meta.is_file() else None
    if old is not None and not same_trainings(old, settings):
        raise SystemExit(
            f"error: {out} was built with other settings (see {meta}); use another --out "
            "or delete it"
        )
    write_json(meta, {"settings": settings, "finished": False})
    manifest.unlink(missing_ok=True)
    (out / INSTANCE_MANIFEST).unlink(missing_ok=True)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    identities = select_identities(
        load_identities(faces, out, footage_settings(args)), args.identities, faces
    )
    footage_s = time.perf_counter() - start
    pairs = choose_pairs(sorted(identities), args.pairs, args.seed)
    log.info("pairs: %s", ", ".join(f"{a}+{b}" for a, b in pairs))
    jobs = jobs_of(args, pairs)
    rows: list[ManifestRow] = []
    models, previews = [], {}
    for job, (new_rows, info, frame) in zip(jobs, run_jobs(jobs, args, out), strict=True):
        rows += new_rows
        models.append(info)
        if job.pair_index == 0 and job.replica == 0:
            previews[job.generator] = frame
    if args.real:
        rows += render_real(list(identities.values()), out, args.qualities)
    by_instance = assign_splits(rows, DEFAULT_SPLIT, seed=args.seed, group_by="instance")
    rows = assign_splits(rows, DEFAULT_SPLIT, seed=args.seed)
    preview = np.concatenate([previews[g] for g in args.generators], axis=1)
    cv2.imwrite(str(out / "preview.png"), cv2.cvtColor(preview, cv2.COLOR_RGB2BGR))
    seconds = time.perf_counter() - start
    trained = [m for m in models if m["trained_now"]]
    write_json(
        meta,
        {
            "settings": settings,
            "finished": True,
            "pairs": [list(p) for p in pairs],
            "source_pattern": SOURCE_PATTERN,
            "videos": len(rows),
            "footage_seconds": round(footage_s, 1),
            "seconds": round(seconds, 1),
            "jobs": args.jobs,
            "trainings_this_call": len(trained),
            "train_seconds_this_call": round(sum(m["train_s"] for m in trained), 1),
            "models": models,
        },
    )
    write_manifest(by_instance, out / INSTANCE_MANIFEST)
    write_manifest(rows, manifest)
    log.info(
        "%d videos, manifest %s (%.0f s; %d trainings this call, %.0f s of training in all, "
        "%.1f s each)", len(rows), manifest, seconds, len(trained),
        sum(m["train_s"] for m in trained),
        sum(m["train_s"] for m in trained) / max(len(trained), 1),
    )  # fmt: skip
    return manifest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="build_dataset.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--faces", required=True, help="folder of real face videos (+ manifest.json)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=32, help="base face size S (faceswap: 64)")
    p.add_argument("--width-div", type=int, default=8, help="divide faceswap's widths by this")
    p.add_argument("--steps", type=int, default=250, help="training steps per model")
    p.add_argument("--batch", type=int, default=8, help="faces per identity per step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument(
        "--pairs",
        type=int,
        default=6,
        help="identity pairs (instances) per generator; "
        "the cross-instance split needs at least 5 (3 train, 1 val, 1 test)",
    )
    p.add_argument("--segments", type=int, default=6, help="source segments per identity")
    p.add_argument("--length", type=int, default=32, help="frames per segment (video)")
    p.add_argument("--frame-px", type=int, default=192, help="output frame size")
    p.add_argument(
        "--generators", nargs="+", default=list(GENERATORS), choices=ARCHITECTURES,
        help="architectures (the synthetic ones are for pre-training; realistic.generators)",
    )  # fmt: skip
    p.add_argument("--identities", nargs="+", help="only these identities of --faces")
    p.add_argument("--qualities", type=int, nargs="+", default=list(DFDM_CRFS), help="crfs")
    p.add_argument(
        "--replicas", type=int, default=1,
        help="trainings per architecture and pair, each with its own seed (instances A+B, "
        "A+B@1, ...)",
    )  # fmt: skip
    p.add_argument("--real", action="store_true",
                   help="also write the source segments unswapped as the class 'real'")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="trainings run in parallel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads per job")
    p.add_argument("--device", default="cpu", help="cpu or cuda (generator training)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        datefmt="%H:%M:%S",
    )
    print(build(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
