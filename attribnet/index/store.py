"""GeneratorIndex: the training videos' embeddings in FAISS, with their labels and ids."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attribnet import __version__
from attribnet.errors import CheckpointError, DataError, IndexMismatchError
from attribnet.files.atomic import atomic_path
from attribnet.index.faiss_store import (
    DEFAULT_IVF_THRESHOLD,
    TARGET_RECALL,
    TUNE_K,
    TUNE_QUERIES,
    build_faiss,
    inner_kind,
    maybe_gpu,
)
from attribnet.index.folder import (
    FORMAT_VERSION,
    INDEX_FILE,
    META_FILE,
    checkpoint_record,
    index_fields,
    read_folder,
)
from attribnet.metrics.vectors import l2_normalize
from attribnet.openset.policy import OPEN_SET_FILE, OpenSetPolicy, read_gaussians
from attribnet.openset.scores import class_prototypes, prototype_similarities
from attribnet.runtime.faiss_import import faiss

log = logging.getLogger(__name__)


class GeneratorIndex:
    """A FAISS index of generator embeddings with its sidecar metadata.

    Rows are training videos: ``labels[i]`` (generator id into ``class_names``),
    ``video_ids[i]`` and ``qualities[i]`` describe FAISS id ``i``. ``open_set`` is the
    :class:`~attribnet.openset.policy.OpenSetPolicy`: which knownness score, its threshold.
    """

    def __init__(
        self,
        faiss_index: faiss.Index,
        *,
        labels: np.ndarray,
        class_names: Sequence[str],
        video_ids: Sequence[str],
        qualities: Sequence[str],
        prototypes: np.ndarray,
        prototype_counts: np.ndarray,
        checkpoint_sha256: str = "",
        checkpoint_path: str = "",
        nprobe_recall: float | None = None,
        use_gpu: bool = True,
        open_set: Mapping[str, Any] | None = None,
    ):
        """Wrap a CPU ``faiss_index``; use :meth:`build` or :meth:`load` to make one.

        ``open_set`` holds the keywords of its :class:`~attribnet.openset.policy.OpenSetPolicy`
        (default: ``prototype_cosine``, no threshold).
        """
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.video_ids = list(video_ids)
        self.qualities = list(qualities)
        self.prototypes = np.asarray(prototypes, dtype=np.float32)
        self.prototype_counts = np.asarray(prototype_counts, dtype=np.int64)
        self.checkpoint_sha256 = checkpoint_sha256
        self.checkpoint_path = checkpoint_path
        self.nprobe_recall = nprobe_recall
        self.embedding_dim = int(faiss_index.d)
        self.kind = inner_kind(faiss_index)
        ivf = faiss.try_extract_index_ivf(faiss_index)
        self._nprobe = int(ivf.nprobe) if ivf is not None else None
        self._index, self.on_gpu = maybe_gpu(faiss_index, use_gpu)
        self.open_set = OpenSetPolicy(**(open_set or {}))
        self.open_set.knn_k = self.open_set.k_for(self)

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        labels: np.ndarray,
        class_names: Sequence[str],
        *,
        video_ids: Sequence[str] | None = None,
        qualities: Sequence[str] | None = None,
        checkpoint_sha256: str = "",
        checkpoint_path: str = "",
        ivf_threshold: int = DEFAULT_IVF_THRESHOLD,
        nprobe: int | None = None,
        use_gpu: bool = True,
    ) -> GeneratorIndex:
        """Index ``embeddings`` (N, D) with generator ids ``labels`` (N,).

        Embeddings are L2-normalised here. IVF is used when N > ``ivf_threshold``, with
        ``nprobe`` tuned to recall@10 >= 0.95 unless given
        (:func:`~attribnet.index.faiss_store.tune_nprobe`).
        """
        vectors = l2_normalize(embeddings)
        labels = np.asarray(labels, dtype=np.int64)
        n = len(vectors)
        if n == 0:
            raise DataError("cannot build a generator index from zero embeddings")
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
        if labels.min() < 0 or labels.max() >= len(class_names):
            raise ValueError(f"labels must be ids in 0..{len(class_names) - 1}")
        prototypes, counts = class_prototypes(vectors, labels, len(class_names))
        faiss_index, recall = build_faiss(vectors, ivf_threshold, nprobe)
        return cls(
            faiss_index,
            labels=labels,
            class_names=class_names,
            video_ids=list(video_ids) if video_ids is not None else [str(i) for i in range(n)],
            qualities=list(qualities) if qualities is not None else [""] * n,
            prototypes=prototypes,
            prototype_counts=counts,
            checkpoint_sha256=checkpoint_sha256,
            checkpoint_path=checkpoint_path,
            nprobe_recall=recall,
            use_gpu=use_gpu,
        )

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors."""
        return int(self._index.ntotal)

    @property
    def nprobe(self) -> int | None:
        """IVF lists searched per query (None for a flat index)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self._nprobe is None:
            return
        if self.on_gpu:
            faiss.GpuParameterSpace().set_index_parameter(self._index, "nprobe", int(value))
        else:
            faiss.extract_index_ivf(self._index).nprobe = int(value)
        self._nprobe = int(value)

    # ------------------------------------------------------------------ queries

    def unit_queries(self, queries: np.ndarray) -> np.ndarray:
        """Queries (Q, D) L2-normalised; IndexMismatchError unless D is the index's dim."""
        q = l2_normalize(np.atleast_2d(queries))
        if q.shape[1] != self.embedding_dim:
            raise IndexMismatchError(
                f"query embeddings have dim {q.shape[1]}, the index holds dim {self.embedding_dim}"
            )
        return q

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosine neighbours: queries (Q, D) -> similarities (Q, k') float32 and rows
        (Q, k') int64, best first, k' = min(k, ntotal). Rows index ``labels``/``video_ids``;
        an IVF search that finds fewer than k' neighbours pads with row -1 (similarity -inf).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = self.unit_queries(queries)
        k = min(k, self.ntotal)
        sims, rows = self._index.search(q, k)
        sims = np.where(rows < 0, -np.inf, sims).astype(np.float32)
        return sims, rows.astype(np.int64)

    def knn_predict(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Similarity-weighted k-NN vote: (Q, D) -> pred (Q,), confidence (Q,), votes (Q, K).

        Each neighbour votes for its generator with weight max(similarity, 0) (equal weights
        when all are <= 0); ``confidence`` is the winner's share of the total vote weight.
        """
        sims, rows = self.search(queries, k)
        valid = rows >= 0
        weights = np.where(valid, np.clip(sims, 0.0, None), 0.0).astype(np.float64)
        flat = weights.sum(axis=1) <= 0
        weights[flat] = valid[flat].astype(np.float64)
        votes = np.zeros((len(rows), len(self.class_names)), dtype=np.float64)
        row_of = np.repeat(np.arange(len(rows)), rows.shape[1])
        np.add.at(votes, (row_of, self.labels[np.where(valid, rows, 0)].ravel()), weights.ravel())
        pred = votes.argmax(axis=1)
        total = np.maximum(votes.sum(axis=1), 1e-12)
        return pred, votes[np.arange(len(pred)), pred] / total, votes

    def prototype_similarities(self, queries: np.ndarray) -> np.ndarray:
        """Cosine similarity to every class prototype: (Q, D) -> (Q, K); classes without
        training vectors get -inf."""
        q = self.unit_queries(queries)
        return prototype_similarities(q, self.prototypes, self.prototype_counts)

    def prototype_predict(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest prototype: (Q, D) -> pred (Q,) and its cosine similarity (Q,)."""
        sims = self.prototype_similarities(queries)
        pred = sims.argmax(axis=1)
        return pred, sims[np.arange(len(pred)), pred]

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The stored unit vectors of ``rows`` (default all): (n, D) float32."""
        rows = np.arange(self.ntotal) if rows is None else np.asarray(rows, dtype=np.int64)
        index = self.cpu_index()
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.make_direct_map()
        return np.asarray(index.reconstruct_batch(rows), dtype=np.float32)

    def cpu_index(self) -> faiss.Index:
        """The FAISS index on the CPU (a copy when it is searched on the GPU)."""
        return faiss.index_gpu_to_cpu(self._index) if self.on_gpu else self._index

    # ------------------------------------------------------------------ compatibility

    def check_compatible(
        self,
        *,
        checkpoint_sha256: str | None = None,
        embedding_dim: int | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Raise IndexMismatchError unless the model matches the one the index was built by.

        The embedding dim is checked first (the more telling message), then the sha256.
        """
        named = str(checkpoint_path) if checkpoint_path is not None else "the given model"
        if embedding_dim is not None and int(embedding_dim) != self.embedding_dim:
            raise IndexMismatchError(
                f"{named} makes {embedding_dim}-d embeddings, but the index holds "
                f"{self.embedding_dim}-d embeddings (built from {self.checkpoint_path})"
            )
        if checkpoint_sha256 is not None and checkpoint_sha256 != self.checkpoint_sha256:
            raise IndexMismatchError(
                f"index was built from checkpoint {self.checkpoint_path} (sha256 "
                f"{self.checkpoint_sha256[:12]}), not {named} (sha256 {checkpoint_sha256[:12]})"
            )

    # ------------------------------------------------------------------ files

    def meta(self, index_bytes: int = 0, folder: str | os.PathLike[str] = ".") -> dict[str, Any]:
        """The sidecar of this index written to ``folder`` as a JSON-ready dict
        (:func:`sidecar`)."""
        return sidecar(self, index_bytes, folder)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the index folder (:func:`~attribnet.index.folder.write_folder`); returns it."""
        return write_folder(self, folder)

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        checkpoint_path: str | os.PathLike[str] | None = None,
        *,
        embedding_dim: int | None = None,
        nprobe: int | None = None,
        use_gpu: bool = True,
    ) -> GeneratorIndex:
        """Read an index folder.

        With ``checkpoint_path`` (a file or a run folder with best.pt) the checkpoint must
        be the one the index was built from (same embedding dim, same sha256), else
        IndexMismatchError; ``embedding_dim`` saves reading the checkpoint for the dim.
        Missing, corrupt or truncated files are a DataError naming the file.
        """
        folder = Path(folder)
        cpu_index, meta = read_folder(folder)
        try:
            index = cls(cpu_index, use_gpu=use_gpu, **index_fields(meta, folder))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{folder / META_FILE}: corrupt index sidecar ({exc!r})") from exc
        index.open_set.gaussians = read_gaussians(
            folder, meta, len(index.class_names), index.embedding_dim
        )
        if nprobe is not None:
            index.nprobe = nprobe
        if checkpoint_path is not None:
            check_checkpoint(index, checkpoint_path, embedding_dim)
        return index

    def info(self) -> dict[str, Any]:
        """A short summary (no per-row data): counts, classes, threshold, checkpoint."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {
            "vectors": self.ntotal,
            "embedding_dim": self.embedding_dim,
            "index_type": self.kind,
            "nprobe": self.nprobe,
            "on_gpu": self.on_gpu,
            "classes": dict(zip(self.class_names, counts.tolist(), strict=True)),
            "qualities": dict(sorted(Counter(self.qualities).items())),
            "threshold": self.open_set.threshold,
            "threshold_score": self.open_set.score,
            "threshold_split": self.open_set.split,
            "open_set_auroc": self.open_set.selection.mean_auroc
            if self.open_set.selection
            else None,
            "checkpoint": self.checkpoint_path,
            "checkpoint_sha256": self.checkpoint_sha256,
        }


def sidecar(
    index: GeneratorIndex, index_bytes: int = 0, folder: str | os.PathLike[str] = "."
) -> dict[str, Any]:
    """The ``meta.json`` of ``index`` in the index folder ``folder`` as a JSON-ready dict;
    the checkpoint's path is stored relative to ``folder``
    (:func:`~attribnet.index.folder.checkpoint_record`)."""
    checkpoint = checkpoint_record(index.checkpoint_path, index.checkpoint_sha256, Path(folder))
    return {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "embedding_dim": index.embedding_dim,
        "ntotal": index.ntotal,
        "index_bytes": int(index_bytes),
        "index_type": index.kind,
        "metric": "inner_product on L2-normalised vectors (cosine)",
        "nprobe": index.nprobe,
        "nprobe_tuning": None
        if index.nprobe_recall is None
        else {
            "target_recall": TARGET_RECALL,
            f"recall_at_{TUNE_K}": index.nprobe_recall,
            "queries": TUNE_QUERIES,
        },  # fmt: skip
        "checkpoint": checkpoint,
        "class_names": index.class_names,
        **index.open_set.meta(),  # "threshold" and "open_set"
        "prototype_counts": index.prototype_counts.tolist(),
        "prototypes": index.prototypes.tolist(),
        "labels": index.labels.tolist(),
        "video_ids": index.video_ids,
        "qualities": index.qualities,
    }


def write_folder(index: GeneratorIndex, folder: str | os.PathLike[str]) -> Path:
    """Write ``index.faiss``, ``meta.json`` and (with Gaussians) ``open_set.npz``.

    All go to temporary files first and are renamed only when all were written, so a failed
    save leaves a previous index in the folder intact. Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cpu_index = index.cpu_index()
    gaussians = index.open_set.gaussians
    with contextlib.ExitStack() as stack:
        index_tmp = stack.enter_context(atomic_path(folder / INDEX_FILE))
        meta_tmp = stack.enter_context(atomic_path(folder / META_FILE))
        if gaussians is not None:
            np.savez(stack.enter_context(atomic_path(folder / OPEN_SET_FILE)),
                     **gaussians.arrays())  # fmt: skip
        faiss.write_index(cpu_index, str(index_tmp))
        meta = sidecar(index, index_tmp.stat().st_size, folder)
        meta_tmp.write_text(json.dumps(meta) + "\n")
    log.info("index of %d %s vectors written to %s", index.ntotal, index.kind, folder)
    return folder


def check_checkpoint(
    index: GeneratorIndex, checkpoint_path: str | os.PathLike[str], embedding_dim: int | None
) -> None:
    """IndexMismatchError unless the checkpoint is the index's (dim, then sha256)."""
    from attribnet.files.checkpoints import file_sha256, read_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(checkpoint_path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if embedding_dim is None:
        args = read_checkpoint(path)["args"]
        embedding_dim = int(args.get("model", {}).get("embedding_dim", 0))
    index.check_compatible(
        embedding_dim=embedding_dim, checkpoint_sha256=file_sha256(path), checkpoint_path=path
    )
