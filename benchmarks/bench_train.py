"""Training and embedding throughput of DMA-STA on one device, as one table:
design | frames/s | x authors | peak memory.

    python benchmarks/bench_train.py           # authors vs attribnet (CPU: resnet50, 112 px, B=2)
    python benchmarks/bench_train.py --quick   # every row at tiny sizes: checks it on a CPU
    python benchmarks/bench_train.py --all     # every row at full size (a GPU; gpu_checks.sh)

Rows (benchmarks/train_designs.py defines the designs):
- training on synthetic tensors already on the device: the authors' frame loop and
  attribnet's B*T batch in fp32 at ``--batch``; bf16 + channels_last; + torch.compile; the
  larger ``--batches``; designs alternate over ``--rounds`` (median step time), so background
  load hits all alike;
- ``--end-to-end``: attribnet.training.loop.train_one_epoch itself (batches prefetched to
  the device, loss sums on it), fed by a DataLoader over a face cache of synthetic faces
  with the main recipe's augmentation (H.264 p 0.5 at crf 0/10/23, JPEG p 0.2, flip), with
  ``--workers`` workers, H.264 encoded per clip or read from variants made once
  (``data.augment.h264_cache``); steady state, after the loader's first batches; and the
  authors' design fed by 0 workers;
- ``--embed``: attribnet.predict.predict_videos over that cache (what ``index build`` and
  ``query --manifest`` run: 4 clips per video, no SAM maps), fp32 and bf16 at
  ``--embed-batches`` clips per pass.
x authors: frames/s over the authors' design on tensors at ``--batch``. Peak memory: the
largest ``torch.cuda.max_memory_allocated`` of a row's steps, counting its own model,
gradients and optimizer state (GPU only).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from common import face_video, machine_line, median, print_table, timed
from torch.utils.data import DataLoader, RandomSampler
from train_designs import CLASSES, LABELS, Design, Trainer, batch

from attribnet.config import load_recipe, recipe_from_dict
from attribnet.data.augment import ClipAugment, CompressionAugment
from attribnet.data.cache import FaceCache
from attribnet.data.clips import ClipDataset
from attribnet.data.h264_variants import H264Variants
from attribnet.data.manifest import ManifestRow
from attribnet.models import AttributionModel
from attribnet.models.encoder import ClipEncoder
from attribnet.predict import predict_videos
from attribnet.training.loop import train_one_epoch

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "dfdm_ce_arcface.yaml"
SIZES = {  # what --all and --quick set unless given
    "all": {"backbone": "resnet50", "size": 224, "frames": 10, "batch": 10, "batches": "32,64",
            "workers": "8,16", "embed_batches": "10,64,256", "cache_frames": 40},
    "quick": {"backbone": "resnet10", "size": 64, "frames": 4, "batch": 2, "batches": "4",
              "workers": "1,2", "embed_batches": "2,8", "cache_frames": 16},
    "plain": {"backbone": "resnet50", "size": 112, "frames": 10, "batch": 2, "batches": "",
              "workers": "2", "embed_batches": "10", "cache_frames": 40},
}  # fmt: skip
Row = tuple[str, float, float | None]  # design, frames/s, peak GB (None: not measured)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--all", action="store_true", help="every row at full size (GPU)")
    p.add_argument("--quick", action="store_true", help="every row at tiny sizes (CPU check)")
    p.add_argument("--backbone", help="trunk (resnet50; --quick: resnet10)")
    p.add_argument("--size", type=int, help="face size (224; plain: 112; --quick: 64)")
    p.add_argument("--frames", type=int, help="frames per clip, T (10; --quick: 4)")
    p.add_argument("--batch", type=int, help="clips per step (10, the paper's; plain: 2)")
    p.add_argument("--batches", help="larger batches, comma-separated (--all: 32,64)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per round and design")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    p.add_argument("--no-compile", action="store_true", help="leave out the compiled rows")
    p.add_argument("--cuda-graphs", action="store_true", help="also compile with CUDA graphs")
    p.add_argument("--end-to-end", action="store_true", help="rows fed by a DataLoader")
    p.add_argument("--workers", help="loader workers of the end-to-end rows (--all: 8,16)")
    p.add_argument("--embed", action="store_true", help="embedding rows (predict_videos)")
    p.add_argument("--embed-batches", help="clips per embedding pass (--all: 10,64,256)")
    p.add_argument("--profile", action="store_true", help="top ops of the bf16 step")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: all cores)")
    args = p.parse_args(argv)
    mode = "quick" if args.quick else "all" if args.all else "plain"
    for key, value in SIZES[mode].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if mode != "plain":
        args.end_to_end = args.embed = True
    args.mode = mode
    return args


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def designs(args: argparse.Namespace, cuda: bool) -> tuple[list[Design], list[Design]]:
    """(eager, compiled) tensor rows: plain mode as before (authors, fp32, and bf16 on a
    GPU); --all and --quick every design at --batch and the bf16 ones at --batches, the
    compiled ones (a minute or two each on a GPU) at --batch and the largest batch only."""
    if args.mode == "plain":
        keys = ["authors", "fp32", "fast"] if cuda else ["authors", "fp32"]
        return [Design(k, args.batch) for k in keys], []
    larger = ints(args.batches)
    eager = [Design(k, args.batch) for k in ("authors", "fp32", "fast")]
    eager += [Design("fast", b) for b in larger]
    compiled = [] if args.no_compile else ["compiled"]
    compiled += ["graphs"] if args.cuda_graphs and cuda else []
    batches = [args.batch, *larger[-1:]]
    return eager, [Design(k, b) for b in batches for k in compiled]


def peak_gb(device: torch.device, start: int, own: int) -> float | None:
    """Peak allocated GB since the last reset, less what was allocated at ``start``, plus
    the row's own persistent memory ``own`` (its standalone peak); None on the CPU."""
    if device.type != "cuda":
        return None
    return (torch.cuda.max_memory_allocated() - start + own) / 1e9


def reset_peak(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def on_tensors(
    args: argparse.Namespace, device: torch.device, chosen: list[Design]
) -> tuple[list[Row], dict[Design, Trainer]]:
    """Median frames/s and peak memory of each chosen design on synthetic tensors, the
    designs interleaved; also their trainers, for the end-to-end rows."""
    trainers = {}
    for d in chosen:
        start = time.perf_counter()
        trainers[d] = Trainer(d, args, device)
        if trainers[d].compiled is not None:
            failed = trainers[d].failed
            how = f" (failed, ran eagerly: {failed})" if failed else ""
            print(f"{d.label}: compiled, first step in {time.perf_counter() - start:.0f} s{how}")
    inputs = {d: batch(args, device, d.batch) for d in trainers}
    times: dict[Design, list[float]] = {d: [] for d in trainers}
    peaks: dict[Design, float | None] = dict.fromkeys(trainers)
    for r in range(args.rounds):
        for d, trainer in trainers.items():
            start = reset_peak(device)
            step = lambda t=trainer, x=inputs[d]: t.step(*x)  # noqa: E731
            times[d] += timed(step, args.steps, warmup=1 if r == 0 else 0)
            gb = peak_gb(device, start, trainer.persistent_bytes)
            peaks[d] = gb if peaks[d] is None else max(peaks[d] or 0.0, gb or 0.0)
    rows = [(d.label, d.batch * args.frames / median(times[d]), peaks[d]) for d in trainers]
    return rows, trainers


def synthetic_cache(folder: Path, args: argparse.Namespace, videos: int = 10) -> FaceCache:
    """A face cache of synthetic face clips (attribnet's procedural faces), 2 per class."""
    cache = FaceCache(folder, settings={"size": args.size, "detector": "none", "synthetic": True})
    for i in range(videos):
        row = ManifestRow(path=f"synthetic_{i}.mp4", label=CLASSES[i % len(CLASSES)])
        cache.add(row, face_video(args.cache_frames, args.size, args.size, seed=i))
    return cache


def recipe_dataset(
    cache: FaceCache, args: argparse.Namespace, variants: H264Variants | None = None
) -> ClipDataset:
    """Training clips of the cache with dfdm_ce_arcface's augmentation (H.264, JPEG, flip)."""
    aug = load_recipe(RECIPE).data.augment
    spatial = ClipAugment(args.size, aug.hflip, aug.crop_scale, color_jitter=aug.color_jitter)
    compression = CompressionAugment(aug.h264_p, aug.h264_crf, aug.jpeg_p, aug.jpeg_quality)
    return ClipDataset(cache, cache.entries, CLASSES, args.frames, spatial=spatial,
                       compression=compression, variants=variants)  # fmt: skip


class Stamped:
    """A loader whose batches are time-stamped as they are taken (the loop's prefetcher
    takes batch i+1 while step i runs), for the steady-state rate after ``warm`` batches."""

    def __init__(self, loader: DataLoader, warm: int):
        self.loader, self.warm, self.stamps = loader, warm, []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for item in self.loader:
            self.stamps.append(time.perf_counter())
            yield item

    def steps_per_s(self) -> float:
        done = self.stamps[self.warm :]
        return (len(done) - 1) / (done[-1] - done[0])


def end_to_end(
    args: argparse.Namespace,
    device: torch.device,
    trainer: Trainer,
    cache: FaceCache,
    runs: list[tuple[int, bool]],
) -> list[Row]:
    """train_one_epoch of ``trainer`` fed by a DataLoader over the cache, for each (loader
    workers, H.264 from the variant cache or encoded per clip) of ``runs``; the rate is the
    steady state, after the loader's first batch from each worker."""
    design = trainer.design
    train = {"batch_size": design.batch, "amp": True, "log_every_steps": 10**6}
    recipe = recipe_from_dict({"train": train})
    variants = H264Variants(cache, load_recipe(RECIPE).data.augment.h264_crf)
    start = time.perf_counter()
    made = variants.make(cache.entries, progress=False)
    if made:
        print(f"H.264 variants: {made} of {args.cache_frames}-frame clips made in "
              f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    rows = []
    for workers, cached in runs:
        warm, steps = workers, max(args.steps * args.rounds, 2 * workers)
        n = (warm + steps + 1) * design.batch
        sampler = RandomSampler(range(len(cache.entries)), replacement=True, num_samples=n)
        dataset = recipe_dataset(cache, args, variants if cached else None)
        loader = DataLoader(dataset, design.batch, sampler=sampler, num_workers=workers,
                            pin_memory=device.type == "cuda")  # fmt: skip
        stamped = Stamped(loader, warm)
        begin = reset_peak(device)
        train_one_epoch(trainer.task, trainer.task, stamped, trainer.optimizer, recipe,
                        device, 0)  # fmt: skip
        rate = stamped.steps_per_s() * design.batch * args.frames
        how = "H.264 variant cache" if cached else "H.264 encoded per clip"
        label = f"end to end: {design.label}, {workers} workers, {how}"
        rows.append((label, rate, peak_gb(device, begin, trainer.persistent_bytes)))
    return rows


def authors_end_to_end(
    args: argparse.Namespace, device: torch.device, trainer: Trainer, cache: FaceCache
) -> Row:
    """The authors' design at --batch, its loader in the training process (0 workers)."""
    n = args.steps * args.rounds + 1
    sampler = RandomSampler(range(len(cache.entries)), replacement=True, num_samples=n * args.batch)
    loader = iter(DataLoader(recipe_dataset(cache, args), args.batch, sampler=sampler))

    def one() -> None:
        b = next(loader)
        trainer.step(b["clip"].to(device), b["label"].to(device))

    seconds = median(timed(one, n - 1, warmup=1))
    label = f"end to end: {LABELS['authors']}, batch {args.batch}, 0 workers, H.264 per clip"
    return label, args.batch * args.frames / seconds, None


def embedding(args: argparse.Namespace, device: torch.device, cache: FaceCache) -> list[Row]:
    """predict_videos over the cache (4 clips per video, no SAM maps): fp32 at the first of
    --embed-batches, bf16 at each."""
    torch.manual_seed(0)
    encoder = ClipEncoder(args.backbone, num_frames=args.frames)
    model = AttributionModel(encoder, num_classes=len(CLASSES), embedding_dim=512).to(device)
    workers = max(ints(args.workers)) if device.type == "cuda" else 0
    data = {"num_frames": args.frames, "image_size": args.size, "num_workers": workers}
    shape = {"backbone": args.backbone, "num_frames": args.frames, "embedding_dim": 512}
    recipe = recipe_from_dict({"data": data, "model": shape, "train": {"amp": False}})
    sizes = ints(args.embed_batches)
    runs = [("fp32", sizes[0])] + [("bf16", b) for b in sizes]
    videos = cache.entries * (50 if device.type == "cuda" else 1)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    rows = []
    for precision, size in runs:
        kwargs = {"batch_size": size, "precision": precision, "device": device}
        predict_videos(model, cache, videos[:2], recipe, **kwargs, num_workers=0)  # warm-up
        begin = reset_peak(device)
        start = time.perf_counter()
        out = predict_videos(model, cache, videos, recipe, **kwargs)
        seconds = time.perf_counter() - start
        frames = sum(p.num_clips for p in out) * args.frames
        label = f"embedding (index build, query): {precision}, {size} clips per pass"
        rows.append((label, frames / seconds, peak_gb(device, begin, params)))
    return rows


def profile(args: argparse.Namespace, device: torch.device) -> None:
    from torch.profiler import ProfilerActivity

    trainer = Trainer(Design("fast", args.batch), args, device)
    x, y = batch(args, device, args.batch)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        trainer.step(x, y)
        trainer.step(x, y)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=15))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"bench_train: {machine_line()}")
    print(f"DMA-STA {args.backbone} (SAM in every block, TAM), {args.size} px, T = "
          f"{args.frames} frames, {args.rounds} rounds x {args.steps} steps")  # fmt: skip
    if not cuda:
        print("no CUDA GPU: bf16 and channels_last are no-ops on the CPU (the loop's "
              "behaviour); peak memory is not measured")  # fmt: skip
    eager, compiled = designs(args, cuda)
    # the stages in order of what matters most, each adding its rows to a table printed
    # "so far": a time limit that stops a slow compilation still leaves the others
    rows, trainers = on_tensors(args, device, eager)
    authors = rows[0][1]
    show(args, rows, authors, cuda, final=not (args.end_to_end or args.embed or compiled))
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        cache = synthetic_cache(Path(tmp), args) if args.end_to_end or args.embed else None
        largest = trainers[eager[-1]]
        if cache is not None and args.end_to_end:
            runs = [(w, cached) for w in ints(args.workers) for cached in (False, True)]
            rows += end_to_end(args, device, largest, cache, runs)
            rows.append(authors_end_to_end(args, device, trainers[eager[0]], cache))
            show(args, rows, authors, cuda, final=False)
        if cache is not None and args.embed:
            rows += embedding(args, device, cache)
            show(args, rows, authors, cuda, final=not compiled)
        if compiled:
            del trainers
            more, done = on_tensors(args, device, compiled)
            rows += more
            best = done.get(Design("compiled", largest.design.batch))
            if cache is not None and args.end_to_end and best is not None and not best.failed:
                runs = [(max(ints(args.workers)), True)]
                rows += end_to_end(args, device, best, cache, runs)
            show(args, rows, authors, cuda, final=True)
    if args.profile:
        profile(args, device)
    return 0


def show(
    args: argparse.Namespace, rows: list[Row], authors: float, cuda: bool, final: bool
) -> None:
    """The table (titled "so far" until ``final``), and with it the targets' lines."""
    table = [[name, fps, fps / authors, "-" if gb is None else gb] for name, fps, gb in rows]
    where = "GPU" if cuda else "CPU"
    title = (f"DMA-STA throughput on the {where} (x authors: over the authors' design on "
             f"tensors, batch {args.batch})")  # fmt: skip
    title = title if final else f"so far: {title}"
    print_table(title, ["design", "frames/s", "x authors", "peak memory (GB)"], table)
    train = [fps for name, fps, _ in rows if name.startswith("end to end: attribnet")]
    embed = [fps for name, fps, _ in rows if name.startswith("embedding")]
    if train:
        print(f"training end to end: best {max(train):,.0f} frames/s (issue target >= 4,000, "
              "goal 6,000, on an H100 or H200)")  # fmt: skip
    if train and embed:
        print(f"embedding: best {max(embed):,.0f} frames/s = {max(embed) / max(train):.2f}x "
              "the best training rate (issue target >= 3x)")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
