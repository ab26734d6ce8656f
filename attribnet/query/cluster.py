"""The query videos grouped into candidate generators.

Average-linkage agglomerative clustering on cosine distance, cut at a distance threshold;
by default (:func:`default_cluster_threshold`) twice the 95th percentile of the indexed
videos' cosine distance to their own class prototype, i.e. as wide as a known class
spreads, within [0.05, 1]. Each group is described by :func:`describe_clusters`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from attribnet.index import GeneratorIndex


def default_cluster_threshold(index: GeneratorIndex) -> float:
    """Cosine-distance cut for clustering, in [0.05, 1]: twice the 95th percentile of the
    indexed videos' cosine distance to their own class prototype. 95% of a known class
    lies within that distance of its prototype, so two of its videos lie within about
    twice that of each other."""
    vectors = index.vectors()
    distance = 1.0 - np.einsum("nd,nd->n", vectors, index.prototypes[index.labels])
    return float(np.clip(2.0 * np.percentile(distance, 95), 0.05, 1.0))


def cluster_embeddings(embeddings: np.ndarray, distance_threshold: float) -> np.ndarray:
    """Group unit embeddings (N, D) -> cluster ids (N,) int64, 0..C-1, largest group first.

    Average-linkage agglomerative clustering on cosine distance, merging while the mean
    distance between two groups is below ``distance_threshold``.
    """
    from sklearn.cluster import AgglomerativeClustering

    n = len(embeddings)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    raw = AgglomerativeClustering(
        n_clusters=None,
        metric="cosine",
        linkage="average",
        distance_threshold=distance_threshold,
    ).fit_predict(np.asarray(embeddings, dtype=np.float64))
    sizes = np.bincount(raw)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[raw].astype(np.int64)


def describe_clusters(
    index: GeneratorIndex,
    embeddings: np.ndarray,
    clusters: np.ndarray,
    video_ids: Sequence[str],
    is_unknown: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Per cluster: id, size, members, how many were flagged unknown, the nearest known
    generator (the prototype nearest to the group's mean direction), the members' mean
    cosine to that prototype, and the spread (mean pairwise cosine distance, 0 for one)."""
    from attribnet.metrics.vectors import l2_normalize

    x = l2_normalize(embeddings)
    flagged = np.zeros(len(x), bool) if is_unknown is None else np.asarray(is_unknown, bool)
    out = []
    for c in range(int(clusters.max()) + 1 if len(clusters) else 0):
        members = np.flatnonzero(clusters == c)
        group = x[members]
        centre = l2_normalize(group.mean(axis=0, keepdims=True))
        nearest = int(index.prototype_predict(centre)[0][0])
        out.append(
            {
                "cluster": c,
                "size": int(len(members)),
                "unknown": int(flagged[members].sum()),
                "nearest_generator": index.class_names[nearest],
                "mean_similarity": float((group @ index.prototypes[nearest]).mean()),
                "spread": _spread(group),
                "videos": [video_ids[i] for i in members],
            }
        )
    return out


def _spread(group: np.ndarray) -> float:
    """Mean pairwise cosine distance of unit vectors (n, D); 0 for n < 2."""
    n = len(group)
    if n < 2:
        return 0.0
    sims = group @ group.T
    return float((1.0 - sims[~np.eye(n, dtype=bool)]).mean())
