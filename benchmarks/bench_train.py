"""Training throughput of DMA-STA: attribnet's batched B*T path vs the authors' design.

    python benchmarks/bench_train.py                    # CPU: resnet50 at 112 px, B=2, ~1 min
    python benchmarks/bench_train.py --backbone resnet50 --size 224 --batch 10 \\
        --end-to-end --workers 8 --memory              # the issue's configuration (GPU)

Authors' design (the baseline): one frame at a time through the trunk in a Python loop
(T calls of B images), fp32, default memory format, TAM fusion; no loader workers.
attribnet: the B*T frames of a batch in one trunk call (ClipEncoder.forward_frames), with
bf16 autocast and channels_last on a GPU (no-ops on the CPU, as in attribnet.training.loop).
A step is forward + backward + SGD step (the paper's optimizer). Rates are medians over
interleaved rounds, so background load hits both sides alike.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from common import face_video, machine_line, median, print_table, timed
from torch.utils.data import DataLoader, RandomSampler

from attribnet.config import LossConfig, load_recipe, recipe_from_dict
from attribnet.data.augment import ClipAugment, CompressionAugment
from attribnet.data.cache import FaceCache
from attribnet.data.clips import ClipDataset
from attribnet.data.manifest import ManifestRow
from attribnet.losses import AttributionLoss
from attribnet.models import AttributionModel
from attribnet.models.encoder import ClipEncoder
from attribnet.runtime.device import autocast
from attribnet.training.loop import build_optimizer
from attribnet.training.task import AttributionTask

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "dfdm_ce_arcface.yaml"
CLASSES = ["faceswap", "lightweight", "iae", "dfaker", "dfl"]
Step = Callable[[torch.Tensor, torch.Tensor], None]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=112, help="face size (the paper: 224)")
    p.add_argument("--batch", type=int, default=2, help="clips per step (the paper: 10)")
    p.add_argument("--frames", type=int, default=10, help="frames per clip (T)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per round and approach")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    p.add_argument("--end-to-end", action="store_true", help="also train from a DataLoader")
    p.add_argument("--workers", type=int, default=2, help="attribnet's loader workers")
    p.add_argument("--memory", action="store_true", help="GPU: peak memory, largest batch")
    p.add_argument("--mem-batches", default="10,32,64", help="batch sizes for peak memory")
    p.add_argument("--mem-limit-gb", type=float, default=80.0)
    p.add_argument("--profile", action="store_true", help="top ops of attribnet's step")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: all cores)")
    return p.parse_args(argv)


def make_task(args: argparse.Namespace, device: torch.device, fast: bool) -> AttributionTask:
    """The DMA-STA model (SAM in every block, TAM) with a CE loss, seeded identically."""
    torch.manual_seed(0)
    encoder = ClipEncoder(args.backbone, num_frames=args.frames)
    model = AttributionModel(encoder, num_classes=len(CLASSES))
    task = AttributionTask(model, AttributionLoss(LossConfig(), CLASSES, 0)).to(device)
    if fast and device.type == "cuda":
        task = task.to(memory_format=torch.channels_last)
    return task.train()


def make_step(task: AttributionTask, device: torch.device, design: str) -> Step:
    """One SGD step (lr 0.01, momentum 0.9, wd 5e-4) of ``design``: authors, batched or fast."""
    optimizer = build_optimizer(task, recipe_from_dict({}))

    def step(clips: torch.Tensor, labels: torch.Tensor) -> None:
        if design == "authors":
            enc = task.model.encoder
            frames = [enc.forward_frames(clips[:, i : i + 1]) for i in range(clips.shape[1])]
            features, _ = enc.fusion(torch.cat(frames, dim=1))
            losses = task.loss(task.model.forward_head(features), labels)
        else:
            with autocast(device, design == "fast"):
                _, losses = task(clips, labels)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    return step


DESIGNS = {
    "authors": "authors: frame loop, fp32",
    "batched": "attribnet: B*T batch, fp32",
    "fast": "attribnet: B*T batch, bf16 + channels_last",
}


def batch(args: argparse.Namespace, device: torch.device, b: int) -> tuple[torch.Tensor, ...]:
    clips = torch.randn(b, args.frames, 3, args.size, args.size, device=device)
    return clips, torch.randint(0, len(CLASSES), (b,), device=device)


def gpu_only(args: argparse.Namespace, device: torch.device, designs: list[str]) -> dict:
    """Median seconds per step of each design on synthetic tensors already on the device."""
    steps = {d: make_step(make_task(args, device, d == "fast"), device, d) for d in designs}
    x, y = batch(args, device, args.batch)
    times: dict[str, list[float]] = {d: [] for d in designs}
    for r in range(args.rounds):
        for d in designs:
            times[d] += timed(lambda d=d: steps[d](x, y), args.steps, warmup=1 if r == 0 else 0)
    return {d: median(t) for d, t in times.items()}


def synthetic_cache(folder: Path, size: int, videos: int = 10, frames: int = 40) -> FaceCache:
    """A face cache of synthetic face clips (attribnet's procedural faces), 2 per class."""
    cache = FaceCache(folder, settings={"size": size, "detector": "none", "synthetic": True})
    for i in range(videos):
        row = ManifestRow(path=f"synthetic_{i}.mp4", label=CLASSES[i % len(CLASSES)])
        cache.add(row, face_video(frames, size, size, seed=i))
    return cache


def recipe_dataset(cache: FaceCache, args: argparse.Namespace) -> ClipDataset:
    """Training clips of the cache with dfdm_ce_arcface's augmentation (H.264, JPEG, crop)."""
    aug = load_recipe(RECIPE).data.augment
    spatial = ClipAugment(args.size, aug.hflip, aug.crop_scale, color_jitter=aug.color_jitter)
    compression = CompressionAugment(aug.h264_p, aug.h264_crf, aug.jpeg_p, aug.jpeg_quality)
    return ClipDataset(
        cache, cache.entries, CLASSES, args.frames, spatial=spatial, compression=compression
    )


def end_to_end(args: argparse.Namespace, device: torch.device, designs: list[str]) -> dict:
    """Median seconds per step training from a DataLoader over a face cache: the authors'
    design with 0 workers, attribnet's with ``--workers`` (and pinned memory on a GPU)."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        dataset = recipe_dataset(synthetic_cache(Path(tmp), args.size), args)
        for d in designs:
            step = make_step(make_task(args, device, d == "fast"), device, d)
            n = (1 + args.steps * args.rounds) * args.batch
            sampler = RandomSampler(dataset, replacement=True, num_samples=n)
            workers = 0 if d == "authors" else args.workers
            pin = device.type == "cuda"
            loader = iter(
                DataLoader(
                    dataset, args.batch, sampler=sampler, num_workers=workers, pin_memory=pin
                )
            )

            def one(step: Step = step, loader: object = loader) -> None:
                b = next(loader)
                step(b["clip"].to(device, non_blocking=True), b["label"].to(device))

            out[d] = median(timed(one, args.steps * args.rounds, warmup=1))
    return out


def rate_rows(seconds: dict, args: argparse.Namespace) -> list[list[object]]:
    frames = args.batch * args.frames
    base = seconds["authors"]
    return [[DESIGNS[d], frames / s, s * 1000, base / s] for d, s in seconds.items()]


def peak_gb(step: Step, args: argparse.Namespace, device: torch.device, b: int) -> float | None:
    """Peak allocated GPU memory (GB) over two steps at batch ``b``; None when it OOMs."""
    peak = None
    try:
        x, y = batch(args, device, b)
        torch.cuda.reset_peak_memory_stats()
        step(x, y)
        step(x, y)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 1e9
        del x, y
    except torch.cuda.OutOfMemoryError:
        pass  # the failed step's tensors are freed with the exception, below
    gc.collect()
    torch.cuda.empty_cache()
    return peak


def largest_batch(step: Step, args: argparse.Namespace, device: torch.device, limit: float) -> int:
    """Largest batch whose peak memory stays under ``limit`` GB: doubling, then bisection."""
    good, bad = 0, 1
    while (gb := peak_gb(step, args, device, bad)) is not None and gb <= limit:
        good, bad = bad, bad * 2
    while bad - good > 1:
        mid = (good + bad) // 2
        gb = peak_gb(step, args, device, mid)
        good, bad = (mid, bad) if gb is not None and gb <= limit else (good, mid)
    return good


def memory_tables(args: argparse.Namespace, device: torch.device) -> None:
    total = torch.cuda.get_device_properties(0).total_memory / 1e9
    limit = min(args.mem_limit_gb, total)
    sizes = [int(s) for s in args.mem_batches.split(",")]
    rows, largest = [], []
    for d in ("authors", "fast"):
        step = make_step(make_task(args, device, d == "fast"), device, d)
        gbs = [peak_gb(step, args, device, b) for b in sizes]
        rows.append([DESIGNS[d], *("OOM" if g is None else g for g in gbs)])
        largest.append([DESIGNS[d], largest_batch(step, args, device, limit)])
    title = "Peak GPU memory (GB, max_memory_allocated over two steps)"
    print_table(title, ["design", *(f"batch {b}" for b in sizes)], rows)
    title = f"Largest batch (clips of {args.frames} frames) under {limit:.0f} GB"
    print_table(title, ["design", "largest batch"], largest)


def profile(args: argparse.Namespace, device: torch.device) -> None:
    from torch.profiler import ProfilerActivity

    step = make_step(make_task(args, device, True), device, "fast")
    x, y = batch(args, device, args.batch)
    step(x, y)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        step(x, y)
        step(x, y)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=15))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"bench_train: {machine_line()}")
    print(
        f"DMA-STA {args.backbone} (SAM in every block, TAM), {args.size} px, batch "
        f"{args.batch} x {args.frames} frames, {args.rounds} rounds x {args.steps} steps"
    )
    designs = ["authors", "batched", "fast"] if cuda else ["authors", "batched"]
    if not cuda:
        print("no CUDA GPU: skipping bf16 + channels_last (CPU runs both designs in fp32)")
    headers = ["design", "frames/s", "ms/step", "x authors"]
    seconds = gpu_only(args, device, designs)
    where = "on the GPU" if cuda else "on the CPU"
    print_table(f"Training step on synthetic tensors {where}", headers, rate_rows(seconds, args))
    best = designs[-1]  # attribnet as configured for this device
    fps = args.batch * args.frames / seconds[best]
    print(
        f"speed-up {seconds['authors'] / seconds[best]:.2f}x (issue target >= 3x); "
        f"{fps:,.0f} frames/s (issue target >= 2,500 on an H100, bf16 + channels_last)"
    )
    if args.end_to_end:
        e2e = end_to_end(args, device, designs)
        title = f"End to end: DataLoader over a face cache, recipe augmentation, {args.workers}"
        print_table(f"{title} workers (authors: 0)", headers, rate_rows(e2e, args))
    if args.memory:
        if cuda:
            memory_tables(args, device)
        else:
            print("no CUDA GPU: skipping peak GPU memory and largest batch")
    if args.profile:
        profile(args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
