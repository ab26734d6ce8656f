"""Query throughput: embedding clips/s, and videos/s of decode + face crop + embed + search.

    python benchmarks/bench_query.py                                   # synthetic 720p, ~2 min
    python benchmarks/bench_query.py --videos ../shared/data/faces     # real faces, Haar
    python benchmarks/bench_query.py --model tiny                      # resnet10 at 112 px

Stages are timed separately with the library's functions, in the order attribnet.query runs
them: decode (open_clip_source + get_frames of preprocess.frame_indices), face detection +
crop (crop_faces), embedding (predict.predict_videos: up to --max-clips clips per video), and
search (query.query on a flat GeneratorIndex of --index-size random vectors). Then the real
entry point (Attributor.attribute, with its evidence) is timed end to end. The model is untrained
(random weights): speed does not depend on them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from common import machine_line, median, print_table, synthetic_videos, timed

from attribnet.config import Recipe, recipe_from_dict
from attribnet.data.cache import FaceCache
from attribnet.data.faces import build_detector, crop_faces
from attribnet.data.manifest import ManifestRow
from attribnet.data.video import open_clip_source
from attribnet.errors import NoFaceError
from attribnet.index import GeneratorIndex
from attribnet.models import build_model
from attribnet.predict import autocast, predict_videos, resolve_device, stack
from attribnet.preprocess import frame_indices
from attribnet.query import Attributor, query

MODELS = {"full": ("resnet50", 224), "tiny": ("resnet10", 112)}
CLASSES = ["faceswap", "lightweight", "iae", "dfaker", "dfl"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--videos", type=Path, help="folder of .mp4 face videos (Haar detector)")
    p.add_argument("--num-videos", type=int, default=3, help="synthetic 1280x720 videos")
    p.add_argument("--frames", type=int, default=150, help="frames per synthetic video")
    p.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="full",
        help="full: DMA-STA resnet50 at 224 px; tiny: resnet10 at 112 px",
    )
    p.add_argument("--num-frames", type=int, default=10, help="frames per clip (T)")
    p.add_argument("--max-frames", type=int, default=64, help="face frames kept per video")
    p.add_argument("--max-clips", type=int, default=4, help="clips embedded per video")
    p.add_argument("--batch", type=int, default=4, help="clips per model call")
    p.add_argument("--index-size", type=int, default=10_000, help="vectors in the index")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: all cores)")
    return p.parse_args(argv)


def make_recipe(args: argparse.Namespace, detector: str) -> Recipe:
    backbone, size = MODELS[args.model]
    t = args.num_frames
    return recipe_from_dict(
        {
            "data": {
                "detector": detector,
                "image_size": size,
                "max_frames": args.max_frames,
                "num_frames": t,
                "num_workers": 0,
            },
            "model": {"backbone": backbone, "num_frames": t, "embedding_dim": 512},
            "train": {"batch_size": args.batch},
        }
    )


def model_rates(model: torch.nn.Module, args: argparse.Namespace, size: int) -> list[list]:
    """Clips/s of the model alone on synthetic clips (eval, no_grad), fp32 and bf16."""
    device = resolve_device()
    clips = torch.randn(args.batch, args.num_frames, 3, size, size, device=device)
    rows = []
    for amp in [False, True] if device.type == "cuda" else [False]:
        with torch.no_grad(), autocast(device, amp):
            seconds = median(timed(lambda: model(clips), 3))
        rows.append(
            [
                f"model only, {'bf16' if amp else 'fp32'} ({device.type})",
                args.batch / seconds,
                args.batch * args.num_frames / seconds,
            ]
        )
    return rows


def stages(
    paths: list[Path],
    model: torch.nn.Module,
    recipe: Recipe,
    index: GeneratorIndex,
    folder: Path,
    max_clips: int,
) -> tuple[dict[str, float], int]:
    """Seconds per stage summed over the videos, and the number of clips embedded."""
    data = recipe.data
    detector = build_detector(data.detector)
    cache = FaceCache(folder, settings={"benchmark": True})
    total = dict.fromkeys(["decode", "face detection + crop", "embed", "search"], 0.0)
    with open_clip_source(paths[0]) as source:  # untimed warm-up: imports, decoder start
        source.get_frames([0])
    for path in paths:
        start = time.perf_counter()
        with open_clip_source(path) as source:
            frames = source.get_frames(frame_indices(len(source), data.max_frames))
        crop_start = time.perf_counter()
        try:
            crops = crop_faces(frames, detector, size=data.image_size)
        except NoFaceError as exc:
            print(f"{path.name}: {exc}")
            continue
        finally:
            total["decode"] += crop_start - start
            total["face detection + crop"] += time.perf_counter() - crop_start
        cache.add(ManifestRow(path=str(path), label="query"), crops)
    start = time.perf_counter()
    out = predict_videos(model, cache, cache.entries, recipe, max_clips=max_clips)
    emb, prob, clips = stack(out, "embedding"), stack(out, "probabilities"), stack(out, "num_clips")
    total["embed"] = time.perf_counter() - start
    start = time.perf_counter()
    query(index, emb, probabilities=prob)
    total["search"] = time.perf_counter() - start
    return total, int(clips.sum())


def inputs(args: argparse.Namespace, folder: Path) -> tuple[list[Path], str]:
    """The videos to query and the face detector for them."""
    if args.videos:
        return sorted(args.videos.glob("*.mp4")), "haar"
    print(
        "no --videos: synthetic 1280x720 videos (procedural faces, crf 23) with detector "
        "'none' (whole frame = face: the Haar cascade misses these faces at 720p)"
    )
    return synthetic_videos(folder, args.num_videos, args.frames, 720, 1280), "none"


def print_pipeline(seconds: dict[str, float], e2e: float, videos: int) -> None:
    total = sum(seconds.values())
    bound = max(seconds, key=seconds.get)
    rows = [
        [name, s / videos * 1000, 100 * s / total, "<- bound" if name == bound else ""]
        for name, s in seconds.items()
    ]
    rows.append(["sum of stages", total / videos * 1000, 100.0, f"{videos / total:.3g} videos/s"])
    rows.append(
        [
            "end to end (Attributor.attribute)",
            e2e / videos * 1000,
            100 * e2e / total,
            f"{videos / e2e:.3g} videos/s",
        ]
    )
    print_table("Query pipeline per video", ["stage", "ms/video", "% of stages", ""], rows)
    print(f"bounding stage: {bound} ({100 * seconds[bound] / total:.0f}% of the time)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"bench_query: {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        paths, detector = inputs(args, Path(tmp))
        if not paths:
            print(f"no .mp4 files in {args.videos}", file=sys.stderr)
            return 2
        recipe = make_recipe(args, detector)
        torch.manual_seed(0)
        model = build_model(recipe.model, len(CLASSES)).eval().to(resolve_device())
        vectors = np.random.default_rng(0).standard_normal((args.index_size, 512), np.float32)
        index = GeneratorIndex.build(vectors, np.arange(args.index_size) % len(CLASSES), CLASSES)
        print(
            f"{len(paths)} videos, detector {detector}, {args.model} model "
            f"({recipe.model.backbone}, {recipe.data.image_size} px), {args.max_frames} face "
            f"frames and <= {args.max_clips} clips of {args.num_frames} per video, "
            f"flat index of {args.index_size:,} vectors"
        )
        model_rows = model_rates(model, args, recipe.data.image_size)  # also warms the model
        seconds, clips = stages(paths, model, recipe, index, Path(tmp) / "stages", args.max_clips)
        start = time.perf_counter()
        attributor = Attributor(index, model, recipe, Path("untrained"), resolve_device())
        results = attributor.attribute(
            [str(p) for p in paths], max_clips=args.max_clips, cache_dir=Path(tmp) / "e2e"
        )
        e2e = time.perf_counter() - start
    per_s = clips / seconds["embed"]
    embed_row = ["predict_videos (cache -> embeddings)", per_s, per_s * args.num_frames]
    rows = [*model_rows, embed_row]
    print_table("Embedding extraction", ["what", "clips/s", "frames/s"], rows)
    print_pipeline(seconds, e2e, max(sum(r.ok for r in results), 1))
    failures = {r.video: r.reason for r in results if not r.ok}
    if failures:
        print(f"not attributed (left out of the end-to-end videos/s): {failures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
