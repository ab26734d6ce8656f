"""GeneratorIndex search: latency and recall, flat vs IVF, for growing index sizes.

    python benchmarks/bench_index.py                         # 1e4, 1e5 vectors, ~1 min
    python benchmarks/bench_index.py --sizes 1e4,1e5,1e6     # the issue's full table

Vectors are random, clustered and L2-normalised (``--clusters`` Gaussian clusters around
random unit centres), so nearest neighbours are meaningful and IVF can miss some. Both
indexes are built with attribnet's GeneratorIndex.build (IVF forced by ``ivf_threshold``:
nlist = 4 sqrt(N), at most N / 39). Recall@k = share of IVF's top k found in flat's exact
top k for the same queries. Memory = vectors + ids (+ IVF centroids), as FAISS holds them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch
from common import machine_line, median, print_table, timed

from attribnet.index import GeneratorIndex, gpu_available, ivf_nlist, recall_at_k
from attribnet.runtime.faiss_import import faiss


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="1e4,1e5", help="index sizes, comma-separated")
    p.add_argument("--dim", type=int, default=512, help="embedding dim")
    p.add_argument("--clusters", type=int, default=50, help="generators (clusters) in the data")
    p.add_argument("--spread", type=float, default=0.7, help="within-cluster noise norm")
    p.add_argument("--queries", type=int, default=200, help="queries for recall and batch-100")
    p.add_argument(
        "--nprobe", default="1,16,64", help="fixed IVF nprobe values to compare with the tuned one"
    )
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: default)")
    return p.parse_args(argv)


def clustered(n: int, dim: int, centres: np.ndarray, spread: float, seed: int) -> np.ndarray:
    """(n, dim) float32 unit vectors: a random centre each, plus Gaussian noise of norm ~spread."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # in chunks: bounded temporary memory at 1e6
        m = min(100_000, n - start)
        noise = rng.standard_normal((m, dim), dtype=np.float32) * (spread / np.sqrt(dim))
        out[start : start + m] = centres[rng.integers(0, len(centres), m)] + noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def build(vectors: np.ndarray, labels: np.ndarray, ivf: bool, gpu: bool) -> tuple:
    """(GeneratorIndex, build seconds); IVF forced with ivf_threshold=0."""
    names = [f"g{i}" for i in range(int(labels.max()) + 1)]
    threshold = 0 if ivf else len(vectors)
    start = time.perf_counter()
    index = GeneratorIndex.build(
        vectors, labels, names, ivf_threshold=threshold, use_gpu=gpu, video_ids=[""] * len(labels)
    )
    return index, time.perf_counter() - start


def latency_ms(index: GeneratorIndex, queries: np.ndarray, k: int) -> tuple[float, float]:
    """Median ms per query searching one query at a time and 100 at a time."""
    singles = [queries[i : i + 1] for i in range(min(20, len(queries)))]
    one = median(timed(lambda: [index.search(q, k) for q in singles], 3)) / len(singles)
    batch = queries[:100]
    hundred = median(timed(lambda: index.search(batch, k), 3)) / len(batch)
    return one * 1000, hundred * 1000


def memory_mb(n: int, dim: int, ivf: bool) -> float:
    return (n * (dim * 4 + 8) + (ivf_nlist(n) * dim * 4 if ivf else 0)) / 1e6


def bench_size(n: int, args: argparse.Namespace, gpu: bool) -> list[list[object]]:
    """Rows (flat, IVF at the nprobe tuned at build time, IVF at each fixed nprobe) for an
    index of n vectors. IVF build time includes the nprobe tuning."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((args.clusters, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = clustered(n, args.dim, centres, args.spread, seed=1)
    labels = np.arange(n) % args.clusters
    queries = clustered(args.queries, args.dim, centres, args.spread, seed=2)
    where = "GPU" if gpu else "CPU"
    flat, flat_s = build(vectors, labels, ivf=False, gpu=gpu)
    _, truth = flat.search(queries, args.k)
    rows = [
        [
            f"{n:,}",
            f"flat ({where})",
            "-",
            flat_s,
            memory_mb(n, args.dim, False),
            *latency_ms(flat, queries, args.k),
            1.0,
        ]
    ]
    del flat
    ivf, ivf_s = build(vectors, labels, ivf=True, gpu=gpu)
    del vectors
    tuned = ivf.nprobe
    for nprobe in [tuned, *(int(p) for p in args.nprobe.split(","))]:
        ivf.nprobe = nprobe
        _, found = ivf.search(queries, args.k)
        kind = f"IVF{ivf_nlist(n)} ({where})"
        rows.append(
            [
                f"{n:,}",
                kind,
                f"{nprobe} (tuned)" if nprobe == tuned and len(rows) == 1 else nprobe,
                ivf_s,
                memory_mb(n, args.dim, True),
                *latency_ms(ivf, queries, args.k),
                recall_at_k(found, truth),
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    print(
        f"bench_index: {machine_line()}; FAISS {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} OpenMP threads"
    )
    print(
        f"D={args.dim}, {args.clusters} clusters, noise norm {args.spread}, "
        f"{args.queries} queries, k={args.k}"
    )
    places = [False]
    if gpu_available():
        places.append(True)
    elif torch.cuda.is_available():
        print("no FAISS GPU support (install attribnet[gpu] instead of [cpu]): skipping GPU search")
    else:
        print("no CUDA GPU: skipping GPU search")
    headers = [
        "vectors",
        "index",
        "nprobe",
        "build s",
        "memory MB",
        "ms/query (batch 1)",
        "ms/query (batch 100)",
        f"recall@{args.k}",
    ]
    for n in sizes:
        rows = [row for gpu in places for row in bench_size(n, args, gpu)]
        print_table(f"{n:,} vectors of dim {args.dim}", headers, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
