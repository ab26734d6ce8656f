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
3. For every generator architecture (:mod:`realistic.generators`) and every pair (A, B):
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
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``realistic`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from attribnet.atomic import atomic_path, write_json  # noqa: E402
from attribnet.data.codec import DFDM_CRFS, write_video  # noqa: E402
from attribnet.data.manifest import (  # noqa: E402
    DEFAULT_SPLIT,
    ManifestRow,
    assign_splits,
    read_manifest,
    write_manifest,
)
from realistic.footage import FootageSettings, Identity, face_region, load_identities  # noqa: E402
from realistic.generators import GENERATORS, build_generator, count_parameters  # noqa: E402
from realistic.render import swap_frames  # noqa: E402
from realistic.training import TrainSettings, train_pair  # noqa: E402

log = logging.getLogger("build_dataset")

FORMAT = 2
INSTANCE_MANIFEST = "manifest_instance.csv"
FPS = 25
SOURCE_PATTERN = r"^(.+_seg\d+)-to-"


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


def model_seed(seed: int, generator: str, pair: int) -> int:
    return int(
        np.random.SeedSequence([seed, GENERATORS.index(generator), pair]).generate_state(1)[0]
    )


def face_crops(identity: Identity, offset: int, region: int) -> np.ndarray:
    """All of an identity's face boxes (segments * length, region, region, 3)."""
    boxes = identity.frames[:, :, offset : offset + region, offset : offset + region]
    return boxes.reshape(-1, region, region, 3)


def quality_tag(crf: int) -> str:
    return f"crf{int(crf)}"


def video_name(identity: Identity, k: int, donor: str) -> str:
    return f"{identity.segment_id(k)}-to-{donor}.mp4"


def train_or_load(
    name: str,
    pair_index: int,
    ids: tuple[Identity, Identity],
    args: argparse.Namespace,
    out: Path,
    offset: int,
    region: int,
) -> tuple[torch.nn.Module, dict]:
    """The generator of one architecture for one pair: loaded when its weights exist."""
    a, b = ids
    path = out / "models" / name / f"{a.id}+{b.id}.pt"
    seed = model_seed(args.seed, name, pair_index)
    torch.manual_seed(seed)
    model = build_generator(name, size=args.size, width_div=args.width_div)
    info = {"generator": name, "pair": [a.id, b.id], "seed": seed,
            "parameters": count_parameters(model)}  # fmt: skip
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        model.to(args.device).eval()
        return model, {**info, **state["stats"]}
    settings = TrainSettings(steps=args.steps, batch=args.batch, lr=args.lr)
    faces = (face_crops(a, offset, region), face_crops(b, offset, region))
    stats = train_pair(model, faces, settings, seed=seed, device=args.device)
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "stats": stats}, tmp)
    log.info(
        "%-11s %s+%s: loss %.3f -> %.3f in %.0f s",
        name, a.id, b.id, stats["loss_first"], stats["loss_last"], stats["seconds"],
    )  # fmt: skip
    return model, {**info, **stats}


def render_pair(
    model: torch.nn.Module,
    name: str,
    ids: tuple[Identity, Identity],
    out: Path,
    crfs: Sequence[int],
    offset: int,
    region: int,
) -> tuple[list[ManifestRow], np.ndarray]:
    """Write every segment of A swapped to B and of B to A at every crf; the rows and
    one swapped frame (for the preview)."""
    rows: list[ManifestRow] = []
    preview = None
    for side, (target, donor) in ((1, ids), (0, ids[::-1])):
        for k in range(len(target.frames)):
            paths = [out / quality_tag(c) / name / video_name(target, k, donor.id) for c in crfs]
            if not all(p.is_file() for p in paths) or preview is None:
                fake = swap_frames(model, side, target.frames[k], offset, region)
                preview = fake[0] if preview is None else preview
                for crf, path in zip(crfs, paths, strict=True):
                    if not path.is_file():
                        write_video(path, fake, crf=crf, fps=FPS)
            for crf, path in zip(crfs, paths, strict=True):
                rows.append(
                    ManifestRow(
                        str(path), name, quality_tag(crf), target.segment_id(k),
                        instance=f"{ids[0].id}+{ids[1].id}",
                    )
                )  # fmt: skip
    return rows, preview


def settings_of(args: argparse.Namespace, faces: Path) -> dict:
    return {
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


def footage_settings(args: argparse.Namespace) -> FootageSettings:
    return FootageSettings(segments=args.segments, length=args.length, frame_px=args.frame_px)


def is_complete(out: Path, settings: dict) -> bool:
    """Whether ``out`` holds a finished build made with ``settings``."""
    meta, manifest = out / "build.json", out / "manifest.csv"
    if not (meta.is_file() and manifest.is_file() and (out / INSTANCE_MANIFEST).is_file()):
        return False
    record = json.loads(meta.read_text())
    if record.get("settings") != settings or not record.get("finished"):
        return False
    return all(Path(r.path).is_file() for r in read_manifest(manifest))


def build(args: argparse.Namespace) -> Path:
    """Build (or finish, or reuse) the dataset; returns the manifest path."""
    faces, out = Path(args.faces), Path(args.out)
    settings = settings_of(args, faces)
    manifest = out / "manifest.csv"
    if is_complete(out, settings):
        log.info("dataset already complete: %s", manifest)
        return manifest
    meta = out / "build.json"
    if meta.is_file() and json.loads(meta.read_text()).get("settings") != settings:
        raise SystemExit(
            f"error: {out} was built with other settings (see {meta}); use another --out "
            "or delete it"
        )
    write_json(meta, {"settings": settings, "finished": False})
    manifest.unlink(missing_ok=True)
    (out / INSTANCE_MANIFEST).unlink(missing_ok=True)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    identities = {i.id: i for i in load_identities(faces, out, footage_settings(args))}
    footage_s = time.perf_counter() - start
    pairs = choose_pairs(sorted(identities), args.pairs, args.seed)
    log.info("pairs: %s", ", ".join(f"{a}+{b}" for a, b in pairs))
    offset, region = face_region(args.frame_px, FootageSettings.context)
    rows: list[ManifestRow] = []
    models, previews = [], []
    for name in args.generators:
        for p, (a, b) in enumerate(pairs):
            ids = (identities[a], identities[b])
            model, info = train_or_load(name, p, ids, args, out, offset, region)
            models.append(info)
            new_rows, frame = render_pair(model, name, ids, out, args.qualities, offset, region)
            rows += new_rows
            if p == 0:
                previews.append(frame)
    by_instance = assign_splits(rows, DEFAULT_SPLIT, seed=args.seed, group_by="instance")
    rows = assign_splits(rows, DEFAULT_SPLIT, seed=args.seed)
    preview = np.concatenate(previews, axis=1)
    cv2.imwrite(str(out / "preview.png"), cv2.cvtColor(preview, cv2.COLOR_RGB2BGR))
    seconds = time.perf_counter() - start
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
            "models": models,
        },
    )
    write_manifest(by_instance, out / INSTANCE_MANIFEST)
    write_manifest(rows, manifest)
    log.info("%d videos, manifest %s (%.0f s)", len(rows), manifest, seconds)
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
    p.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=GENERATORS)
    p.add_argument("--qualities", type=int, nargs="+", default=list(DFDM_CRFS), help="crfs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
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
