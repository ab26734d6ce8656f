"""``python -m attribnet.query --index indexes/<name> <videos or folders ...>``

Which known generator made each video, how sure, or is it from an unseen generator?

For every video (a file, or a folder of frame images; folders are searched recursively for
.mp4/.avi/.mov/.mkv/.webm/.m4v files and frame folders) the faces are cropped and cached
exactly as for training (the checkpoint's detector, face size and frame budget), and the
video is embedded with up to ``--max-clips`` periodic clips at training's frame stride,
phase-shifted so they use different frames (one clip for a video with fewer than 2T face
frames); the L2-normalised clip embeddings are averaged and re-normalised, the classifier's
softmax probabilities averaged. Reported per video:

- the ``--k`` nearest indexed training videos (video id, generator, quality, cosine);
- the similarity-weighted k-NN vote (generator and its share of the vote);
- the classifier head's generator and softmax probability;
- the open-set score (the one the index chose when it was built, see
  :mod:`attribnet.index`) and the verdict: the k-NN generator, or ``unknown generator``
  when the score is below the index's threshold.

Videos that cannot be read, have no face or are too short are reported with the reason;
they do not stop the run. ``--cluster`` groups the query videos into candidate generators
(average-linkage agglomerative clustering on cosine distance, cut at a distance threshold;
by default twice the 95th percentile of the indexed videos' cosine distance to their own
class prototype, i.e. as wide as a known class spreads, within [0.05, 1]). ``--plot`` draws
a 2-D PCA of the indexed and the query embeddings.

Exit codes: 0 at least one video was attributed, 1 none could be, 2 a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attribnet.atomic import write_json
from attribnet.data.eval_clips import DEFAULT_MAX_CLIPS
from attribnet.embedding import video_embeddings
from attribnet.errors import AttribnetError, ConfigError
from attribnet.index import GeneratorIndex, resolve_checkpoint

if TYPE_CHECKING:
    import torch

    from attribnet.config import Recipe
    from attribnet.data.cache import CacheEntry
    from attribnet.models import AttributionModel

log = logging.getLogger(__name__)

UNKNOWN = "unknown generator"
DEFAULT_K = 5
MAX_PLOT_POINTS = 5000


# ----------------------------------------------------------------------------- finding videos


def find_videos(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[str], dict[str, str]]:
    """Expand files and folders into videos: (paths in input order, missing inputs -> reason).

    A file is taken as given (a non-video is reported when it fails to decode). A folder
    that directly holds frame images is one video; any other folder is searched
    recursively for video files and frame folders (hidden entries skipped).
    """
    from attribnet.data.manifest import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    found: list[str] = []
    missing: dict[str, str] = {}
    for item in inputs:
        path = Path(item)
        if path.is_file():
            found.append(str(path))
        elif path.is_dir():
            found.extend(str(p) for p in _walk(path, VIDEO_SUFFIXES, IMAGE_SUFFIXES))
        else:
            missing[str(path)] = "no such file or folder"
    return list(dict.fromkeys(found)), missing


def _walk(root: Path, video_suffixes: Sequence[str], image_suffixes: Sequence[str]) -> list[Path]:
    """Video files and frame folders under ``root`` (``root`` itself when it holds frames)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        visible = sorted(f for f in filenames if not f.startswith("."))
        if any(Path(f).suffix.lower() in image_suffixes for f in visible):
            found.append(here)
            dirnames[:] = []
            continue
        found.extend(here / f for f in visible if Path(f).suffix.lower() in video_suffixes)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return found


# ----------------------------------------------------------------------------- embedding


@dataclass
class EmbeddedVideos:
    """Query videos after embedding: ``embeddings`` (N, D) unit, ``probabilities`` (N, K)
    classifier softmax, ``num_clips`` (N,), for ``paths`` (N); ``failures`` maps each other
    video to the reason it could not be embedded; ``logits`` (N, K) mean classifier logits."""

    embeddings: np.ndarray
    probabilities: np.ndarray
    num_clips: np.ndarray
    paths: list[str]
    failures: dict[str, str] = field(default_factory=dict)
    logits: np.ndarray | None = None


def embed_videos(
    model: AttributionModel,
    recipe: Recipe,
    paths: Sequence[str],
    cache_dir: str | os.PathLike[str],
    *,
    max_clips: int = DEFAULT_MAX_CLIPS,
    device: torch.device | None = None,
    progress: bool = False,
) -> EmbeddedVideos:
    """Preprocess ``paths`` into the face cache at ``cache_dir`` (the recipe's detector,
    face margin, ``image_size`` and ``max_frames``) and embed every usable video."""
    from attribnet.data.manifest import ManifestRow
    from attribnet.preprocess import run_preprocess

    data = recipe.data
    rows = [ManifestRow(path=str(p), label="query") for p in paths]
    cache, report = run_preprocess(
        rows,
        cache_dir,
        detector=data.detector,
        size=data.image_size,
        margin=data.face_margin,
        max_frames=data.max_frames,
        progress=progress,
    )
    failures = {**report["skipped"], **report["failed"]}
    usable: list[tuple[str, CacheEntry]] = []
    for row in rows:
        entry = cache.entry_for(row.path)
        if entry is None:
            failures.setdefault(row.path, "not preprocessed (see the log)")
        elif entry.num_frames < data.num_frames:
            t = data.num_frames
            failures[row.path] = f"only {entry.num_frames} face frames, a clip needs {t}"
        else:
            usable.append((row.path, entry))
    out = video_embeddings(
        model,
        recipe,
        cache,
        [e for _, e in usable],
        max_clips=max_clips,
        device=device,
        progress=progress,
    )
    ok = [p for p, _ in usable]
    failed = {p: failures[p] for p in paths if p in failures}
    return EmbeddedVideos(
        out.embeddings, out.probabilities, out.num_clips, ok, failed, logits=out.logits
    )


# ----------------------------------------------------------------------------- attribution


def query(
    index: GeneratorIndex,
    embeddings: np.ndarray,
    k: int = DEFAULT_K,
    *,
    probabilities: np.ndarray | None = None,
    video_ids: Sequence[str] | None = None,
    logits: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Attribute query embeddings (Q, D): one JSON-ready dict per query.

    Keys: ``video``, ``status`` ("ok"), ``verdict`` (k-NN generator or ``unknown
    generator``), ``is_unknown``, ``score`` (the index's open-set score, named in
    ``score_name``; see :meth:`GeneratorIndex.knownness`), ``threshold``,
    ``knn`` {generator, confidence, votes}, ``prototype`` {generator, similarity},
    ``neighbors`` [{rank, video_id, generator, quality, similarity}] and, with
    ``probabilities`` (Q, K) from the classifier head, ``classifier`` {generator,
    probability}. The classifier's mean ``logits`` (Q, K) are needed when the index's
    score is ``energy``.
    """
    names = index.class_names
    ids = list(video_ids) if video_ids is not None else [str(i) for i in range(len(embeddings))]
    if len(embeddings) == 0:
        return []
    sims, rows = index.search(embeddings, k)
    knn_pred, knn_conf, votes = index.knn_predict(embeddings, k)
    proto_pred, proto_sims = index.prototype_predict(embeddings)
    scores = index.knownness(embeddings, probabilities, logits=logits)
    unknown = index.is_unknown(scores)
    records = []
    for q, video in enumerate(ids):
        record: dict[str, Any] = {
            "video": video,
            "status": "ok",
            "verdict": UNKNOWN if unknown[q] else names[knn_pred[q]],
            "is_unknown": bool(unknown[q]),
            "score": float(scores[q]),
            "score_name": index.threshold_score,
            "threshold": index.threshold,
            "knn": {
                "generator": names[knn_pred[q]],
                "confidence": float(knn_conf[q]),
                "votes": {n: float(v) for n, v in zip(names, votes[q], strict=True) if v > 0},
            },
            "prototype": {
                "generator": names[proto_pred[q]],
                "similarity": float(proto_sims[q]),
            },
            "neighbors": _neighbors(index, sims[q], rows[q]),
        }
        if probabilities is not None:
            top = int(np.argmax(probabilities[q]))
            record["classifier"] = {
                "generator": names[top],
                "probability": float(probabilities[q, top]),
            }
        records.append(record)
    return records


def _neighbors(index: GeneratorIndex, sims: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
    """One query's neighbour rows (k,) as dicts, best first (padding rows -1 left out)."""
    return [
        {
            "rank": rank,
            "video_id": index.video_ids[row],
            "generator": index.class_names[index.labels[row]],
            "quality": index.qualities[row],
            "similarity": float(sim),
        }
        for rank, (sim, row) in enumerate(zip(sims, rows, strict=True), 1)
        if row >= 0
    ]


# ----------------------------------------------------------------------------- clustering


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
    from attribnet.embedding import l2_normalize

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

    from attribnet.report import pyplot, save_figure

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
    colours = matplotlib_colours(len(index.class_names))
    for c, name in enumerate(index.class_names):
        mask = labels == c
        if mask.any():
            ax.scatter(*xy[mask].T, s=8, alpha=0.4, color=colours[c], label=name)


def _scatter_queries(ax: Any, xy: np.ndarray, clusters: np.ndarray | None) -> None:
    if not len(xy):
        return
    ax.scatter(*xy.T, s=50, marker="X", color="black", label="queries")
    if clusters is None:
        return
    for (x, y), c in zip(xy, clusters, strict=True):
        ax.annotate(f"c{c}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)


def matplotlib_colours(n: int) -> list[Any]:
    """``n`` distinct colours (tab10, then tab20, then a sampled colormap)."""
    import matplotlib

    name = "tab10" if n <= 10 else "tab20" if n <= 20 else "hsv"
    cmap = matplotlib.colormaps[name]
    return [cmap(i) if n <= 20 else cmap(i / n) for i in range(n)]


# ----------------------------------------------------------------------------- reporting


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
    """A plain-text table of :func:`describe_clusters` output."""
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


# ----------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ConfigErrors (one line, exit code 2)."""

    def error(self, message: str) -> Any:
        raise ConfigError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m attribnet.query``."""
    parser = _Parser(
        prog="python -m attribnet.query",
        description=__doc__.split("\n")[2],
    )
    parser.add_argument("inputs", nargs="+", help="video files, frame folders or folders")
    parser.add_argument("--index", required=True, help="index folder, e.g. indexes/<name>")
    parser.add_argument("--checkpoint", help="model (default: the one the index was built by)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="neighbours to report")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--cluster", action="store_true", help="group the queries")
    parser.add_argument("--cluster-threshold", type=float, help="cosine-distance cut")
    parser.add_argument("--plot", help="write a 2-D PCA plot (PNG) to this file")
    parser.add_argument("--cache", help="face cache folder for the queries (default: temp)")
    parser.add_argument("--max-clips", type=int, default=DEFAULT_MAX_CLIPS)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


@contextlib.contextmanager
def _cache_dir(path: str | None) -> Iterator[str]:
    if path:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="attribnet-query-") as tmp:
        yield tmp


def _load(
    args: argparse.Namespace,
) -> tuple[GeneratorIndex, AttributionModel, Recipe, Path]:
    """The index, the model, its recipe and the checkpoint path, checked to match."""
    from attribnet.checkpoint import file_sha256, load_model

    index = GeneratorIndex.load(args.index)
    checkpoint = resolve_checkpoint(args.checkpoint or index.checkpoint_path)
    if not checkpoint.is_file():
        where = "--checkpoint" if args.checkpoint else f"the index's checkpoint ({args.index})"
        raise ConfigError(f"checkpoint {checkpoint} not found ({where}); pass --checkpoint")
    model, recipe, _, _ = load_model(checkpoint)
    index.check_compatible(
        embedding_dim=model.embedding_dim,
        checkpoint_sha256=file_sha256(checkpoint),
        checkpoint_path=checkpoint,
    )
    return index, model, recipe, checkpoint


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Do what the command line asks; returns the report written with --json."""
    if args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    index, model, recipe, checkpoint = _load(args)
    paths, missing = find_videos(args.inputs)
    if not paths and not missing:
        raise ConfigError(f"no videos or frame folders found in {list(args.inputs)}")
    progress = sys.stderr.isatty()
    with _cache_dir(args.cache) as cache_dir:
        emb = embed_videos(
            model, recipe, paths, cache_dir, max_clips=args.max_clips, progress=progress
        )
    ok = query(
        index,
        emb.embeddings,
        args.k,
        probabilities=emb.probabilities,
        video_ids=emb.paths,
        logits=emb.logits,
    )
    for record, clips in zip(ok, emb.num_clips, strict=True):
        record["clips"] = int(clips)
    by_path = {r["video"]: r for r in ok}
    failures = {**missing, **emb.failures}
    records = [
        by_path.get(p) or {"video": p, "status": "failed", "reason": failures[p]}
        for p in [*missing, *paths]
    ]
    report: dict[str, Any] = {
        "index": str(args.index),
        "checkpoint": str(checkpoint),
        "threshold": index.threshold,
        "score_name": index.threshold_score,
        "k": args.k,
        "videos": records,
    }
    if (args.cluster or args.plot) and len(emb.paths):
        _cluster(args, index, emb, [r["is_unknown"] for r in ok], report)
    return report


def _cluster(
    args: argparse.Namespace,
    index: GeneratorIndex,
    emb: EmbeddedVideos,
    unknown: list[bool],
    report: dict[str, Any],
) -> None:
    """Add ``clusters`` (with --cluster) to the report and draw --plot."""
    cut = args.cluster_threshold or default_cluster_threshold(index)
    clusters = cluster_embeddings(emb.embeddings, cut)
    if args.cluster:
        report["cluster_threshold"] = cut
        report["clusters"] = describe_clusters(
            index, emb.embeddings, clusters, emb.paths, np.array(unknown)
        )
    if args.plot:
        plot_embeddings(index, emb.embeddings, args.plot, clusters)
        report["plot"] = str(args.plot)


def _print_report(report: dict[str, Any]) -> None:
    print(format_table(report["videos"]))
    if "clusters" in report:
        print(f"\nclusters (cosine-distance cut {report['cluster_threshold']:.3f}):")
        print(format_clusters(report["clusters"]))
    ok = sum(r["status"] == "ok" for r in report["videos"])
    print(f"\n{ok} of {len(report['videos'])} videos attributed")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring for the exit codes."""
    from attribnet.logs import setup_logging

    try:
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose)
        report = run(args)
        if args.json:
            write_json(args.json, report)
    except (AttribnetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_report(report)
    if args.json:
        log.info("results written to %s", args.json)
    return 0 if any(r["status"] == "ok" for r in report["videos"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
