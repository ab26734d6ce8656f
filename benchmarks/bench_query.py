"""Query speed: videos/min by stage, and today's model-running path against faster options.

    python benchmarks/bench_query.py                                  # full model, ~5 min
    python benchmarks/bench_query.py --model demo --video-size 64x64 --frames 20 --num-videos 8
    python benchmarks/bench_query.py --videos ../shared/data/faces --model tiny

Models (untrained: speed does not depend on the weights), each with its recipe's batch size
and loader workers, as ``Attributor.attribute`` would run it:
  full  DMA-STA resnet50 at 224 px, T=10 (recipes/dfdm_ce_arcface.yaml: batch 32, 8 workers)
  demo  resnet10 at 64 px, T=8 (recipes/demo.yaml: batch 16, no workers)
  tiny  resnet10 at 112 px, T=10 (the full recipe with a small trunk)

1. Stages, timed with the library's functions in the order a query runs them: decode
   (open_clip_source + get_frames of preprocess.frame_indices), face detection + crop
   (crop_faces), search (query on a flat GeneratorIndex of --index-size random vectors).
2. Embedding (predict_videos over the cached faces, with the SAM maps the evidence needs)
   by each option, interleaved over --rounds rounds (median), each against "today" (the
   path before this benchmark's options: fp32, no_grad, the model as trained, the recipe's
   batch and workers). End-to-end videos/min of an option = videos / (decode + crop +
   search + its embedding). Outputs are compared with today's: max |logit difference| and
   the smallest cosine between a video's embeddings.
   Wall time depends on what else runs on the machine; the CPU time columns (this process
   and its loader workers) do not, so their ratios hold on a shared CPU.
3. The real entry point, Attributor.attribute (decode, crop, predict with evidence, search),
   with today's predict_videos, its default, precision="bf16" and the ONNX model (--onnx) in
   fp32 and int8 (attribnet.export.onnx_int8), interleaved over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import machine_line, print_table, synthetic_videos

import attribnet.query.attributor as attributor_module
from attribnet.cli.export import main as export_main
from attribnet.config import Recipe, load_recipe
from attribnet.data.cache import FaceCache
from attribnet.data.faces import build_detector, crop_faces
from attribnet.data.manifest import ManifestRow
from attribnet.data.preprocess import frame_indices, run_preprocess
from attribnet.data.sources import preprocess_settings
from attribnet.data.video import open_clip_source
from attribnet.data.video.frame_source import FrameSource
from attribnet.errors import NoFaceError
from attribnet.export import OnnxRuntimeModel, export_onnx
from attribnet.export.onnx_int8 import quantize
from attribnet.index import GeneratorIndex
from attribnet.models import build_model
from attribnet.predict import VideoPrediction, predict_videos, stack
from attribnet.query import Attributor, query
from attribnet.runtime.device import resolve_device

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "full": ("dfdm_ce_arcface.yaml", []),
    "demo": ("demo.yaml", []),
    "tiny": ("dfdm_ce_arcface.yaml", ["model.backbone=resnet10", "data.image_size=112"]),
}
CLASSES = ["faceswap", "lightweight", "iae", "dfaker", "dfl"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--videos", type=Path, help="folder of .mp4 face videos (Haar detector; with "
        "--agreement: any folder the query takes, searched recursively, the index's detector)"
    )  # fmt: skip
    p.add_argument("--num-videos", type=int, default=2, help="synthetic videos")
    p.add_argument("--frames", type=int, default=150, help="frames per synthetic video")
    p.add_argument("--video-size", default="1280x720", help="synthetic videos' WxH")
    p.add_argument("--model", choices=sorted(MODELS), default="full")
    p.add_argument("--max-frames", type=int, default=64, help="face frames kept per video")
    p.add_argument("--clips-per-video", type=int, default=2, help="clips embedded per video")
    p.add_argument("--index-size", type=int, default=10_000, help="vectors in the index")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's)")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds of every option")
    p.add_argument("--no-onnx", action="store_true", help="leave out ONNX Runtime")
    p.add_argument("--all", action="store_true", help="also inference_mode, no SAM, batch 1")
    p.add_argument("--end-to-end-only", action="store_true",
                   help="only part 3, Attributor.attribute (no stages, no options)")  # fmt: skip
    p.add_argument(
        "--agreement",
        metavar="INDEX",
        help="instead: do the answers of INDEX's trained model on --videos change with the "
        "options? (verdicts, generators, embeddings against today's path)",
    )
    return p.parse_args(argv)


def make_recipe(args: argparse.Namespace, detector: str) -> Recipe:
    name, overrides = MODELS[args.model]
    return load_recipe(
        ROOT / "recipes" / name,
        [*overrides, f"data.detector={detector}", f"data.max_frames={args.max_frames}",
         "model.weights=null", "data.demo=false"],
    )  # fmt: skip


def inputs(args: argparse.Namespace, folder: Path) -> tuple[list[Path], str]:
    """The videos to query and the face detector for them."""
    if args.videos:
        return sorted(args.videos.glob("*.mp4")), "haar"
    width, height = (int(v) for v in args.video_size.split("x"))
    print(
        f"no --videos: {args.num_videos} synthetic {width}x{height} videos of {args.frames} "
        "frames (procedural faces, crf 23) with detector 'none' (whole frame = face)"
    )
    paths = synthetic_videos(folder, args.num_videos, args.frames, height, width)
    return paths, "none"


def cache_faces(paths: list[Path], recipe: Recipe, folder: Path) -> tuple[FaceCache, dict]:
    """Decode and crop every video into a face cache; seconds of each stage over all."""
    data = recipe.data
    detector = build_detector(data.detector)
    cache = FaceCache(folder, settings={"benchmark": True})
    seconds = {"decode": 0.0, "face detection + crop": 0.0}
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
            seconds["decode"] += crop_start - start
            seconds["face detection + crop"] += time.perf_counter() - crop_start
        cache.add(ManifestRow(path=str(path), label="query"), crops)
    return cache, seconds


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (0: unchanged) for the block."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Option:
    name: str
    run: Callable[[list], list[VideoPrediction]]


def options(
    model: torch.nn.Module,
    cache: FaceCache,
    recipe: Recipe,
    args: argparse.Namespace,
    runtime: OnnxRuntimeModel | None,
) -> list[Option]:
    """Today's path first, then each option; each runs predict_videos over some entries."""
    base = functools.partial(predict_videos, model, cache, recipe=recipe,
                             clips_per_video=args.clips_per_video, sam=True)  # fmt: skip
    workers, batch = recipe.data.num_workers, recipe.train.batch_size
    today = functools.partial(base, fuse=False, num_workers=workers)
    unfused = functools.partial(base, fuse=False, num_workers=0)
    other = 2 if args.threads == 1 else 1
    default_label = (
        "0 workers + BN folded + channels_last = **default now**"
        if resolve_device().type == "cpu"
        else "**default now** (on a GPU: the recipe's workers and amp, no folding)"
    )
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def inference_mode(entries: list) -> list[VideoPrediction]:
        with torch.inference_mode():
            return unfused(entries)

    def at_threads(run: Callable, n: int) -> Callable:
        def call(entries: list) -> list[VideoPrediction]:
            with threads(n):
                return run(entries)

        return call

    rows = [Option(f"today: fp32, model as trained, batch {batch}, {workers} loader workers",
                   today)]  # fmt: skip
    if workers:
        rows.append(Option("0 loader workers", unfused))
    if args.all:
        rows += [
            Option("0 workers + torch.inference_mode", inference_mode),
            Option("0 workers, no SAM maps (no evidence)", functools.partial(unfused, sam=False)),
        ]
    rows += [
        Option("0 workers + channels_last", functools.partial(
            predict_videos, channels_last, cache, recipe=recipe,
            clips_per_video=args.clips_per_video, sam=True, fuse=False, num_workers=0)),
        Option(default_label, base),
    ]  # fmt: skip
    if args.all:
        rows.append(Option("default now, 1 clip per batch", functools.partial(base, batch_size=1)))
    rows += [
        Option("0 workers + bf16 autocast", functools.partial(unfused, precision="bf16")),
        Option('default now + bf16 (precision="bf16")', functools.partial(base, precision="bf16")),
    ]
    if runtime is not None:
        rows.append(
            Option(
                "0 workers + ONNX Runtime fp32 (--onnx)",
                functools.partial(
                    predict_videos,
                    runtime,
                    cache,
                    recipe=recipe,
                    clips_per_video=args.clips_per_video,
                    sam=True,
                    num_workers=0,
                    device="cpu",
                ),
            )
        )
    rows += [
        Option(f"today at {other} threads", at_threads(today, other)),
        Option(f"default now at {other} threads", at_threads(base, other)),
    ]
    return rows


def export_model(model: torch.nn.Module, recipe: Recipe, args: argparse.Namespace,
                 tmp: Path) -> tuple[OnnxRuntimeModel, OnnxRuntimeModel]:  # fmt: skip
    """The model exported as the query's --onnx needs it (with SAM maps), and its int8
    quantisation (calibrated on 4 random clips: speed does not depend on the ranges), loaded."""
    path, int8 = tmp / "model.onnx", tmp / "model_int8.onnx"
    start = time.perf_counter()
    data = recipe.data
    export_onnx(model, path, num_frames=data.num_frames, image_size=data.image_size, sam=True)
    print(f"ONNX export: {time.perf_counter() - start:.1f} s")
    rng = np.random.default_rng(0)
    shape = (1, data.num_frames, 3, data.image_size, data.image_size)
    quantize(path, int8, [rng.standard_normal(shape, np.float32) for _ in range(4)])
    threads = args.threads or None
    return OnnxRuntimeModel.load(path, threads=threads), OnnxRuntimeModel.load(
        int8, threads=threads
    )


def clock() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and of its reaped children: the loader's
    workers). CPU time is what the work costs whatever else runs on the machine."""
    t = os.times()
    return time.perf_counter(), t.user + t.system + t.children_user + t.children_system


def timed_call(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, its wall seconds and CPU seconds."""
    wall, cpu = clock()
    out = fn()
    wall2, cpu2 = clock()
    return out, wall2 - wall, cpu2 - cpu


def time_options(rows: list[Option], entries: list, rounds: int) -> tuple[np.ndarray, list]:
    """Median (wall, CPU) seconds of each option (rows of the array) over ``rounds``
    interleaved rounds, after an untimed warm-up on the first video; and each option's
    predictions of the last round."""
    for row in rows:
        row.run(entries[:1])
    seconds = np.zeros((rounds, len(rows), 2))
    preds: list = [None] * len(rows)
    for r in range(rounds):
        for i, row in enumerate(rows):
            preds[i], *seconds[r, i] = timed_call(functools.partial(row.run, entries))
    return np.median(seconds, axis=0), preds


def agreement(today: list[VideoPrediction], other: list[VideoPrediction]) -> tuple[float, float]:
    """Max |logit difference| over all clips, and the smallest video-embedding cosine."""
    logits = max(
        float(np.abs(a.clip_logits - b.clip_logits).max())
        for a, b in zip(today, other, strict=True)
    )
    cos = min(float(a.embedding @ b.embedding) for a, b in zip(today, other, strict=True))
    return logits, cos


def print_options(
    rows: list[Option], seconds: np.ndarray, preds: list, fixed: float, videos: int
) -> None:
    """The side-by-side table; ``fixed`` = decode + crop + search seconds over all videos."""
    (wall0, cpu0), table = seconds[0], []
    for row, (wall, cpu), p in zip(rows, seconds, preds, strict=True):
        d_logits, cos = agreement(preds[0], p)
        table.append([
            row.name, 1000 * wall / videos, wall0 / wall, 1000 * cpu / videos, cpu0 / cpu,
            60 * videos / (fixed + wall), (fixed + wall0) / (fixed + wall), f"{d_logits:.1e}",
            f"{cos:.6f}",
        ])  # fmt: skip
    headers = ["embedding by", "ms/video", "x today", "CPU ms/video", "x today (CPU)",
               "end-to-end videos/min", "x today", "max abs logit diff", "min cos"]  # fmt: skip
    print_table("Embedding options, side by side (median of rounds)", headers, table)


def print_stages(seconds: dict[str, float], videos: int) -> None:
    total = sum(seconds.values())
    bound = max(seconds, key=seconds.get)
    rows = [
        [name, s / videos * 1000, 100 * s / total, "<- bound" if name == bound else ""]
        for name, s in seconds.items()
    ]
    rows.append(["sum", total / videos * 1000, 100.0, f"{60 * videos / total:.3g} videos/min"])
    print_table("Query stages per video (embedding: today's path)", ["stage", "ms/video",
                "% of stages", ""], rows)  # fmt: skip


class CroppingFirst(Attributor):
    """The Attributor as it was before faces were cropped ahead (2026-12-03): every video
    cropped first, then the model over chunks of 16 videos, batched across videos."""

    def _attribute(self, paths, cache_dir, k, clips_per_video, top, progress):  # noqa: ANN001, ANN202
        settings = preprocess_settings(self.recipe)
        rows = [ManifestRow(path=str(p), label="query") for p in paths]
        cache, report = run_preprocess(rows, cache_dir, **settings, progress=False)
        usable = [(r.path, cache.entry_for(r.path)) for r in rows if cache.entry_for(r.path)]
        done = {}
        for start in range(0, len(usable), 16):
            chunk = usable[start : start + 16]
            preds = attributor_module.predict_videos(
                self._runner, cache, [e for _, e in chunk], self.recipe, fuse=False,
                clips_per_video=clips_per_video, device=self.device, sam=True)  # fmt: skip
            records = query(self.index, stack(preds, "embedding"), k,
                            probabilities=stack(preds, "probabilities"),
                            video_ids=[p for p, _ in chunk],
                            logits=stack(preds, "logits"))  # fmt: skip
            for (path, entry), pred, record in zip(chunk, preds, records, strict=True):
                frames = self._evidence(cache, entry, pred, top)
                done[path] = attributor_module.Attribution(path, record=record, frames=frames)
        return done, {**report["skipped"], **report["failed"]}


@contextlib.contextmanager
def copying_frames() -> Iterator[None]:
    """FrameSource.get_frames as it was before 2026-12-03: the decoded frames always copied
    into the order asked for, even when that is already their order."""
    fast = FrameSource.get_frames

    def get_frames(self: FrameSource, indices: Any) -> np.ndarray:
        idx = self._check_indices(indices)
        unique, inverse = np.unique(idx, return_inverse=True)
        return fast(self, unique)[inverse.reshape(-1)]

    FrameSource.get_frames = get_frames
    try:
        yield
    finally:
        FrameSource.get_frames = fast


def end_to_end(
    model: torch.nn.Module, recipe: Recipe, index: GeneratorIndex, paths: list[Path],
    args: argparse.Namespace, tmp: Path,
    runtimes: tuple[OnnxRuntimeModel, OnnxRuntimeModel] | None,
) -> None:  # fmt: skip
    """Attributor.attribute: today's (cropping first, predict_videos as it was, frames
    copied), cropping first with today's default predict_videos, and now (faces cropped
    ahead of the model) in fp32, bf16 and with ONNX Runtime; interleaved over the rounds
    after an untimed warm-up on one video."""
    workers = recipe.data.num_workers
    device = resolve_device()
    first = CroppingFirst(index, model, recipe, Path("untrained"), device)
    now = Attributor(index, model, recipe, Path("untrained"), device)
    bf16 = Attributor(index, model, recipe, Path("untrained"), device, precision="bf16")
    old = copying_frames
    variants = [
        ("today (cropping first, fuse=False, the recipe's workers, frames copied)", first,
         functools.partial(predict_videos, fuse=False, num_workers=workers), old),
        ("cropping first, default predict_videos (the default until now)", first,
         predict_videos, old),
        ("faces cropped ahead of the model = **default now**", now, predict_videos,
         contextlib.nullcontext),
        ('default now + precision="bf16"', bf16, predict_videos, contextlib.nullcontext),
    ]  # fmt: skip
    for label, runtime in zip(("fp32", "int8"), runtimes or (), strict=True):
        onnx = Attributor(index, model, recipe, Path("untrained"), resolve_device("cpu"),
                          onnx=runtime)  # fmt: skip
        variants.append((f"default now + ONNX Runtime {label} (Attributor.load(..., onnx=))",
                         onnx, predict_videos, contextlib.nullcontext))  # fmt: skip
    now.attribute(str(paths[0]), clips_per_video=1, cache_dir=tmp / "e2e-warm-up")
    seconds = np.zeros((args.rounds, len(variants), 2))
    answers = []
    for r in range(args.rounds):
        for i, (_, attributor, fn, patch) in enumerate(variants):
            attributor_module.predict_videos = fn
            try:
                with patch():
                    results, *seconds[r, i] = timed_call(functools.partial(
                        attributor.attribute, [str(p) for p in paths],
                        clips_per_video=args.clips_per_video,
                        cache_dir=tmp / f"e2e-{r}-{i}"))  # fmt: skip
            finally:
                attributor_module.predict_videos = predict_videos
            if r == 0:
                answers.append([x.record.get("score") for x in results if x.ok])
    ok = max(sum(r.ok for r in results), 1)
    median = np.median(seconds, axis=0)
    (wall0, cpu0), rows = median[0], []
    for (name, *_), (wall, cpu), scores in zip(variants, median, answers, strict=True):
        diff = np.max(np.abs(np.subtract(scores, answers[0]))) if scores else float("nan")
        rows.append([name, wall / ok, 60 * ok / wall, wall0 / wall, cpu / ok, cpu0 / cpu, diff])
    headers = ["Attributor.attribute with", "s/video", "videos/min", "x today", "CPU s/video",
               "x today (CPU)", "max abs score diff"]  # fmt: skip
    print_table(f"End to end, the real entry point, {ok} videos (median of rounds)", headers,
                rows)  # fmt: skip


def agreement_table(args: argparse.Namespace) -> int:
    """Answers of a trained model (--agreement INDEX) on every video under --videos, by
    today's path, the default, precision="bf16" and ONNX Runtime, against today's."""
    if not args.videos:
        print("--agreement needs --videos", file=sys.stderr)
        return 2
    attributor = Attributor.load(args.agreement)
    workers = attributor.recipe.data.num_workers
    bf16 = Attributor(attributor.index, attributor.model, attributor.recipe,
                      attributor.checkpoint, attributor.device, precision="bf16")  # fmt: skip
    variants = {
        "today (fuse=False, the recipe's workers)": (attributor, functools.partial(
            predict_videos, fuse=False, num_workers=workers
        )),
        "default now": (attributor, predict_videos),
        'precision="bf16"': (bf16, predict_videos),
    }  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-query-") as name:
        for label, (runner, fn) in variants.items():
            attributor_module.predict_videos = fn
            try:  # the same face cache: the videos are decoded and cropped once
                results[label] = runner.attribute([str(args.videos)], cache_dir=name)
            finally:
                attributor_module.predict_videos = predict_videos
        if not args.no_onnx:
            data = attributor.recipe.data
            path = Path(name) / "model.onnx"
            export_onnx(attributor.model, path, num_frames=data.num_frames,
                        image_size=data.image_size, sam=True)  # fmt: skip
            onnx = Attributor(attributor.index, attributor.model, attributor.recipe,
                              attributor.checkpoint, resolve_device("cpu"),
                              onnx=OnnxRuntimeModel.load(path))  # fmt: skip
            results["ONNX Runtime fp32"] = onnx.attribute([str(args.videos)], cache_dir=name)
            int8 = Path(name) / "model_int8.onnx"  # calibrated on the run's training videos
            argv = ["onnx", "--checkpoint", str(attributor.checkpoint), "--out", str(int8),
                    "--sam", "--int8"]  # fmt: skip
            if export_main(argv) != 0:
                return 1
            onnx = Attributor(attributor.index, attributor.model, attributor.recipe,
                              attributor.checkpoint, resolve_device("cpu"),
                              onnx=OnnxRuntimeModel.load(int8))  # fmt: skip
            results["ONNX Runtime int8"] = onnx.attribute([str(args.videos)], cache_dir=name)
    base = [r for r in next(iter(results.values())) if r.ok]
    rows = []
    for label, rs in results.items():
        ok = [r for r in rs if r.ok]
        pairs = list(zip(base, ok, strict=True))
        rows.append([
            label, len(ok), sum(a.verdict == b.verdict for a, b in pairs),
            sum(a.generator == b.generator for a, b in pairs),
            sum(a.classifier["generator"] == b.classifier["generator"] for a, b in pairs),
            f"{min(float(a.embedding @ b.embedding) for a, b in pairs):.6f}",
            f"{max(abs(a.record['score'] - b.record['score']) for a, b in pairs):.1e}",
        ])  # fmt: skip
    headers = ["run with", "videos", "same verdict", "same k-NN generator",
               "same classifier generator", "min cos", "max abs open-set score diff"]  # fmt: skip
    print(f"{args.agreement} ({attributor.checkpoint}) on {args.videos}")
    print_table("Answers against today's path", headers, rows)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"bench_query: {machine_line()}")
    if args.agreement:
        return agreement_table(args)
    with tempfile.TemporaryDirectory(prefix="bench-query-") as name:
        tmp = Path(name)
        paths, detector = inputs(args, tmp)
        if not paths:
            print(f"no .mp4 files in {args.videos}", file=sys.stderr)
            return 2
        recipe = make_recipe(args, detector)
        torch.manual_seed(0)
        model = build_model(recipe.model, len(CLASSES)).eval().to(resolve_device())
        dim = recipe.model.embedding_dim
        vectors = np.random.default_rng(0).standard_normal((args.index_size, dim), np.float32)
        index = GeneratorIndex.build(vectors, np.arange(args.index_size) % len(CLASSES), CLASSES)
        print(
            f"{len(paths)} videos, detector {detector}, {args.model} model "
            f"({recipe.model.backbone}, {recipe.data.image_size} px, T={recipe.data.num_frames},"
            f" batch {recipe.train.batch_size}, {recipe.data.num_workers} loader workers), "
            f"{args.max_frames} face frames and <= {args.clips_per_video} clips per video, flat "
            f"index of {args.index_size:,} vectors, {args.rounds} rounds"
        )
        runtimes = None if args.no_onnx else export_model(model, recipe, args, tmp)
        runtime = runtimes[0] if runtimes else None
        if args.end_to_end_only:
            end_to_end(model, recipe, index, paths, args, tmp, runtimes)
            return 0
        cache, stage_s = cache_faces(paths, recipe, tmp / "faces")
        entries = cache.entries
        rows = options(model, cache, recipe, args, runtime)
        seconds, preds = time_options(rows, entries, args.rounds)
        start = time.perf_counter()
        query(index, stack(preds[0], "embedding"), probabilities=stack(preds[0], "probabilities"))
        stage_s["search"] = time.perf_counter() - start
        print_stages({**stage_s, "embed (today)": seconds[0, 0]}, len(entries))
        fixed = sum(stage_s.values())
        print_options(rows, seconds, preds, fixed, len(entries))
        end_to_end(model, recipe, index, paths, args, tmp, runtimes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
