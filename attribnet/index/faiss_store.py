"""The FAISS side of the generator index: building, tuning, GPU placement and reading.

An index is a FAISS ``IndexIDMap2`` over L2-normalised float32 embeddings, one vector per
training video, id = row number. Inner product on unit vectors is cosine similarity. Up to
``ivf_threshold`` vectors (default 1e6) the inner index is exact (``IndexFlatIP``); above
it, ``IndexIVFFlat`` with inner product, ``nlist`` = ``4 sqrt(N)`` (capped at ``N / 39`` so
every list gets trained). ``nprobe`` (lists searched) is tuned at build time: the smallest
power of two whose recall@10 against exact search, on 256 indexed vectors used as queries,
reaches 0.95 (the reached recall is in the sidecar); a fixed ``nprobe`` can be given
instead. With faiss-gpu and a CUDA device the index is searched on the GPU and always
brought back to the CPU (``index_gpu_to_cpu``) to be written.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import torch

from attribnet.errors import DataError
from attribnet.runtime.faiss_import import faiss

log = logging.getLogger(__name__)

DEFAULT_IVF_THRESHOLD = 1_000_000
TARGET_RECALL = 0.95
TUNE_QUERIES = 256
TUNE_K = 10


def ivf_nlist(num_vectors: int) -> int:
    """IVF list count for N vectors: ``4 sqrt(N)``, at most ``N / 39`` (FAISS wants >= 39
    training points per list), at least 1."""
    return max(1, min(round(4 * math.sqrt(num_vectors)), num_vectors // 39))


def gpu_available() -> bool:
    """Whether FAISS can search on a GPU: a faiss-gpu build and a CUDA device."""
    return (
        hasattr(faiss, "index_cpu_to_gpu")
        and faiss.get_num_gpus() > 0
        and torch.cuda.is_available()
    )


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k ids (Q, k) that a search found (Q, k)."""
    k = exact.shape[1]
    return float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact, strict=True)]))


def tune_nprobe(
    index: faiss.Index,
    vectors: np.ndarray,
    target_recall: float = TARGET_RECALL,
    k: int = TUNE_K,
    num_queries: int = TUNE_QUERIES,
    seed: int = 0,
) -> tuple[int, float]:
    """Set the smallest power-of-two ``nprobe`` (capped at nlist) whose recall@k reaches
    ``target_recall``; -> (nprobe, recall reached).

    ``index`` is an ``IndexIDMap2`` over an IVF index holding ``vectors`` (N, D) with ids
    0..N-1; a sample of ``num_queries`` of them are the queries and brute force
    (``faiss.knn``) gives their exact neighbours.
    """
    ivf = faiss.extract_index_ivf(index)
    rng = np.random.default_rng(seed)
    queries = vectors[rng.choice(len(vectors), min(num_queries, len(vectors)), replace=False)]
    k = min(k, len(vectors))
    _, exact = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    nprobe = 1
    while True:
        ivf.nprobe = nprobe
        recall = recall_at_k(index.search(queries, k)[1], exact)
        if recall >= target_recall or nprobe >= ivf.nlist:
            return nprobe, recall
        nprobe = min(2 * nprobe, ivf.nlist)


def build_faiss(
    vectors: np.ndarray, ivf_threshold: int, nprobe: int | None
) -> tuple[faiss.Index, float | None]:
    """An ``IndexIDMap2`` over ``vectors`` (N, D) unit float32 with ids 0..N-1 (CPU), and
    the recall@10 that the tuned ``nprobe`` reached (None when flat or given)."""
    n, dim = vectors.shape
    ivf = n > ivf_threshold
    if ivf:
        nlist = ivf_nlist(n)
        quantizer = faiss.IndexFlatIP(dim)
        inner: faiss.Index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        inner.train(vectors)
    else:
        inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, np.arange(n, dtype=np.int64))
    recall = None
    if ivf and nprobe is None:
        nprobe, recall = tune_nprobe(index, vectors)
    if ivf:
        inner.nprobe = min(int(nprobe), nlist)
        log.info(
            "IVF index: %d vectors, nlist %d, nprobe %d%s", n, nlist, inner.nprobe,
            "" if recall is None else f" (tuned: recall@{TUNE_K} {recall:.3f})",
        )  # fmt: skip
    return index, recall


def maybe_gpu(index: faiss.Index, use_gpu: bool) -> tuple[faiss.Index, bool]:
    """The index on GPU 0 when asked for and possible; (index, on_gpu)."""
    if not (use_gpu and gpu_available()):
        return index, False
    try:
        resources = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
    except (RuntimeError, AttributeError) as exc:
        log.warning("FAISS GPU copy failed (%s); searching on the CPU", exc)
        return index, False
    gpu_index.referenced_objects = [resources]
    return gpu_index, True


def inner_kind(index: faiss.Index) -> str:
    """``flat`` or ``ivf``."""
    return "ivf" if faiss.try_extract_index_ivf(index) is not None else "flat"


def read_faiss(path: Path) -> faiss.Index:
    """Read a ``.faiss`` file; DataError naming it (and FAISS's reason) when corrupt."""
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise DataError(f"{path}: corrupt FAISS index ({faiss_reason(exc)})") from exc


def faiss_reason(exc: BaseException) -> str:
    """FAISS's error text without its C++ location prefix, on one line."""
    text = " ".join(str(exc).split())
    return re.split(r"\.cpp:\d+: ", text)[-1] or type(exc).__name__
