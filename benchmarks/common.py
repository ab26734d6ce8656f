"""What the benchmarks share: timing, Markdown tables, the machine line, test videos."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls (CUDA
    work is synchronised before each clock read)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats get 3 significant digits (at least 1 decimal below 1000)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return str(value)
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    print(f"\n### {title}\n\n{markdown_table(headers, rows)}\n", flush=True)


def machine_line() -> str:
    """Date, CPU count, torch threads and the GPU (if any), for the top of every output."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
    today = datetime.date.today().isoformat()
    return (
        f"{today}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}"
    )


def pin_to_one_core() -> str:
    """Pin this process (all its threads) to one CPU, as one loader worker would use one
    core; returns what was done."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this OS)"
    core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    return f"pinned to CPU {core} (one core = one loader worker)"


def face_video(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """uint8 (frames, height, width, 3): a procedural talking head (attribnet's synthetic
    faces) pasted, drifting slowly, on a smooth background with light sensor noise."""
    import cv2

    from attribnet.data.synthetic import draw_source

    rng = np.random.default_rng(seed)
    side = min(height, width) if min(height, width) <= 256 else min(height, width) * 2 // 3
    face = draw_source(rng, frames).render(frames, min(side, 256))
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    top, bottom = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    coarse = rng.normal(0, 25, (height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (width, height)) + rng.normal(0, 8, (height, width, 3))
    background = (1 - ramp) * top + ramp * bottom + texture.astype(np.float32)
    video = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        shake = int(round(3 * np.sin(t / 7)))  # a hand-held camera: the background moves
        frame = np.roll(background, shake, axis=1)
        patch = cv2.resize(face[t], (side, side), interpolation=cv2.INTER_LINEAR)
        x = int((width - side) * (0.5 + 0.3 * np.sin(t / 40)))
        y = (height - side) // 2
        frame[y : y + side, x : x + side] = patch
        frame += rng.normal(0, 3.0, (height, width, 1)).astype(np.float32)  # sensor noise
        video[t] = np.clip(frame, 0, 255)
    return video


def synthetic_videos(
    folder: Path, count: int, frames: int, height: int, width: int, crf: int = 23
) -> list[Path]:
    """Write ``count`` H.264 mp4s (attribnet's write_video: libx264 veryfast, its default
    GOP) of synthetic faces into ``folder``; reuses files already there."""
    from attribnet.data.codec import write_video

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"synthetic_{width}x{height}_{frames}f_crf{crf}_{i}.mp4"
        if not path.exists():
            write_video(path, face_video(frames, height, width, seed=i), crf=crf)
        paths.append(path)
    return paths
