"""The HTML report: one self-contained page for the results of :meth:`Attributor.attribute`.

:func:`render_html` returns the page, :func:`write_html` writes it to ``<folder>/index.html``
atomically. The page needs nothing else: every image is a PNG inlined as a ``data:`` URI,
the style sheet is inline, there is no JavaScript and no link to any other host. It holds

- the verdict table: per video the verdict, the k-NN generator and its share of the vote,
  the classifier head's generator and probability, the open-set score against the index's
  threshold, or why the video could not be used;
- per attributed video: the frame strip (the face crops of the frames with the largest
  share of the decision, with that share, the frame index and the time in the file), the
  spatial-attention heatmap over each of those crops, and the nearest indexed videos with
  a thumbnail from the face cache the model was trained from (when it is on this machine);
- the PCA map of the indexed and the query embeddings, and with several videos the
  clusters of the queries (:mod:`attribnet.query.cluster`);
- under the verdicts, how far to trust them and what each term means (:mod:`.glossary`).

Every string from a user (paths, file names, reasons, class names) is escaped. A ``public``
page (the web app's) names no path of this machine: videos by their last folders and file
name (:func:`public_name`), the index by its folder's name, the face cache not at all.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attribnet import __version__
from attribnet.files.atomic import atomic_path
from attribnet.query.attribute import UNKNOWN
from attribnet.query.cluster import cluster_embeddings, default_cluster_threshold, describe_clusters
from attribnet.query.glossary import glossary
from attribnet.query.render import plot_embeddings

if TYPE_CHECKING:
    from attribnet.data.cache import FaceCache
    from attribnet.index import GeneratorIndex
    from attribnet.query.attributor import Attribution, FrameEvidence

REPORT_FILE = "index.html"
HEATMAP_COLORMAP = "inferno"
HEATMAP_ALPHA = 0.55
_UNKNOWN = f"<i>{UNKNOWN}</i>"

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:72em;
 padding:0 1em;color:#1d1d1f;background:#fff}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em}
h3{font-size:1.05em;margin:1.2em 0 .3em;word-break:break-all}h4{margin:.8em 0 .2em}
p.meta,p.note{color:#555;font-size:.9em;margin:.3em 0}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:middle}
th{background:#f2f2f2}td.path{word-break:break-all;max-width:28em}
.verdict{font-weight:bold}.unknown{color:#b15c00}.failed{color:#b00020}
section.video{border-top:2px solid #ddd;margin-top:1.5em}
.strip{display:flex;flex-wrap:wrap;gap:1em;margin:.5em 0}
figure{margin:0;padding:.4em;border:1px solid #ddd;border-radius:4px;background:#fafafa}
figure img,td img{image-rendering:pixelated;width:128px;height:128px;display:inline-block}
td img{width:64px;height:64px}
figcaption{font-size:.85em;text-align:center;margin-top:.25em}
img.map{width:100%;max-width:50em;height:auto;image-rendering:auto}
p.trust{border-left:4px solid #b15c00;padding:.3em .7em;background:#fff8f0;max-width:60em}
dl.glossary{font-size:.9em;max-width:60em}dl.glossary dt{font-weight:bold;margin-top:.4em}
dl.glossary dd{margin:0 0 0 1.5em;color:#333}
"""


def render_html(
    results: Sequence[Attribution],
    index: GeneratorIndex,
    *,
    face_cache: str | os.PathLike[str] | None = None,
    index_name: str = "",
    cluster_threshold: float | None = None,
    title: str = "attribnet report",
    home_link: str | None = None,
    public: bool = False,
) -> str:
    """The report page for ``results`` (attributed and failed videos) against ``index``.

    ``face_cache``: the face cache of the model's training data (the recipe's
    ``data.cache``), where the thumbnails of the nearest indexed videos come from;
    ``index_name``: the index folder, as shown; ``cluster_threshold``: the cosine-distance
    cut of the clusters (default :func:`default_cluster_threshold`); ``home_link``: a
    same-site link shown at the top (the web app's upload form); ``public``: the page goes
    to another machine, so it shows no path of this one (videos by :func:`public_name`, the
    index by its folder's name, thumbnails without the face cache's folder). The page is
    pure ASCII (other characters as character references).
    """
    if public:
        index_name = Path(index_name).name
        results = [_public(r) for r in results]
    ok = [r for r in results if r.ok]
    thumbnails = _Thumbnails(face_cache, public)
    body = [
        f"<h1>{escape(title)}</h1>",
        _header(results, index, index_name, home_link),
        "<h2>Verdicts</h2>",
        _verdict_table(results),
        glossary(results, index),
        *(_video_section(n, r, thumbnails, public) for n, r in enumerate(results) if r.ok),
        *_map_sections(ok, index, cluster_threshold),
        f'<p class="meta">attribnet {escape(__version__)}</p>',
    ]
    head = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>")  # fmt: skip
    page = "\n".join([head, *body, "</body></html>", ""])
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")


def write_html(
    out_dir: str | os.PathLike[str],
    results: Sequence[Attribution],
    index: GeneratorIndex,
    **options: Any,
) -> Path:
    """Write :func:`render_html` (``options`` are its keywords) to ``out_dir/index.html``
    atomically; returns the file's path."""
    path = Path(out_dir) / REPORT_FILE
    page = render_html(results, index, **options)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="ascii")
    return path


def public_name(path: str, keep: int = 3) -> str:
    """``path`` as a page for another machine names it: its last ``keep`` parts, after
    ``.../`` when there were more or the path is absolute (``/srv/dfdm/beta/s0.mp4`` ->
    ``.../dfdm/beta/s0.mp4``); never the path from its root."""
    text = path.replace("\\", "/")
    parts = [p for p in text.split("/") if p and p != "."]
    rooted = text.startswith("/")
    if parts and parts[0].endswith(":"):  # a Windows drive
        parts, rooted = parts[1:], True
    tail = parts[-keep:]
    return ("" if len(tail) == len(parts) and not rooted else ".../") + "/".join(tail)


def _public(r: Attribution) -> Attribution:
    """``r`` with its video, and the paths in its reason, named by :func:`public_name`."""
    name = public_name(r.video)
    if not r.ok:
        return replace(r, video=name, reason=(r.reason or "").replace(r.video, name))
    return replace(r, video=name, record={**r.record, "video": name})


# ----------------------------------------------------------------------------- sections


def _header(
    results: Sequence[Attribution], index: GeneratorIndex, index_name: str, home: str | None
) -> str:
    names = ", ".join(index.class_names)
    threshold = "none" if index.open_set.threshold is None else f"{index.open_set.threshold:.3f}"
    done = sum(r.ok for r in results)
    lines = [
        f"{done} of {len(results)} videos attributed against the generator index "
        f"{escape(index_name or '(unnamed)')}: {index.ntotal} indexed videos of "
        f"{len(index.class_names)} generators ({escape(names)}); open-set score "
        f"{escape(index.open_set.score)}, threshold {threshold} (below it: unknown generator).",
    ]
    if home:
        lines.insert(0, f'<a href="{escape(home)}">&larr; attribute another video</a><br>')
    return f'<p class="meta">{"".join(lines)}</p>'


def _verdict_table(results: Sequence[Attribution]) -> str:
    head = (
        "<tr><th>video</th><th>verdict</th><th>k-NN generator (confidence)</th>"
        "<th>classifier (probability)</th><th>open-set score vs threshold</th></tr>"
    )
    rows = []
    for n, r in enumerate(results):
        if not r.ok:
            rows.append(
                f'<tr><td class="path">{escape(r.video)}</td><td class="failed" colspan="4">'
                f"failed: {escape(r.reason or 'unknown reason')}</td></tr>"
            )
            continue
        cls = r.classifier
        classifier = f"{escape(cls['generator'])} ({cls['probability']:.2f})" if cls else "-"
        rows.append(
            f'<tr><td class="path"><a href="#v{n}">{escape(r.video)}</a></td>'
            f"<td>{_verdict(r)}</td>"
            f"<td>{escape(str(r.generator))} ({r.confidence:.2f})</td><td>{classifier}</td>"
            f"<td>{_score(r.record)}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _verdict(r: Attribution) -> str:
    css = "verdict unknown" if r.is_unknown else "verdict"
    return f'<span class="{css}">{escape(str(r.verdict))}</span>'


def _score(record: dict[str, Any]) -> str:
    score, thr, name = record["score"], record["threshold"], escape(record["score_name"])
    if thr is None:
        return f"{score:.3f} ({name}; no threshold)"
    side = "&lt;" if score < thr else "&ge;"
    return f"{score:.3f} {side} {thr:.3f} ({name})"


def _video_section(n: int, r: Attribution, thumbnails: _Thumbnails, public: bool) -> str:
    record = r.record
    proto = record["prototype"]
    top = [f for f in r.frames if f.face is not None]
    share = sum(f.weight for f in top)
    return "\n".join(
        [
            f'<section class="video" id="v{n}"><h3>{escape(r.video)}</h3>',
            f"<p>verdict {_verdict(r)}; k-NN {escape(str(r.generator))} "
            f"({r.confidence:.2f} of the vote), nearest prototype "
            f"{escape(proto['generator'])} (cos {proto['similarity']:.3f}); "
            f"open-set score {_score(record)}.</p>",
            f'<p class="note">{len(r.frames)} frames sampled in {record.get("clips", "?")} '
            f"clips; the {len(top)} below carry {100 * share:.1f}% of the decision (their "
            "temporal-attention weight). Right of each crop: its spatial-attention map, "
            f"coloured ({HEATMAP_COLORMAP}) from its lowest to its highest value.</p>",
            _strip(top),
            "<h4>Nearest indexed videos</h4>",
            _neighbor_table(r.neighbors, thumbnails, public),
            "</section>",
        ]
    )


def _strip(frames: Sequence[FrameEvidence]) -> str:
    if not frames:
        return '<p class="note">no face crops kept for this video</p>'
    figures = []
    for rank, f in enumerate(frames, 1):
        where = f"frame {f.source_frame}" if f.source_frame is not None else f"crop {f.frame}"
        when = f"{f.time_s:.2f} s" if f.time_s is not None else "time unknown"
        crop = f'<img src="{_png_uri(f.face)}" alt="face crop, {where}">'
        if f.heatmap is None:
            heat, span = "", "no spatial attention in this model"
        else:
            heat = f'<img src="{_png_uri(_overlay(f.face, f.heatmap))}" alt="heatmap, {where}">'
            span = f"map {float(f.heatmap.min()):.3f}&ndash;{float(f.heatmap.max()):.3f}"
        figures.append(
            f'<figure class="frame">{crop}{heat}<figcaption><b>#{rank} weight {f.weight:.3f}'
            f"</b><br>{where} &middot; {when}<br>{span}</figcaption></figure>"
        )
    return f'<div class="strip">{"".join(figures)}</div>'


def _neighbor_table(
    neighbors: Sequence[dict[str, Any]], thumbnails: _Thumbnails, public: bool
) -> str:
    head = (
        "<tr><th>#</th><th>thumbnail</th><th>indexed video</th><th>generator</th>"
        "<th>quality</th><th>cosine similarity</th></tr>"
    )
    rows = [
        f"<tr><td>{nb['rank']}</td><td>{thumbnails.cell(nb['video_id'])}</td>"
        f"{_short_path_cell(nb['video_id'], public)}<td>{escape(nb['generator'])}</td>"
        f"<td>{escape(str(nb['quality']))}</td><td>{nb['similarity']:.3f}</td></tr>"
        for nb in neighbors
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _short_path_cell(path: str, public: bool, keep: int = 3, width: int = 48) -> str:
    """A table cell with ``path``, shortened to its last ``keep`` parts when longer than
    ``width`` characters (the whole path in the cell's tooltip); on a ``public`` page
    always :func:`public_name`, without a tooltip."""
    if public:
        return f'<td class="path">{escape(public_name(path, keep))}</td>'
    parts = path.replace("\\", "/").split("/")
    short = path if len(path) <= width or len(parts) <= keep else ".../" + "/".join(parts[-keep:])
    return f'<td class="path" title="{escape(path)}">{escape(short)}</td>'


def _map_sections(ok: Sequence[Attribution], index: GeneratorIndex, cut: float | None) -> list[str]:
    """The PCA map and, with several videos, the clusters."""
    if not ok:
        return ["<h2>Embedding map</h2>", '<p class="note">no video attributed: no map</p>']
    embeddings = np.stack([r.embedding for r in ok])
    clusters, table = None, []
    if len(ok) > 1:
        cut = default_cluster_threshold(index) if cut is None else cut
        clusters = cluster_embeddings(embeddings, cut)
        unknown = np.array([bool(r.is_unknown) for r in ok])
        groups = describe_clusters(index, embeddings, clusters, [r.video for r in ok], unknown)
        table = [
            f"<h2>Clusters (cosine-distance cut {cut:.3f})</h2>",
            _cluster_table(groups),
            '<p class="note">A cluster is a group of queries whose embeddings lie, on '
            "average, within the cosine-distance cut (1 minus the cosine similarity) of each "
            "other: perhaps one generator. Nearest known: the generator whose prototype is "
            "nearest to the group's mean; mean cos: the members' cosine similarity to that "
            "prototype; spread: the members' mean cosine distance to each other (0 for one "
            "video); flagged unknown: how many of them the verdict calls unknown.</p>",
        ]
    with tempfile.TemporaryDirectory(prefix="attribnet-html-") as tmp:
        png = plot_embeddings(index, embeddings, Path(tmp) / "map.png", clusters).read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return [
        "<h2>Embedding map</h2>",
        '<p class="note">PCA of the indexed videos (colour: generator) and the queries '
        "(black crosses, labelled by cluster when there are several).</p>",
        f'<img class="map" src="{uri}" alt="PCA map of the embeddings">',
        *table,
    ]


def _cluster_table(groups: Sequence[dict[str, Any]]) -> str:
    head = (
        "<tr><th>cluster</th><th>size</th><th>flagged unknown</th><th>nearest known</th>"
        "<th>mean cos</th><th>spread</th><th>videos</th></tr>"
    )
    rows = [
        f"<tr><td>c{g['cluster']}</td><td>{g['size']}</td><td>{g['unknown']}</td>"
        f"<td>{escape(g['nearest_generator'])}</td><td>{g['mean_similarity']:.3f}</td>"
        f'<td>{g["spread"]:.3f}</td><td class="path">'
        f"{'<br>'.join(escape(v) for v in g['videos'])}</td></tr>"
        for g in groups
    ]
    return f"<table>{head}{''.join(rows)}</table>"


# ----------------------------------------------------------------------------- images


class _Thumbnails:
    """Thumbnails of indexed videos: the middle face crop of each in the face cache (named
    in the sentence that says why there is none, unless ``public``)."""

    def __init__(self, face_cache: str | os.PathLike[str] | None, public: bool = False):
        self.cache: FaceCache | None = None
        self.where = "" if face_cache is None or public else f" {face_cache}"
        self.missing = "no thumbnail: no face cache given"
        self.seen: dict[str, str] = {}
        if face_cache is None:
            return
        from attribnet.data.cache import FaceCache
        from attribnet.errors import DataError

        try:
            self.cache = FaceCache(face_cache)
        except (DataError, OSError, ValueError):
            self.missing = f"no thumbnail: the face cache{self.where} is not on this machine"

    def cell(self, video_id: str) -> str:
        """An ``<img>`` of the video's middle face crop, or a sentence saying why not."""
        if video_id not in self.seen:
            self.seen[video_id] = self._cell(video_id)
        return self.seen[video_id]

    def _cell(self, video_id: str) -> str:
        from attribnet.errors import DataError

        if self.cache is None:
            return escape(self.missing)
        entry = self.cache.entry_for(video_id)
        if entry is None or entry.num_frames == 0:
            return escape(f"no thumbnail: not in the face cache{self.where}")
        try:
            face = np.array(self.cache.load(entry)[entry.num_frames // 2])
        except DataError:
            return escape(f"no thumbnail: unreadable in the face cache{self.where}")
        return f'<img src="{_png_uri(face)}" alt="thumbnail">'


def _overlay(face_hwc: np.ndarray, heatmap_hw: np.ndarray) -> np.ndarray:
    """A face crop (S, S, 3) uint8 with its heatmap (S, S), scaled to its own range and
    coloured, blended over it -> (S, S, 3) uint8."""
    import matplotlib

    heat = np.asarray(heatmap_hw, dtype=np.float32)
    span = float(heat.max() - heat.min())
    scaled = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    colour = matplotlib.colormaps[HEATMAP_COLORMAP](scaled)[..., :3] * 255.0
    blend = (1 - HEATMAP_ALPHA) * face_hwc.astype(np.float32) + HEATMAP_ALPHA * colour
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)


def _png_uri(image_hwc: np.ndarray) -> str:
    """An RGB image (H, W, 3) uint8 as a ``data:image/png;base64,...`` URI."""
    import cv2

    bgr = cv2.cvtColor(np.ascontiguousarray(image_hwc), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image_hwc.shape} as PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")
