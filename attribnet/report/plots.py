"""Confusion matrices, heatmaps and t-SNE plots as PNG (matplotlib Agg), each written
atomically (temp file + rename)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attribnet.files.atomic import atomic_path

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
MAX_TSNE_POINTS = 2000
MIN_TSNE_POINTS = 5


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    pyplot().close(fig)
    return path


def colours(n: int) -> list[Any]:
    """``n`` distinct colours: tab10, tab20, else samples of a cyclic colormap."""
    import matplotlib

    name = "tab10" if n <= 10 else "tab20" if n <= 20 else "hsv"
    cmap = matplotlib.colormaps[name]
    return [cmap(i) if n <= 20 else cmap(i / n) for i in range(n)]


def plot_confusion(
    matrix: Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str,
) -> Path:
    """Confusion matrix (K, K) counts, rows = true, columns = predicted, as a PNG: colour =
    row-normalised rate (recall on the diagonal), text = count."""
    plt = pyplot()
    counts = np.asarray(matrix, dtype=np.int64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    side = 2.5 + 0.7 * k
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    for i in range(k):
        for j in range(k):
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_heatmap(
    values: Sequence[Sequence[float | None]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | os.PathLike[str],
    title: str,
    xlabel: str = "test",
    ylabel: str = "train",
) -> Path:
    """A (R, C) table of values in [0, 1] (None shown blank) as an annotated heatmap PNG."""
    plt = pyplot()
    grid = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    rows, cols = grid.shape
    fig, ax = plt.subplots(figsize=(3.5 + 1.1 * cols, 2.0 + 0.8 * rows))
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for i in range(rows):
        for j in range(cols):
            if np.isfinite(grid[i, j]):
                colour = "black" if grid[i, j] > 0.6 else "white"
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color=colour)
    ax.set_xticks(range(cols), labels=list(col_labels))
    ax.set_yticks(range(rows), labels=list(row_labels))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def tsne_points(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE of (N, D) embeddings -> (N, 2); perplexity min(30, (N - 1) / 3), at least 2,
    so that small sets work. Deterministic for a given ``seed``."""
    from sklearn.manifold import TSNE

    n = len(embeddings)
    perplexity = float(max(2.0, min(30.0, (n - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(np.asarray(embeddings, dtype=np.float32))


def plot_tsne(
    embeddings: np.ndarray,
    true_ids: np.ndarray,
    true_names: Sequence[str],
    pred_ids: np.ndarray,
    pred_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str,
    seed: int = 0,
) -> Path | None:
    """t-SNE scatter of (N, D) embeddings: colour = predicted class (ids into
    ``pred_names``), marker = true class (ids into ``true_names``, which may add classes
    the model does not know, e.g. ``unknown``). At most ``MAX_TSNE_POINTS`` points (a
    seeded subsample); None (nothing written) with fewer than ``MIN_TSNE_POINTS``."""
    n = len(embeddings)
    if n < MIN_TSNE_POINTS:
        return None
    keep = np.arange(n)
    if n > MAX_TSNE_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(n, MAX_TSNE_POINTS, replace=False))
    xy = tsne_points(embeddings[keep], seed)
    true_ids, pred_ids = np.asarray(true_ids)[keep], np.asarray(pred_ids)[keep]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 7))
    palette = colours(len(pred_names))
    for t in range(len(true_names)):
        for p in range(len(pred_names)):
            mask = (true_ids == t) & (pred_ids == p)
            if mask.any():
                ax.scatter(
                    *xy[mask].T,
                    s=22,
                    alpha=0.75,
                    color=palette[p],
                    marker=MARKERS[t % len(MARKERS)],
                    edgecolors="none",
                )
    _tsne_legend(ax, true_names, pred_names, palette, set(true_ids.tolist()))
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, path)


def _tsne_legend(
    ax: Any,
    true_names: Sequence[str],
    pred_names: Sequence[str],
    palette: Sequence[Any],
    present: set[int],
) -> None:
    """Two legends: colour = predicted class, marker = true class (present ones only)."""
    from matplotlib.lines import Line2D

    colour_handles = [
        Line2D([], [], marker="o", linestyle="", color=palette[p], label=name)
        for p, name in enumerate(pred_names)
    ]
    marker_handles = [
        Line2D([], [], marker=MARKERS[t % len(MARKERS)], linestyle="", color="grey", label=name)
        for t, name in enumerate(true_names)
        if t in present
    ]
    # outside the axes, right of the plot, so that no legend hides points
    first = ax.legend(
        handles=colour_handles,
        title="predicted",
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=8,
    )
    ax.add_artist(first)
    ax.legend(
        handles=marker_handles,
        title="true",
        loc="lower left",
        bbox_to_anchor=(1.02, 0.0),
        fontsize=8,
    )
