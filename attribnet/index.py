"""The generator index: nearest-neighbour search over embeddings of training videos.

    python -m attribnet.index build --checkpoint runs/<name>/best.pt --out indexes/<name>
    python -m attribnet.index info indexes/<name>

An index folder holds two or three files, each written atomically (temp file + rename):

- ``index.faiss``: a FAISS ``IndexIDMap2`` over L2-normalised float32 embeddings, one
  vector per training video, id = row number. Inner product on unit vectors is cosine
  similarity. Up to ``ivf_threshold`` vectors (default 1e6) the inner index is exact
  (``IndexFlatIP``); above it, ``IndexIVFFlat`` with inner product, ``nlist`` =
  ``4 sqrt(N)`` (capped at ``N / 39`` so every list gets trained). ``nprobe`` (lists
  searched) is tuned at build time: the smallest power of two whose recall@10 against
  exact search, on 256 indexed vectors used as queries, reaches 0.95 (the reached recall
  is in the sidecar); a fixed ``nprobe`` can be given instead. With faiss-gpu and a CUDA
  device the index is searched on the GPU and always brought back to the CPU
  (``index_gpu_to_cpu``) to be written.
- ``meta.json``: per-row generator ids, video ids and qualities, class names, the
  embedding dim, the sha256 and path of the model checkpoint that made the embeddings,
  per-class prototypes (mean embedding of the class, re-normalised), the open-set score,
  its threshold and how the score was chosen (``open_set``). A query with another
  checkpoint is refused (IndexMismatchError).
- ``open_set.npz`` (when the index has them): the class means (K, D) and shared precision
  matrix (D, D) of the ``mahalanobis`` score, fitted on the indexed embeddings.

Open-set score and threshold. A video's *knownness* score is one of the candidates of
:mod:`attribnet.open_set_scores` (``knn_cosine``, ``prototype_cosine``, ``mahalanobis``,
``max_softmax``, ``energy``), and which one is chosen per index, from data, when the index
is built (:meth:`GeneratorIndex.choose_score`): each known generator in turn plays the
unseen one, every candidate is computed as if that generator had never been seen, and the
candidate with the best mean AUROC over the held-out generators wins. No score is right
for every model: on the demo's leave-one-generator-out runs max softmax reached AUROC
0.54-0.75, yet a model trained on 4 of 5 DFDM architectures gave the fifth max-softmax
AUROC 0.51 and scored real videos and FaceForensics++ fakes as more known than its own
(0.21-0.36), where nearest-neighbour cosine reached 0.82-0.88. The classifier scores are
candidates only for a model trained with a classifier head (``loss.ce_weight > 0``). The
choice and every candidate's AUROC (mean and per held-out generator) are in the sidecar.
The threshold is the 5th percentile of the chosen score over the known-generator
VALIDATION videos, i.e. the highest value that keeps at least 95% of them; a video scoring
below it is an ``unknown generator``. Without a validation split the choice and the
threshold use the training videos themselves, each scored leave-self-out (its own vector
left out of the kNN search and of its class's prototype and mean), and the sidecar says
so. Indexes written before the choice existed (score ``max_softmax`` or
``prototype_cosine``, no ``open_set`` block) load and score as they did.

Videos are embedded by :func:`attribnet.embedding.video_embeddings`: the same face cache and
normalisation as training, periodic sampling, and up to ``max_clips`` phase-shifted clips
per video whose embeddings are averaged and re-normalised.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import sys
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from attribnet import __version__
from attribnet.atomic import atomic_path
from attribnet.data.eval_clips import DEFAULT_MAX_CLIPS
from attribnet.embedding import l2_normalize, video_embeddings
from attribnet.errors import AttribnetError, CheckpointError, DataError, IndexMismatchError
from attribnet.faiss_import import faiss
from attribnet.inference import default_device
from attribnet.open_set_scores import (
    SCORE_NAMES,
    ClassGaussians,
    Reference,
    ScoreSelection,
    class_prototypes,
    default_knn_k,
    energy,
    fit_gaussians,
    mahalanobis,
    max_softmax,
    prototype_similarities,
    score_videos,
    select_score,
)

if TYPE_CHECKING:
    from attribnet.config import Recipe
    from attribnet.data.cache import CacheEntry, FaceCache
    from attribnet.data.manifest import ManifestRow
    from attribnet.embedding import VideoEmbeddings

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
META_FILE = "meta.json"
OPEN_SET_FILE = "open_set.npz"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
DEFAULT_IVF_THRESHOLD = 1_000_000
TARGET_RECALL = 0.95
TUNE_QUERIES = 256
TUNE_K = 10
DEFAULT_KEEP = 0.95
KNOWNNESS_SCORES = SCORE_NAMES
FALLBACK_SCORE = "prototype_cosine"
_SELECTION_KEYS = ("chosen", "mean_auroc", "per_class_auroc")
_META_KEYS = (
    "format_version", "embedding_dim", "ntotal", "index_bytes", "class_names", "labels",
    "video_ids", "qualities", "prototypes", "prototype_counts", "threshold", "checkpoint",
)  # fmt: skip


def ivf_nlist(num_vectors: int) -> int:
    """IVF list count for N vectors: ``4 sqrt(N)``, at most ``N / 39`` (FAISS wants >= 39
    training points per list), at least 1."""
    return max(1, min(round(4 * math.sqrt(num_vectors)), num_vectors // 39))


def calibrate_threshold(scores: np.ndarray, keep: float = DEFAULT_KEEP) -> float:
    """The highest threshold t with ``mean(scores >= t) >= keep``: (N,) -> float.

    With ``keep=0.95`` this is the 5th percentile (the lower sample), so at most
    ``floor(0.05 N)`` known samples fall below it.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("cannot calibrate a threshold on zero scores")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    rejected = math.floor((1.0 - keep) * s.size + 1e-9)
    return float(s[rejected])


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


def _build_faiss(
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


def _maybe_gpu(index: faiss.Index, use_gpu: bool) -> tuple[faiss.Index, bool]:
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


def _inner_kind(index: faiss.Index) -> str:
    """``flat`` or ``ivf``."""
    return "ivf" if faiss.try_extract_index_ivf(index) is not None else "flat"


class GeneratorIndex:
    """A FAISS index of generator embeddings with its sidecar metadata.

    Rows are training videos: ``labels[i]`` (generator id into ``class_names``),
    ``video_ids[i]`` and ``qualities[i]`` describe FAISS id ``i``.
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
        threshold: float | None = None,
        threshold_split: str = "",
        threshold_score: str = "prototype_cosine",
        nprobe_recall: float | None = None,
        use_gpu: bool = True,
        knn_k: int | None = None,
        gaussians: ClassGaussians | None = None,
        selection: ScoreSelection | None = None,
        selection_data: dict[str, Any] | None = None,
    ):
        """Wrap a CPU ``faiss_index``; use :meth:`build` or :meth:`load` to make one.

        ``knn_k`` (default :func:`default_knn_k` of the size) is the k of ``knn_cosine``;
        ``gaussians`` the ``mahalanobis`` model (fitted on the indexed vectors when first
        needed); ``selection`` and ``selection_data`` record how ``threshold_score`` was
        chosen (:meth:`choose_score`) and on what data.
        """
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.video_ids = list(video_ids)
        self.qualities = list(qualities)
        self.prototypes = np.asarray(prototypes, dtype=np.float32)
        self.prototype_counts = np.asarray(prototype_counts, dtype=np.int64)
        self.checkpoint_sha256 = checkpoint_sha256
        self.checkpoint_path = checkpoint_path
        self.threshold = threshold
        self.threshold_split = threshold_split
        if threshold_score not in KNOWNNESS_SCORES:
            raise ValueError(f"threshold_score must be one of {KNOWNNESS_SCORES}")
        self.threshold_score = threshold_score
        self.nprobe_recall = nprobe_recall
        self.knn_k = int(knn_k) if knn_k else default_knn_k(int(faiss_index.ntotal))
        self.gaussians = gaussians
        self.selection = selection
        self.selection_data = dict(selection_data or {})
        self.embedding_dim = int(faiss_index.d)
        self.kind = _inner_kind(faiss_index)
        ivf = faiss.try_extract_index_ivf(faiss_index)
        self._nprobe = int(ivf.nprobe) if ivf is not None else None
        self._index, self.on_gpu = _maybe_gpu(faiss_index, use_gpu)

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
        ``nprobe`` tuned to recall@10 >= 0.95 unless given (:func:`tune_nprobe`).
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
        faiss_index, recall = _build_faiss(vectors, ivf_threshold, nprobe)
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

    def _queries(self, queries: np.ndarray) -> np.ndarray:
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
        q = self._queries(queries)
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
        q = self._queries(queries)
        return prototype_similarities(q, self.prototypes, self.prototype_counts)

    def prototype_predict(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest prototype: (Q, D) -> pred (Q,) and its cosine similarity (Q,)."""
        sims = self.prototype_similarities(queries)
        pred = sims.argmax(axis=1)
        return pred, sims[np.arange(len(pred)), pred]

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Open-set knownness (Q, D) -> (Q,): cosine similarity to the nearest prototype."""
        return self.prototype_predict(queries)[1]

    def knownness(
        self,
        embeddings: np.ndarray,
        probabilities: np.ndarray | None = None,
        *,
        logits: np.ndarray | None = None,
        score: str | None = None,
    ) -> np.ndarray:
        """Open-set knownness (Q,) of videos, higher = more known: the score named by
        ``score`` (default: this index's ``threshold_score``), from their unit embeddings
        (Q, D) and, for ``max_softmax``, the classifier's mean probabilities (Q, K), for
        ``energy`` its mean logits (Q, K) (:class:`~attribnet.embedding.VideoEmbeddings`).

        ``knn_cosine`` searches this index (k = ``knn_k``), ``prototype_cosine`` uses its
        prototypes, ``mahalanobis`` its Gaussians (:mod:`attribnet.open_set_scores`).
        """
        name = self.threshold_score if score is None else score
        if name == "prototype_cosine":
            return self.scores(embeddings)
        if name == "knn_cosine":
            kth = self.search(embeddings, self.knn_k)[0][:, -1]
            return np.maximum(kth, -1.0).astype(np.float64)  # -inf: an IVF search found < k
        if name == "mahalanobis":
            return mahalanobis(self._queries(embeddings), self.class_gaussians())
        if name == "max_softmax" and probabilities is not None:
            return max_softmax(probabilities)
        if name == "energy" and logits is not None:
            return energy(logits)
        if name not in KNOWNNESS_SCORES:
            raise ValueError(f"unknown knownness score {name!r}; choose from {KNOWNNESS_SCORES}")
        what = "probabilities" if name == "max_softmax" else "logits"
        raise ValueError(
            f"this index's open-set score is the classifier's {name}: pass the classifier {what}"
        )

    def class_gaussians(self) -> ClassGaussians:
        """The ``mahalanobis`` model: fitted on the indexed vectors when first needed."""
        if self.gaussians is None:
            self.gaussians = fit_gaussians(self.vectors(), self.labels, len(self.class_names))
        return self.gaussians

    def calibrate(
        self,
        embeddings: np.ndarray,
        probabilities: np.ndarray | None = None,
        keep: float = DEFAULT_KEEP,
        split: str = "val",
        *,
        logits: np.ndarray | None = None,
        score: str | None = None,
    ) -> float:
        """Set and return the open-set threshold from known-generator videos: the highest
        ``score`` (see :meth:`knownness`) that keeps ``keep`` of them (see
        :func:`calibrate_threshold`). Without ``score``: ``max_softmax`` when the
        classifier's ``probabilities`` (N, K) are given, else ``prototype_cosine`` of the
        embeddings (N, D)."""
        if score is None:
            score = "prototype_cosine" if probabilities is None else "max_softmax"
        known = self.knownness(embeddings, probabilities, logits=logits, score=score)
        return self.calibrate_scores(known, score, keep=keep, split=split)

    def calibrate_scores(
        self, scores: np.ndarray, score: str, keep: float = DEFAULT_KEEP, split: str = "val"
    ) -> float:
        """Set ``threshold_score`` to ``score`` and the threshold from the known videos'
        ``scores`` (N,) of it; returns the threshold."""
        if score not in KNOWNNESS_SCORES:
            raise ValueError(f"unknown knownness score {score!r}; choose from {KNOWNNESS_SCORES}")
        self.threshold_score = score
        self.threshold = calibrate_threshold(scores, keep)
        self.threshold_split = split
        log.info(
            "open-set threshold %.4f (%s, keeps %.0f%% of %d %s videos)",
            self.threshold, score, 100 * keep, len(scores), split,
        )  # fmt: skip
        return self.threshold

    def choose_score(
        self,
        embeddings: np.ndarray,
        labels: np.ndarray,
        *,
        probabilities: np.ndarray | None = None,
        logits: np.ndarray | None = None,
        split: str = "val",
        self_rows: np.ndarray | None = None,
        keep: float = DEFAULT_KEEP,
    ) -> ScoreSelection | None:
        """Choose this index's open-set score from data and calibrate its threshold.

        ``embeddings`` (V, D) and generator ids ``labels`` (V,) are known-generator videos
        (the VALIDATION split), with the classifier's ``probabilities`` / ``logits`` (V, K)
        when its head was trained (else the classifier scores are not candidates).
        :func:`~attribnet.open_set_scores.select_score` runs leave-one-class-out with this
        index's vectors as the reference set; the threshold keeps ``keep`` of the videos
        under the chosen score. For indexed videos as queries, ``self_rows`` (V,) gives
        their rows: each is then scored leave-self-out, in the choice and the threshold.
        When no choice is possible (fewer than two classes among the queries) the score is
        ``prototype_cosine``; returns None then, else the selection.
        """
        reference = Reference(self.vectors(), self.labels, len(self.class_names))
        inputs = {"probabilities": probabilities, "logits": logits}
        self.class_gaussians()
        try:
            selection = select_score(
                reference, embeddings, labels, self.class_names, k=self.knn_k,
                self_rows=self_rows, **inputs,
            )  # fmt: skip
            chosen, note = selection.chosen, ""
        except ValueError as exc:
            selection, chosen, note = None, FALLBACK_SCORE, f"no choice possible: {exc}"
            log.warning("open-set score: %s; using %s", note, chosen)
        self.selection = selection
        self.selection_data = {
            "method": "leave-one-class-out",
            "split": split,
            "videos": int(len(labels)),
            "reference": f"the {self.ntotal} indexed (training) videos",
            "leave_self_out": self_rows is not None,
            "note": note,
        }
        if self_rows is None:
            known = self.knownness(embeddings, score=chosen, **inputs)
        else:
            known = score_videos(
                chosen, reference, embeddings, k=self.knn_k, self_rows=self_rows, **inputs
            )
        self.calibrate_scores(known, chosen, keep=keep, split=split)
        return selection

    def is_unknown(self, scores: np.ndarray) -> np.ndarray:
        """(Q,) knownness scores -> (Q,) bool: below the threshold (all False without one)."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.threshold is None:
            return np.zeros(scores.shape, dtype=bool)
        return scores < self.threshold

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The stored unit vectors of ``rows`` (default all): (n, D) float32."""
        rows = np.arange(self.ntotal) if rows is None else np.asarray(rows, dtype=np.int64)
        index = faiss.index_gpu_to_cpu(self._index) if self.on_gpu else self._index
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.make_direct_map()
        return np.asarray(index.reconstruct_batch(rows), dtype=np.float32)

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

    def meta(self, index_bytes: int = 0) -> dict[str, Any]:
        """The sidecar as a JSON-ready dict."""
        return {
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "embedding_dim": self.embedding_dim,
            "ntotal": self.ntotal,
            "index_bytes": int(index_bytes),
            "index_type": self.kind,
            "metric": "inner_product on L2-normalised vectors (cosine)",
            "nprobe": self.nprobe,
            "nprobe_tuning": None
            if self.nprobe_recall is None
            else {
                "target_recall": TARGET_RECALL,
                f"recall_at_{TUNE_K}": self.nprobe_recall,
                "queries": TUNE_QUERIES,
            },  # fmt: skip
            "checkpoint": {"path": self.checkpoint_path, "sha256": self.checkpoint_sha256},
            "class_names": self.class_names,
            "threshold": {
                "value": self.threshold,
                "score": self.threshold_score,
                "keep": DEFAULT_KEEP,
                "split": self.threshold_split,
            },
            "open_set": self._open_set_meta(),
            "prototype_counts": self.prototype_counts.tolist(),
            "prototypes": self.prototypes.tolist(),
            "labels": self.labels.tolist(),
            "video_ids": self.video_ids,
            "qualities": self.qualities,
        }

    def _open_set_meta(self) -> dict[str, Any]:
        """The ``open_set`` block of the sidecar: k of ``knn_cosine``, how the score was
        chosen (every candidate's AUROC, and on what data), the ``mahalanobis`` file."""
        selection = None
        if self.selection is not None or self.selection_data:
            chosen = self.selection.to_json() if self.selection else {"chosen": None}
            selection = {**self.selection_data, **chosen}
        gaussians = None
        if self.gaussians is not None:
            gaussians = {
                "file": OPEN_SET_FILE,
                "features": "L2-normalised embeddings of the indexed videos",
                "covariance": "shared within-class, Ledoit-Wolf shrinkage",
                "score": "minus the smallest squared Mahalanobis distance to a class mean",
            }
        return {
            "score": self.threshold_score,
            "knn_k": self.knn_k,
            "selection": selection,
            "mahalanobis": gaussians,
        }

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``index.faiss`` and ``meta.json`` into ``folder``; returns the folder.

        With ``mahalanobis`` Gaussians, ``open_set.npz`` holds them. All go to temporary
        files first and are renamed only when all were written, so a failed save leaves a
        previous index in the folder intact.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cpu_index = faiss.index_gpu_to_cpu(self._index) if self.on_gpu else self._index
        with contextlib.ExitStack() as stack:
            index_tmp = stack.enter_context(atomic_path(folder / INDEX_FILE))
            meta_tmp = stack.enter_context(atomic_path(folder / META_FILE))
            if self.gaussians is not None:
                np.savez(stack.enter_context(atomic_path(folder / OPEN_SET_FILE)),
                         **self.gaussians.arrays())  # fmt: skip
            faiss.write_index(cpu_index, str(index_tmp))
            meta = self.meta(index_bytes=index_tmp.stat().st_size)
            meta_tmp.write_text(json.dumps(meta) + "\n")
        log.info("index of %d %s vectors written to %s", self.ntotal, self.kind, folder)
        return folder

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
        if not folder.is_dir():
            raise DataError(f"no index folder at {folder} (build one: python -m attribnet.index)")
        meta = _read_meta(folder / META_FILE)
        cpu_index = _read_faiss(folder / INDEX_FILE, meta)
        try:
            index = cls._from_meta(cpu_index, meta, use_gpu)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{folder / META_FILE}: corrupt index sidecar ({exc!r})") from exc
        index.gaussians = _read_gaussians(folder, meta, len(index.class_names), index.embedding_dim)
        if nprobe is not None:
            index.nprobe = nprobe
        if checkpoint_path is not None:
            _check_checkpoint(index, checkpoint_path, embedding_dim)
        return index

    @classmethod
    def _from_meta(
        cls, cpu_index: faiss.Index, meta: dict[str, Any], use_gpu: bool
    ) -> GeneratorIndex:
        """An index from a read ``index.faiss`` and its parsed sidecar."""
        names, dim = list(meta["class_names"]), int(meta["embedding_dim"])
        open_set = meta.get("open_set") or {}  # absent in indexes of format 1
        chosen = open_set.get("selection") or {}
        labels = np.asarray(meta["labels"], dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"labels outside the class ids 0..{len(names) - 1}")
        return cls(
            cpu_index,
            labels=labels,
            class_names=names,
            video_ids=[str(v) for v in meta["video_ids"]],
            qualities=[str(q) for q in meta["qualities"]],
            prototypes=np.asarray(meta["prototypes"], dtype=np.float32).reshape(len(names), dim),
            prototype_counts=np.asarray(meta["prototype_counts"], dtype=np.int64),
            checkpoint_sha256=str(meta["checkpoint"]["sha256"]),
            checkpoint_path=str(meta["checkpoint"]["path"]),
            threshold=meta["threshold"]["value"],
            threshold_split=str(meta["threshold"].get("split", "")),
            threshold_score=str(meta["threshold"].get("score", "prototype_cosine")),
            nprobe_recall=(meta.get("nprobe_tuning") or {}).get(f"recall_at_{TUNE_K}"),
            use_gpu=use_gpu,
            knn_k=open_set.get("knn_k"),
            selection=ScoreSelection.from_json(chosen) if chosen.get("chosen") else None,
            selection_data={k: v for k, v in chosen.items() if k not in _SELECTION_KEYS},
        )

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
            "threshold": self.threshold,
            "threshold_score": self.threshold_score,
            "threshold_split": self.threshold_split,
            "open_set_auroc": self.selection.mean_auroc if self.selection else None,
            "checkpoint": self.checkpoint_path,
            "checkpoint_sha256": self.checkpoint_sha256,
        }


def _read_meta(path: Path) -> dict[str, Any]:
    """Parse and sanity-check ``meta.json``; DataError naming the file otherwise."""
    if not path.is_file():
        raise DataError(f"{path}: missing (not an index folder, or an interrupted build)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: corrupt index sidecar, not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or any(k not in meta for k in _META_KEYS):
        missing = [k for k in _META_KEYS if not isinstance(meta, dict) or k not in meta]
        raise DataError(f"{path}: corrupt index sidecar, missing keys {missing}")
    if meta["format_version"] not in READABLE_FORMATS:
        raise DataError(
            f"{path}: index format {meta['format_version']}, this attribnet reads "
            f"{' and '.join(map(str, READABLE_FORMATS))}; rebuild the index"
        )
    n = meta["ntotal"]
    lengths = {k: len(meta[k]) for k in ("labels", "video_ids", "qualities")}
    if any(v != n for v in lengths.values()):
        raise DataError(f"{path}: corrupt index sidecar, {lengths} rows for {n} vectors")
    return meta


def _read_faiss(path: Path, meta: dict[str, Any]) -> faiss.Index:
    """Read ``index.faiss`` and check it against the sidecar; DataError naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: missing (an interrupted build?); rebuild the index")
    size = path.stat().st_size
    if meta["index_bytes"] and size != meta["index_bytes"]:
        raise DataError(
            f"{path}: truncated or replaced ({size} bytes, {META_FILE} expects "
            f"{meta['index_bytes']}); rebuild the index"
        )
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise DataError(f"{path}: corrupt FAISS index ({_faiss_reason(exc)})") from exc
    if index.ntotal != meta["ntotal"] or index.d != meta["embedding_dim"]:
        raise DataError(
            f"{path}: holds {index.ntotal} vectors of dim {index.d}, {META_FILE} describes "
            f"{meta['ntotal']} of dim {meta['embedding_dim']}; rebuild the index"
        )
    return index


def _read_gaussians(
    folder: Path, meta: dict[str, Any], num_classes: int, dim: int
) -> ClassGaussians | None:
    """The ``mahalanobis`` Gaussians the sidecar names (None when it names none);
    DataError naming ``open_set.npz`` when it is missing, unreadable or the wrong shape."""
    if not (meta.get("open_set") or {}).get("mahalanobis"):
        return None
    path = folder / OPEN_SET_FILE
    try:
        with np.load(path) as data:
            gaussians = ClassGaussians(data["means"], data["precision"], data["counts"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: missing or corrupt ({exc}); rebuild the index") from exc
    shapes = (gaussians.means.shape, gaussians.precision.shape, gaussians.counts.shape)
    if shapes != ((num_classes, dim), (dim, dim), (num_classes,)):
        raise DataError(f"{path}: arrays of shapes {shapes} for {num_classes} classes of dim {dim}")
    return gaussians


def _faiss_reason(exc: BaseException) -> str:
    """FAISS's error text without its C++ location prefix, on one line."""
    text = " ".join(str(exc).split())
    return re.split(r"\.cpp:\d+: ", text)[-1] or type(exc).__name__


def _check_checkpoint(
    index: GeneratorIndex, checkpoint_path: str | os.PathLike[str], embedding_dim: int | None
) -> None:
    """IndexMismatchError unless the checkpoint is the index's (dim, then sha256)."""
    from attribnet.checkpoint import file_sha256, read_checkpoint

    path = Path(checkpoint_path)
    path = path / "best.pt" if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if embedding_dim is None:
        args = read_checkpoint(path)["args"]
        embedding_dim = int(args.get("model", {}).get("embedding_dim", 0))
    index.check_compatible(
        embedding_dim=embedding_dim, checkpoint_sha256=file_sha256(path), checkpoint_path=path
    )


# ----------------------------------------------------------------------------- build for a run


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or ``<run dir>/best.pt`` for a run folder."""
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


def _training_rows(
    recipe: Recipe, manifest: str | os.PathLike[str] | None
) -> tuple[FaceCache, list[tuple[CacheEntry, ManifestRow]]]:
    """(cache, [(entry, row)]) for the videos to index and calibrate on.

    Without ``manifest``: the recipe's cached videos (:func:`recipe_videos`). With one: its
    rows (split by source_id when unsplit), preprocessed into the cache first when missing.
    """
    from attribnet.data.sources import (
        preprocess_rows,
        read_rows,
        recipe_cache_dir,
        recipe_videos,
        with_rows,
    )

    if manifest is None:
        cache, entries = recipe_videos(recipe)
    else:
        rows = read_rows(manifest, recipe.train.seed)
        cache = preprocess_rows(rows, recipe_cache_dir(recipe), recipe)
        entries = with_rows(cache, rows)
    return cache, [(e, e.row) for e in entries]


def _split_videos(
    pairs: list[tuple[CacheEntry, ManifestRow]],
    split: str,
    qualities: Sequence[str],
    class_names: Sequence[str],
    t: int,
) -> tuple[list[CacheEntry], list[int], list[ManifestRow]]:
    """Entries, generator ids and rows of one split: known classes, the given qualities
    (all when empty), at least ``t`` cached frames (shorter ones are left out, as training
    leaves them out, with a warning)."""
    chosen = [
        (e, r)
        for e, r in pairs
        if r.split == split and r.label in class_names and (not qualities or r.quality in qualities)
    ]
    usable = [(e, r) for e, r in chosen if e.num_frames >= t]
    if len(usable) < len(chosen):
        log.warning("%s split: leaving out %d video(s) shorter than %d frames",
                    split, len(chosen) - len(usable), t)  # fmt: skip
    return (
        [e for e, _ in usable],
        [list(class_names).index(r.label) for _, r in usable],
        [r for _, r in usable],
    )


def build_index_for_run(
    checkpoint_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    manifest: str | os.PathLike[str] | None = None,
    *,
    max_clips: int = DEFAULT_MAX_CLIPS,
    ivf_threshold: int = DEFAULT_IVF_THRESHOLD,
    nprobe: int | None = None,
    device: torch.device | None = None,
) -> Path:
    """Build and save the generator index of a trained model; returns ``out_dir``.

    Embeds the TRAIN split (the recipe's ``train_qualities``) into the index and calibrates
    the open-set threshold on the VAL split (``eval_qualities``); videos of classes the
    model does not know are left out. Data: the recipe's face cache, or ``manifest``'s rows.
    """
    from attribnet.checkpoint import file_sha256, load_model

    path = resolve_checkpoint(checkpoint_path)
    model, recipe, names, _ = load_model(path)
    if not model.embedding_dim:
        raise CheckpointError(
            f"{path}: the model has no embedding head (model.embedding_dim is 0); "
            "train with model.embedding_dim > 0 to build an index"
        )
    cache, pairs = _training_rows(recipe, manifest)
    data = recipe.data
    entries, labels, rows = _split_videos(
        pairs, "train", data.train_qualities, names, data.num_frames
    )
    if not entries:
        raise DataError(f"no training videos of classes {names} in cache {cache.root}")
    device = device or default_device()
    kwargs = {"max_clips": max_clips, "device": device, "progress": True}
    log.info("embedding %d training videos for the index", len(entries))
    train = video_embeddings(model, recipe, cache, entries, labels, **kwargs)
    index = GeneratorIndex.build(
        train.embeddings,
        np.asarray(labels),
        names,
        video_ids=[r.video_id for r in rows],
        qualities=[r.quality for r in rows],
        checkpoint_sha256=file_sha256(path),
        checkpoint_path=str(path),
        ivf_threshold=ivf_threshold,
        nprobe=nprobe,
    )
    val_entries, val_labels, _ = _split_videos(
        pairs, "val", data.eval_qualities, names, data.num_frames
    )
    classifier = recipe.loss.ce_weight > 0  # else the classifier head was never trained
    if val_entries:
        val = video_embeddings(model, recipe, cache, val_entries, val_labels, **kwargs)
        _choose_score(index, val, val_labels, classifier, split="val")
    else:
        log.warning("no validation videos: open-set score chosen and calibrated on the TRAIN "
                    "split, each video scored leave-self-out")  # fmt: skip
        _choose_score(index, train, labels, classifier, split="train")
    return index.save(out_dir)


def _choose_score(
    index: GeneratorIndex,
    videos: VideoEmbeddings,
    labels: Sequence[int],
    classifier: bool,
    split: str,
) -> None:
    """:meth:`GeneratorIndex.choose_score` on ``videos`` of ``split`` (the indexed training
    videos themselves, in index order, when ``split`` is ``train``); the classifier scores
    are candidates only when ``classifier`` (its head was trained)."""
    index.choose_score(
        videos.embeddings,
        np.asarray(labels, dtype=np.int64),
        probabilities=videos.probabilities if classifier else None,
        logits=videos.logits if classifier else None,
        split=split,
        self_rows=np.arange(len(labels)) if split == "train" else None,
    )


# ----------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ConfigErrors (one line, exit code 2)."""

    def error(self, message: str) -> Any:
        from attribnet.errors import ConfigError

        raise ConfigError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m attribnet.index``."""
    parser = _Parser(prog="python -m attribnet.index", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    build = sub.add_parser("build", help="embed a run's training videos into an index")
    build.add_argument("--checkpoint", required=True, help="<run>/best.pt or a run folder")
    build.add_argument("--out", required=True, help="index folder, e.g. indexes/<name>")
    build.add_argument("--manifest", help="index these rows instead of the recipe's cache")
    build.add_argument("--max-clips", type=int, default=DEFAULT_MAX_CLIPS)
    build.add_argument("--ivf-threshold", type=int, default=DEFAULT_IVF_THRESHOLD)
    build.add_argument(
        "--nprobe", type=int, default=None,
        help="IVF lists searched (default: tuned to recall@10 >= 0.95 at build time)",
    )  # fmt: skip
    info = sub.add_parser("info", help="summarise an index folder")
    info.add_argument("folder", help="index folder")
    info.add_argument("--checkpoint", help="also check that this checkpoint matches")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.command == "build":
        out = build_index_for_run(
            args.checkpoint,
            args.out,
            args.manifest,
            max_clips=args.max_clips,
            ivf_threshold=args.ivf_threshold,
            nprobe=args.nprobe,
        )
        print(f"index written to {out}")
        return
    index = GeneratorIndex.load(args.folder, args.checkpoint)
    print(json.dumps(index.info(), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 done, 2 a user error (one line on stderr)."""
    from attribnet.logs import setup_logging

    try:
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose)
        _run(args)
    except (AttribnetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
