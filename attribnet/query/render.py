"""How query results are shown: plain-text tables of the per-video records and of the
clusters, and a 2-D PCA plot (PNG) of the indexed and the query embeddings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attribnet.report import colours, pyplot, save_figure

if TYPE_CHECKING:
    from attribnet.index import GeneratorIndex

MAX_PLOT_POINTS = 5000


def format_table(records: Sequence[dict[str, Any]], width: int = 40) -> str:
    """A plain-text table of query records, one line per video; failed videos come last,
    each with its reason."""
    header = ("video", "verdict", "k-NN (conf)", "classifier (p)", "score/thr", "nearest (cos)")
    lines = [header]
    failed = []
    for r in records:
        video = _shorten(r["video"], width)
        if r["status"] != "ok":
            failed.append((video, r["reason"]))
            continue
        cls = r.get("classifier")
        thr = r["threshold"]
        top = r["neighbors"][0] if r["neighbors"] else None
        lines.append(
            (
                video,
                r["verdict"],
                f"{r['knn']['generator']} ({r['knn']['confidence']:.2f})",
                f"{cls['generator']} ({cls['probability']:.2f})" if cls else "-",
                f"{r['score']:.3f}/{thr:.3f}" if thr is not None else f"{r['score']:.3f}/-",
                f"{top['generator']} ({top['similarity']:.3f})" if top else "-",
            )
        )
    table = _columns(lines)
    first = max(len(line[0]) for line in lines)
    return "\n".join([table, *(f"{v.ljust(first)}  FAILED: {why}" for v, why in failed)])


def format_clusters(clusters: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`~attribnet.query.cluster.describe_clusters` output."""
    lines = [("cluster", "size", "unknown", "nearest known", "mean cos", "spread")]
    for c in clusters:
        lines.append(
            (
                f"c{c['cluster']}",
                str(c["size"]),
                str(c["unknown"]),
                c["nearest_generator"],
                f"{c['mean_similarity']:.3f}",
                f"{c['spread']:.3f}",
            )
        )
    return _columns(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _columns(lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
           for line in lines]  # fmt: skip
    return "\n".join(out)


def plot_embeddings(
    index: GeneratorIndex,
    query_embeddings: np.ndarray,
    out_path: str | os.PathLike[str],
    clusters: np.ndarray | None = None,
    max_points: int = MAX_PLOT_POINTS,
    seed: int = 0,
) -> Path:
    """PCA to 2-D of indexed (coloured by generator, up to ``max_points``) and query (black,
    labelled by cluster) embeddings; saved as PNG at ``out_path`` (Agg backend)."""
    from sklearn.decomposition import PCA

    plt = pyplot()

    rng = np.random.default_rng(seed)
    rows = np.arange(index.ntotal)
    if len(rows) > max_points:
        rows = np.sort(rng.choice(rows, max_points, replace=False))
    known = index.vectors(rows)
    queries = np.asarray(query_embeddings, dtype=np.float32).reshape(-1, index.embedding_dim)
    points = np.concatenate([known, queries])
    pca = PCA(n_components=2, random_state=seed).fit(points) if len(points) > 2 else None
    xy = pca.transform(points) if pca is not None else np.zeros((len(points), 2))
    fig, ax = plt.subplots(figsize=(9.5, 7))
    _scatter_known(ax, index, xy[: len(known)], index.labels[rows])
    _scatter_queries(ax, xy[len(known) :], clusters)
    ax.set_title(f"generator embeddings (PCA): {len(known)} indexed, {len(queries)} queries")
    # outside the axes, so that the legend hides no points
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, markerscale=1.5)
    fig.tight_layout()
    return save_figure(fig, out_path)


def _scatter_known(ax: Any, index: GeneratorIndex, xy: np.ndarray, labels: np.ndarray) -> None:
    palette = colours(len(index.class_names))
    for c, name in enumerate(index.class_names):
        mask = labels == c
        if mask.any():
            ax.scatter(*xy[mask].T, s=8, alpha=0.4, color=palette[c], label=name)


def _scatter_queries(ax: Any, xy: np.ndarray, clusters: np.ndarray | None) -> None:
    if not len(xy):
        return
    ax.scatter(*xy.T, s=50, marker="X", color="black", label="queries")
    if clusters is None:
        return
    for (x, y), c in zip(xy, clusters, strict=True):
        ax.annotate(f"c{c}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
