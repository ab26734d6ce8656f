"""Loader throughput: clips/s of 10 frames from video (decord vs PyAV) and from the face
cache (memmap) with augmentation, H.264 re-encoded per clip vs read from variants made once
(data.augment.h264_cache), and the loader workers that keep one GPU fed.

    python benchmarks/bench_loader.py                           # synthetic videos, ~2 min
    python benchmarks/bench_loader.py --videos ../shared/data/faces --repeat 8

Every rate is measured in this one process pinned to one CPU core (``--no-pin`` to lift
it), i.e. what one DataLoader worker on one core delivers; workers needed =
ceil(target clips/s / per-worker clips/s), assuming one free core per worker.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from common import machine_line, median, pin_to_one_core, print_table, synthetic_videos, timed

from attribnet.config import load_recipe
from attribnet.data.augment import ClipAugment, CompressionAugment
from attribnet.data.cache import FaceCache
from attribnet.data.clips import ClipDataset
from attribnet.data.h264_variants import H264Variants
from attribnet.data.manifest import ManifestRow
from attribnet.data.preprocess import preprocess
from attribnet.data.sampling import sample_indices
from attribnet.data.video import open_clip_source

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "dfdm_ce_arcface.yaml"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--videos",
        type=Path,
        help="folder of real .mp4 face videos (default: "
        "generate synthetic 224x224 and 1280x720 ones)",
    )
    p.add_argument("--num-videos", type=int, default=2, help="synthetic videos per size")
    p.add_argument("--frames", type=int, default=150, help="frames per synthetic video")
    p.add_argument("--crf", type=int, default=23, help="crf of the synthetic videos")
    p.add_argument("--num-frames", type=int, default=10, help="frames per clip (T)")
    p.add_argument("--image-size", type=int, default=224, help="face crop size in the cache")
    p.add_argument("--repeat", type=int, default=4, help="timed clips per video and backend")
    p.add_argument("--cache-clips", type=int, default=40, help="timed clips per cache row")
    p.add_argument(
        "--train-fps",
        type=float,
        default=2500.0,
        help="GPU training speed in frames/s (the issue's H100 target)",
    )
    p.add_argument(
        "--inference-factor",
        type=float,
        default=3.0,
        help="inference speed as a multiple of training speed",
    )
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds, variant table")
    p.add_argument("--no-pin", action="store_true", help="do not pin to one CPU core")
    return p.parse_args(argv)


def decode_rate(path: Path, backend: str, t: int, repeat: int) -> float:
    """Clips/s of open + T periodic frames, as a loader reading videos directly would."""

    def clip() -> None:
        with open_clip_source(path, backend=backend) as source:
            source.get_frames(sample_indices(len(source), t, "periodic"))

    return 1.0 / median(timed(clip, repeat))


def decode_rows(videos: list[Path], t: int, repeat: int) -> list[tuple[str, str, dict]]:
    """(video description, its WxH, {backend: clips/s}) per video."""
    rows = []
    for path in videos:
        with open_clip_source(path, backend="pyav") as source:
            n, (h, w) = len(source), source.get_frames([0]).shape[1:3]
        rates = {b: decode_rate(path, b, t, repeat) for b in ("decord", "pyav")}
        name = f"{path.name} ({w}x{h}, {n} fr, {path.stat().st_size / 1024:.0f} KB)"
        rows.append((name, f"{w}x{h}", rates))
    return rows


def per_resolution(rows: list[tuple[str, str, dict]]) -> list[tuple[str, float]]:
    """Decode rates per resolution and backend: clips / total time over that group."""
    out = []
    for res in dict.fromkeys(r for _, r, _ in rows):
        for backend in ("decord", "pyav"):
            times = [1.0 / rates[backend] for _, r, rates in rows if r == res]
            out.append((f"decode {res} video, {backend}", len(times) / sum(times)))
    return out


def build_cache(videos: list[Path], folder: Path, size: int, detector: str) -> FaceCache:
    """Face crops of the videos through attribnet's preprocess (64 frames per video)."""
    rows = [ManifestRow(path=str(p), label="real") for p in videos]
    return preprocess(rows, folder, detector=detector, size=size, progress=False)


def cache_pipelines(
    cache: FaceCache, t: int, size: int
) -> list[tuple[str, Callable[[int], object]]]:
    """(name, item function) per pipeline; each adds a step to the memmap read of T frames."""
    entries = cache.entries
    aug = load_recipe(RECIPE).data.augment
    spatial = ClipAugment(
        size, hflip=aug.hflip, crop_scale=aug.crop_scale, color_jitter=aug.color_jitter
    )

    def raw(i: int) -> np.ndarray:
        entry = entries[i % len(entries)]
        return np.array(cache.load(entry)[sample_indices(entry.num_frames, t, "periodic")])

    def items(compression: CompressionAugment | None = None, augment: bool = True) -> Callable:
        ds = ClipDataset(
            cache,
            entries,
            ["real"],
            num_frames=t,
            image_size=size,
            spatial=spatial if augment else None,
            compression=compression,
        )

        def item(i: int) -> object:
            ds.set_epoch(i // len(ds))  # new random draws every pass
            return ds[i % len(ds)]

        return item

    mix = CompressionAugment(
        h264_p=aug.h264_p,
        crf_choices=aug.h264_crf,
        jpeg_p=aug.jpeg_p,
        jpeg_quality=tuple(aug.jpeg_quality),
    )
    return [
        ("memmap read, uint8 (FaceCache.load)", raw),
        ("+ Normalize (= inference input)", items(augment=False)),
        (
            f"+ spatial aug (recipe's flip {aug.hflip:g}, crop {aug.crop_scale[0]:g}-"
            f"{aug.crop_scale[1]:g}, jitter {aug.color_jitter:g})",
            items(),
        ),
        *[
            (f"+ spatial + H.264 crf {c}", items(CompressionAugment(h264_p=1.0, crf_choices=[c])))
            for c in (0, 10, 23)
        ],
        ("+ spatial + JPEG q 60-95", items(CompressionAugment(jpeg_p=1.0))),
        (f"+ recipe mix (H.264 p={aug.h264_p}, JPEG p={aug.jpeg_p})", items(mix)),
    ]


def variant_pipelines(
    cache: FaceCache, t: int, size: int
) -> list[tuple[str, Callable[[int], object], Callable[[int], object]]]:
    """(name, encoding each clip, reading the H.264 variant made once) per pipeline: the
    spatial augmentation plus H.264 at each crf, and the recipe's mix; the variants of every
    cached clip at the recipe's crfs are made first (:class:`H264Variants`)."""
    aug = load_recipe(RECIPE).data.augment
    spatial = ClipAugment(
        size, hflip=aug.hflip, crop_scale=aug.crop_scale, color_jitter=aug.color_jitter
    )
    variants = H264Variants(cache, aug.h264_crf)

    def items(compression: CompressionAugment, cached: bool) -> Callable[[int], object]:
        ds = ClipDataset(cache, cache.entries, ["real"], num_frames=t, image_size=size,
                         spatial=spatial, compression=compression,
                         variants=variants if cached else None)  # fmt: skip

        def item(i: int) -> object:
            ds.set_epoch(i // len(ds))
            return ds[i % len(ds)]

        return item

    mix = CompressionAugment(aug.h264_p, aug.h264_crf, aug.jpeg_p, tuple(aug.jpeg_quality))
    pipes = [(f"+ spatial + H.264 crf {c}", CompressionAugment(h264_p=1.0, crf_choices=[c]))
             for c in aug.h264_crf]  # fmt: skip
    pipes.append((f"+ recipe mix (H.264 p={aug.h264_p}, JPEG p={aug.jpeg_p})", mix))
    return [(name, items(c, False), items(c, True)) for name, c in pipes]


def make_variants(cache: FaceCache) -> tuple[int, float]:
    """Make the H.264 variants of every cached clip at the recipe's crfs: (how many,
    seconds each)."""
    variants = H264Variants(cache, load_recipe(RECIPE).data.augment.h264_crf)
    start = time.perf_counter()
    made = variants.make(cache.entries, progress=False)
    return made, (time.perf_counter() - start) / max(made, 1)


def item_rate(item: Callable[[int], object], clips: int) -> float:
    """Clips/s of ``item(i)`` for i < clips, after one untimed call."""
    item(0)
    start = time.perf_counter()
    for i in range(clips):
        item(i)
    return clips / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t = args.num_frames
    print(f"bench_loader: {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        if args.videos:
            videos = sorted(args.videos.glob("*.mp4"))
            if not videos:
                print(f"no .mp4 files in {args.videos}", file=sys.stderr)
                return 2
            cache_videos, detector = videos, "haar"
        else:
            print(
                "generating synthetic videos (attribnet's procedural faces, libx264 veryfast, "
                f"crf {args.crf}, libx264's default GOP of 250 frames)"
            )
            small = synthetic_videos(Path(tmp), args.num_videos, args.frames, 224, 224, args.crf)
            large = synthetic_videos(Path(tmp), args.num_videos, args.frames, 720, 1280, args.crf)
            videos, cache_videos, detector = small + large, small, "none"
        cache = build_cache(cache_videos, Path(tmp) / "cache", args.image_size, detector)
        print(
            f"timing: {'not pinned' if args.no_pin else pin_to_one_core()}; "
            "cache files are in the OS page cache (warm)"
        )
        decoded = decode_rows(videos, t, args.repeat)
        print_table(
            f"Decoding {t} periodic frames per clip (open + get_frames), clips/s",
            ["video", "decord", "PyAV", "decord / PyAV"],
            [[n, r["decord"], r["pyav"], r["decord"] / r["pyav"]] for n, _, r in decoded],
        )
        cached = []
        for name, item in cache_pipelines(cache, t, args.image_size):
            slow = "H.264" in name or "mix" in name
            cached.append((name, item_rate(item, max(4, args.cache_clips // (4 if slow else 1)))))
        made, each = make_variants(cache)
        compared = []
        for name, encode, variant in variant_pipelines(cache, t, args.image_size):
            n, rates = max(4, args.cache_clips // 4), ([], [])
            for _ in range(args.rounds):  # interleaved: background load hits both alike
                rates[0].append(item_rate(encode, n))
                rates[1].append(item_rate(variant, args.cache_clips))
            slow, fast = median(rates[0]), median(rates[1])
            compared.append([name, slow, fast, fast / slow])
    frames = cache.entries[0].num_frames
    print_table(
        f"H.264 from a variant made once (data.augment.h264_cache) vs encoding each clip, "
        f"clips/s per worker ({made} variants of {frames}-frame videos made first, "
        f"{each:.2f} s each)",
        ["pipeline", "encode each clip", "variant cache", "variant / encode"],
        compared,
    )
    cached += [(f"{name}, variant cache", rate) for name, _, rate, _ in compared]
    print_table(
        f"Reading {t}-frame clips of {args.image_size}px faces from the cache "
        f"({len(cache.entries)} videos, detector {detector}), clips/s",
        ["pipeline", "clips/s"],
        cached,
    )
    train_clips = args.train_fps / t
    infer_clips = train_clips * args.inference_factor
    print_table(
        f"Loader workers (one core each) to feed one GPU: training {args.train_fps:,.0f} "
        f"frames/s = {train_clips:,.0f} clips/s; inference x{args.inference_factor:g} = "
        f"{infer_clips:,.0f} clips/s",
        ["pipeline", "clips/s per worker", "workers (training)", "workers (inference)"],
        [
            [n, r, math.ceil(train_clips / r), math.ceil(infer_clips / r)]
            for n, r in [*per_resolution(decoded), *cached]
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
