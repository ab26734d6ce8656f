"""Evaluation outputs: confusion matrices, heatmaps and t-SNE plots (PNG, matplotlib Agg),
CSV tables, and the ``report.md`` of each ``python -m attribnet.evaluate`` command.

Every file is written atomically (temp file + rename). Numbers come in as the JSON-ready
``metrics`` dicts of :mod:`attribnet.evaluate` (undefined values are ``None``) and are
shown with three decimals; ``-`` marks an undefined value (e.g. the accuracy of a class
without test videos).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attribnet.atomic import atomic_path, write_text

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
MAX_TSNE_POINTS = 2000
MIN_TSNE_POINTS = 5


# ----------------------------------------------------------------------------- basics


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


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` decimals, ``-`` for None/NaN, else ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; cells go through :func:`fmt`."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(
    path: str | os.PathLike[str], header: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Path:
    """Write a CSV table atomically (None -> empty cell, floats at full precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if c is None else c for c in row] for row in rows])
    write_text(path, buffer.getvalue())
    return Path(path)


# ----------------------------------------------------------------------------- plots


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


def confusion_csv(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | os.PathLike[str]
) -> Path:
    """Confusion matrix (K, K) as CSV: header ``true\\predicted,<names>``, one row per true
    class."""
    rows = [[name, *map(int, row)] for name, row in zip(class_names, matrix, strict=True)]
    return write_csv(path, ["true\\predicted", *class_names], rows)


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


# ----------------------------------------------------------------------------- evaluate run


def _level_rows(closed: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for level, unit in (("clip", "clips"), ("video", "videos")):
        r = closed[level]
        rows.append([level, r["accuracy"], r["macro_f1"], f"{sum(r['support'].values())} {unit}"])
    return rows


def _per_class_table(closed: dict[str, Any]) -> str:
    """Rows = classes + Overall + macro-F1; columns = clip, video, video per quality."""
    names = closed["clip"]["class_names"]
    columns = [("clip", closed["clip"]), ("video", closed["video"])]
    for quality, levels in closed.get("per_quality", {}).items():
        columns.append((f"video {quality or '(none)'}", levels["video"]))
    rows = [[name, *(r["per_class_accuracy"][name] for _, r in columns)] for name in names]
    rows.append(["**Overall**", *(r["accuracy"] for _, r in columns)])
    rows.append(["macro-F1", *(r["macro_f1"] for _, r in columns)])
    rows.append(["clips / videos", *(sum(r["support"].values()) for _, r in columns)])
    return md_table(["class", *(c for c, _ in columns)], rows)


def _images(files: dict[str, str], prefix: str) -> list[str]:
    out = []
    for key, name in files.items():
        if key.startswith(prefix) and name.endswith(".png"):
            csv_name = files.get(key + "_csv")
            link = f" ([CSV]({csv_name}))" if csv_name else ""
            out.append(f"**{key}**{link}\n\n![{key}]({name})\n")
    return out


def _embedding_section(emb: dict[str, Any]) -> list[str]:
    lines = ["## Embedding-space protocols", ""]
    if "skipped" in emb:
        return [*lines, f"Skipped: {emb['skipped']}.", ""]
    lines.append(
        f"Classifiers fit on the **validation** embeddings and scored on the test embeddings "
        f"(kNN with cosine distance, k = {emb['clip']['knn_k']} at clip level, "
        f"{emb['video']['knn_k']} at video level; logistic regression; linear SVM)."
    )
    rows = []
    for name in ("knn", "logreg", "linear_svm"):
        c, v = emb["clip"][name], emb["video"][name]
        rows.append([name, c["accuracy"], c["macro_f1"], v["accuracy"], v["macro_f1"]])
    header = ["protocol", "clip accuracy", "clip macro-F1", "video accuracy", "video macro-F1"]
    lines += ["", md_table(header, rows), ""]
    if "index" in emb:
        idx = emb["index"]
        lines.append(
            f"Generator index `{idx['path']}` (training videos): kNN (k = {idx['k']}) video "
            f"accuracy {fmt(idx['knn_accuracy'])}, nearest-prototype video accuracy "
            f"{fmt(idx['prototype_accuracy'])}."
        )
        lines.append("")
    return lines


def _detection_section(det: dict[str, Any]) -> list[str]:
    lines = ["## Detection (real vs fake)", ""]
    if "skipped" in det:
        return [*lines, f"Skipped: {det['skipped']}.", ""]
    lines.append(
        "Score = 1 - p(real); threshold chosen on the validation split at FPR <= "
        f"{fmt(det['target_fpr'], 2)} and applied to test."
    )
    keys = ("threshold", "val_fpr", "val_tpr", "test_auc", "test_fpr", "test_fnr", "test_hter")
    rows = [[level, *(det[level][k] for k in keys)] for level in ("clip", "video")]
    return [*lines, "", md_table(["level", *keys], rows), ""]


def _open_set_section(ops: dict[str, Any]) -> list[str]:
    lines = [
        "## Open set (unseen generators)",
        "",
        f"{ops['known_videos']} known test videos vs {ops['unknown_videos']} videos of unseen "
        f"generators ({', '.join(ops['unknown_labels'])}), at video level. Knownness scores "
        "(higher = more known): `max_softmax` (largest class probability), `energy` "
        "(log-sum-exp of the logits), `knn_cosine` (cosine to the k-th nearest training "
        "embedding), `prototype_cosine` (max cosine to the class prototypes), `mahalanobis` "
        "(minus the smallest Mahalanobis distance to a class mean, shared covariance). "
        f"Primary (the score the index chose for its unknown verdict): **{ops['primary']}**.",
        "",
    ]
    choice = ops.get("index_choice")
    if choice and choice.get("mean_auroc"):
        auroc = ", ".join(f"{k} {fmt(v)}" for k, v in choice["mean_auroc"].items())
        lines += [
            f"The index chose it by leave-one-class-out AUROC on its known classes: {auroc}.",
            "",
        ]
    keys = ("auroc", "oscr", "tnr_at_95tpr", "threshold_at_95tpr", "known_accuracy")
    rows = [[score, *(ops[score][k] for k in keys)] for score in ops["scores"]]
    return [*lines, md_table(["knownness", *keys], rows), ""]


def _run_baseline_lines(baseline: dict[str, Any] | None) -> list[str]:
    """One line: the non-deep baseline's video accuracy on the same videos."""
    if not baseline:
        return []
    if "skipped" in baseline:
        return [f"Baseline (DFT spectrum) skipped: {baseline['skipped']}.", ""]
    r = baseline["tests"]["test"]
    return [
        f"Baseline on the same videos ({baseline['name']}, fit on the "
        f"{baseline['train_videos']} training videos): video accuracy {fmt(r['accuracy'])}, "
        f"macro-F1 {fmt(r['macro_f1'])}.",
        "",
    ]


def run_markdown(metrics: dict[str, Any]) -> str:
    """The ``report.md`` of ``evaluate run`` from its metrics (file names relative)."""
    ck, data, closed = metrics["checkpoint"], metrics["data"], metrics["closed_set"]
    files = metrics["files"]
    lines = [
        f"# Attribution evaluation: {ck['recipe_name']}",
        "",
        f"- checkpoint: `{ck['path']}` (epoch {ck['epoch']}, sha256 {ck['sha256'][:12]})",
        f"- data: split `{data['split']}`, qualities {', '.join(data['qualities']) or '-'}; "
        f"{data['videos']} videos, {data['clips']} clips "
        f"(up to {data['clips_per_video']} per video, "
        f"{data['num_frames']} frames, {data['sampling']} sampling, no augmentation); "
        f"cache `{data['cache']}`",
        f"- prediction: {metrics['prediction']}; video level = mean of clip probabilities",
        "",
        "## Closed-set attribution",
        "",
        md_table(["level", "accuracy", "macro-F1", "test set"], _level_rows(closed)),
        "",
        *_run_baseline_lines(metrics.get("baseline")),
        "### Per-class accuracy",
        "",
        _per_class_table(closed),
        "",
        "### Confusion matrices",
        "",
        *_images(files, "confusion"),
    ]
    if "embedding" in metrics:
        lines += _embedding_section(metrics["embedding"])
    if "detection" in metrics:
        lines += _detection_section(metrics["detection"])
    if "open_set" in metrics:
        lines += _open_set_section(metrics["open_set"])
    if "tsne" in files:
        lines += ["## t-SNE of test embeddings", "", f"![t-SNE]({files['tsne']})", ""]
    lines += ["All numbers: [metrics.json](metrics.json).", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- cross-quality


def cross_quality_rows(metrics: dict[str, Any], level: str) -> list[list[Any]]:
    """Long table: one row per (train, test) cell with per-class accuracy, overall, F1."""
    names = metrics["class_names"]
    rows = []
    for train, cells in metrics["cells"].items():
        for test, cell in cells.items():
            r = cell[level]
            rows.append(
                [
                    train,
                    test,
                    *(r["per_class_accuracy"][n] for n in names),
                    r["accuracy"],
                    r["macro_f1"],
                    sum(r["support"].values()),
                ]
            )
    return rows


def cross_quality_header(metrics: dict[str, Any]) -> list[str]:
    """Header of :func:`cross_quality_rows`."""
    return ["train", "test", *metrics["class_names"], "overall", "macro_f1", "count"]


def _cell_confusion_section(metrics: dict[str, Any]) -> list[str]:
    """Links to the confusion matrix (PNG, CSV) of every train -> test cell."""
    files = metrics["files"].get("confusion")
    if not files:
        return []
    tests = metrics["test_qualities"]
    rows = [
        [row, *(f"[PNG]({files[row][q]['png']}), [CSV]({files[row][q]['csv']})" for q in tests)]
        for row in metrics["train_rows"]
    ]
    return [
        "## Confusion matrices per cell (video level)",
        "",
        "Rows of each matrix = true class, columns = predicted class.",
        "",
        md_table(["train \\ test", *tests], rows),
        "",
    ]


def drop_cell(drop: dict[str, Any] | None) -> str:
    """A :func:`attribnet.metrics.paired_accuracy_drop` in points: ``drop [low, high]``;
    ``-`` for none (a diagonal cell)."""
    if drop is None:
        return "-"
    return f"{100 * drop['drop']:.1f} [{100 * drop['low']:.1f}, {100 * drop['high']:.1f}]"


def _drops_section(metrics: dict[str, Any]) -> list[str]:
    """Per row, each cell's video-level drop from the row's diagonal with its interval."""
    drops = {row: cells for row, cells in (metrics.get("drops") or {}).items() if cells}
    if not drops:
        return []
    tests = metrics["test_qualities"]
    first = next(d for cells in drops.values() for d in cells.values())
    return [
        "## Drop from the training quality (video level, points)",
        "",
        "Accuracy on the row's own quality minus accuracy on the column's, on the same test "
        f"videos, with a {100 * first['confidence']:.0f}% paired bootstrap interval that "
        f"resamples source groups ({first['videos']} videos in {first['groups']} groups). "
        "Positive = worse than on the training quality.",
        "",
        md_table(
            ["train \\ test", *tests],
            [[row, *(drop_cell(cells.get(q)) for q in tests)] for row, cells in drops.items()],
        ),
        "",
    ]


def _training_section(metrics: dict[str, Any]) -> list[str]:
    """How many trainings were run or reused, from which recipe and overrides."""
    training = metrics.get("training")
    if training is None:
        return []
    lines = ["## Training", ""]
    if not training["runs"]:
        return [*lines, "No training: the models were given with `--checkpoints`.", ""]
    counts = training["counts"]
    overrides = ", ".join(f"`{o}`" for o in training["overrides"]) or "none"
    lines.append(
        f"{len(training['runs'])} training run(s) of recipe `{training['recipe']}`, `--set` "
        f"overrides: {overrides}. Trained from scratch: {counts['trained']}, resumed: "
        f"{counts['resumed']}, reused (finished before, not retrained): {counts['reused']}."
    )
    rows = []
    for row, run in training["runs"].items():
        action = run["action"]
        if run["differs"]:
            action += f" (trained with other {', '.join(run['differs'])})"
        changes = ", ".join(f"`{c}`" for c in run["recipe_changes"]) or "-"
        rows.append([row, f"`{run['run_dir']}`", action, changes])
    header = ["train row", "run", "done", "the row's changes to the recipe"]
    return [*lines, "", md_table(header, rows), ""]


def _baseline_section(metrics: dict[str, Any], header: list[str]) -> list[str]:
    """The non-deep baseline's video-level matrix, fit on each row's training videos."""
    baseline = metrics.get("baseline")
    if not baseline:
        return []
    rows = zip(metrics["train_rows"], baseline["matrix"]["video"], strict=True)
    return [
        f"## Baseline: {baseline['name']}, video-level accuracy",
        "",
        "Fit on the same training videos as each row's model, tested on the same videos. A "
        "model below it has not learnt more than the spectrum's traces.",
        "",
        md_table(header, [[r, *m] for r, m in rows]),
        "",
    ]


def cross_quality_markdown(metrics: dict[str, Any]) -> str:
    """The ``report.md`` of ``evaluate cross-quality``."""
    tests, rows = metrics["test_qualities"], metrics["train_rows"]
    header = ["train \\ test", *tests]
    lines = [
        "# Cross-quality attribution (train quality -> test quality)",
        "",
        f"Mode: `{metrics['train_mode']}`. Each cell: accuracy on the test split of the column's "
        f"quality, up to {metrics['clips_per_video']} clips per video, video level = mean of clip "
        "probabilities.",
        "",
        "## Video-level accuracy",
        "",
        md_table(header, [[r, *m] for r, m in zip(rows, metrics["matrix"]["video"], strict=True)]),
        "",
        f"![cross-quality heatmap]({metrics['files']['heatmap']})",
        "",
        *_baseline_section(metrics, header),
        "## Clip-level accuracy",
        "",
        md_table(header, [[r, *m] for r, m in zip(rows, metrics["matrix"]["clip"], strict=True)]),
        "",
        "## Per-class video-level accuracy",
        "",
        md_table(cross_quality_header(metrics), cross_quality_rows(metrics, "video")),
        "",
        *_drops_section(metrics),
        *_cell_confusion_section(metrics),
        *_training_section(metrics),
        "Checkpoints: " + ", ".join(f"{r} = `{p}`" for r, p in metrics["checkpoints"].items()),
        "",
        f"Tables: [CSV]({metrics['files']['csv']}), [metrics.json](metrics.json).",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- ablations


def ablation_rows(metrics: dict[str, Any], level: str) -> list[list[Any]]:
    """One row per recipe: attention settings, per-class accuracy, overall, macro-F1."""
    names = metrics["class_names"]
    rows = []
    for entry in metrics["recipes"]:
        m, r = entry["model"], entry[level]
        rows.append(
            [
                entry["name"],
                m["sam"],
                m["channel_attention"],
                m["fusion"],
                *(r["per_class_accuracy"][n] for n in names),
                r["accuracy"],
                r["macro_f1"],
            ]
        )
    baseline = metrics.get("baseline")
    if baseline and level == "video":
        r = baseline["video"]
        rows.append(
            [
                baseline["name"],
                "-",
                "-",
                "-",
                *(r["per_class_accuracy"][n] for n in names),
                r["accuracy"],
                r["macro_f1"],
            ]
        )
    return rows


def ablation_header(metrics: dict[str, Any]) -> list[str]:
    """Header of :func:`ablation_rows`."""
    return [
        "recipe",
        "sam",
        "channel_attention",
        "fusion",
        *metrics["class_names"],
        "overall",
        "macro_f1",
    ]


def ablations_markdown(metrics: dict[str, Any]) -> str:
    """The ``report.md`` of ``evaluate ablations`` (the paper's Table 3)."""
    header = ablation_header(metrics)
    qualities = ", ".join(metrics["qualities"]) or "each recipe's eval_qualities (else all)"
    demo = " Demo-sized variants (`--demo`)." if metrics["demo"] else ""
    lines = [
        "# Ablations (per-class test accuracy)",
        "",
        f"Test split, qualities: {qualities}; up to {metrics['clips_per_video']} clips per "
        f"video.{demo}",
        "",
        "## Video level",
        "",
        md_table(header, ablation_rows(metrics, "video")),
        "",
        "## Clip level",
        "",
        md_table(header, ablation_rows(metrics, "clip")),
        "",
        "Checkpoints: "
        + ", ".join(f"{e['name']} = `{e['checkpoint']}`" for e in metrics["recipes"]),
        "",
        f"Tables: [CSV]({metrics['files']['csv']}), [metrics.json](metrics.json).",
        "",
    ]
    return "\n".join(lines)
