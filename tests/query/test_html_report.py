"""The HTML report (``python -m attribnet.query ... --html DIR``): one self-contained page
(inline PNGs, inline CSS, no script, no other host) with the verdicts, a frame strip per
attributed video, the failures with their reasons, and every user string escaped."""

from __future__ import annotations

import base64
import json
import shutil
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from attribnet.cli.query import main as query_main
from attribnet.openset.scores import SCORE_MEANINGS, SCORE_NAMES
from attribnet.query import Attributor
from attribnet.query.html import REPORT_FILE, public_name, render_html
from tests.world import SIZE

EVIL = """a<b>&"c'<script>.mp4"""
PNG_URI = "data:image/png;base64,"


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, page: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def attrs(self, name: str) -> list[str]:
        return [a[name] or "" for _, a in self.tags if name in a]

    def count(self, tag: str, css: str | None = None) -> int:
        return sum(t == tag and (css is None or a.get("class") == css) for t, a in self.tags)


@pytest.fixture(scope="module")
def report(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The query command run with --html and --json over good, bad and oddly named videos."""
    out = tmp_path_factory.mktemp("html")
    evil = out / "in" / EVIL
    evil.parent.mkdir()
    shutil.copy(world["queries"] / "deep" / "beta.mp4", evil)
    inputs = [world["queries"] / "deep", world["queries"] / "corrupt.mp4", evil]
    inputs += [world["queries"] / "notes.txt"]
    argv = ["--index", str(world["index"]), *map(str, inputs), "--json", str(out / "r.json")]
    assert query_main([*argv, "--html", str(out / "report")]) == 0
    page = (out / "report" / REPORT_FILE).read_text(encoding="ascii")
    return {"out": out, "page": page, "json": json.loads((out / "r.json").read_text())}


def test_the_page_is_self_contained(report: dict[str, Any]) -> None:
    page = report["page"]
    tags = _Tags(page)
    assert page.startswith("<!DOCTYPE html>") and page.isascii()
    assert not {t for t, _ in tags.tags} & {"script", "link", "iframe", "object", "embed"}
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "@import" not in page and "@font-face" not in page
    assert all(href.startswith("#") for href in tags.attrs("href"))
    sources = tags.attrs("src")
    assert sources and all(s.startswith(PNG_URI) for s in sources)
    for uri in sources:  # every image decodes
        data = np.frombuffer(base64.b64decode(uri.removeprefix(PNG_URI)), np.uint8)
        assert cv2.imdecode(data, cv2.IMREAD_COLOR) is not None
    assert sorted(p.name for p in (report["out"] / "report").iterdir()) == [REPORT_FILE]


def test_verdicts_strips_and_failures_are_shown(report: dict[str, Any]) -> None:
    page, videos = report["page"], report["json"]["videos"]
    tags = _Tags(page)
    ok = [v for v in videos if v["status"] == "ok"]
    failed = [v for v in videos if v["status"] != "ok"]
    assert len(ok) == 4 and len(failed) == 2  # 3 videos and the oddly named copy
    assert tags.count("div", "strip") == len(ok)
    assert tags.count("figure", "frame") == 3 * len(ok)  # the top 3 frames of each
    # a face crop and its heatmap per frame, each 2-D (S, S) images
    crops = [a["src"] for t, a in tags.tags if t == "img" and "face crop" in a.get("alt", "")]
    heats = [a["src"] for t, a in tags.tags if t == "img" and "heatmap" in a.get("alt", "")]
    assert len(crops) == len(heats) == 3 * len(ok)
    face = cv2.imdecode(np.frombuffer(base64.b64decode(crops[0][len(PNG_URI) :]), np.uint8), 1)
    assert face.shape == (SIZE, SIZE, 3)
    for n, v in enumerate(videos):
        if v["status"] != "ok":
            continue
        css = "verdict unknown" if v["is_unknown"] else "verdict"
        row = f'href="#v{n}">{escape(v["video"])}</a></td><td><span class="{css}">'
        assert f"{row}{escape(v['verdict'])}</span></td>" in page
        assert f'<section class="video" id="v{n}"><h3>{escape(v["video"])}</h3>' in page
        assert f"{v['knn']['generator']} ({v['knn']['confidence']:.2f})" in page
        assert f"({v['classifier']['probability']:.2f})" in page
        top = v["evidence"][0]
        assert f"#1 weight {top['weight']:.3f}</b><br>frame {top['source_frame']} &middot; " in page
    for v in failed:
        assert v["reason"] and f"failed: {escape(v['reason'])}" in page
    # the nearest indexed videos have thumbnails from the model's face cache
    assert sum(a.get("alt") == "thumbnail" for _, a in tags.tags) >= 1
    assert "Clusters (cosine-distance cut" in page and "PCA map" in page
    assert "spread: the members' mean cosine distance to each other" in page  # its terms
    assert page.count('class="trust"') == 1 and page.count('class="glossary"') == 1


def test_user_strings_are_escaped(report: dict[str, Any]) -> None:
    page = report["page"]
    assert escape(EVIL) in page
    assert EVIL not in page and "<script" not in page and "a<b>" not in page
    texts = "".join(_Tags(page).text)
    assert EVIL in texts  # the browser shows the name as it is


def test_one_video_without_the_face_cache(world: dict[str, Path], tmp_path: Path) -> None:
    attributor = Attributor.load(world["index"])
    result = attributor.attribute(world["queries"] / "deep" / "gamma.mp4")
    gone = tmp_path / "moved_away"
    page = render_html([result], attributor.index, face_cache=gone, index_name="tiny")
    assert f"no thumbnail: the face cache {gone} is not on this machine" in page
    public = render_html([result], attributor.index, face_cache=gone, public=True)
    assert "no thumbnail: the face cache is not on this machine" in public
    assert str(gone) not in public
    assert "Clusters" not in page and page.count('class="strip"') == 1
    assert 'alt="PCA map of the embeddings"' in page
    no_cache = render_html([result], attributor.index)
    assert "no thumbnail: no face cache given" in no_cache


def test_only_failures(world: dict[str, Path]) -> None:
    attributor = Attributor.load(world["index"])
    failed = attributor.attribute([world["queries"] / "notes.txt"])
    page = render_html(failed, attributor.index, home_link="/")
    assert "0 of 1 videos attributed" in page and "no video attributed: no map" in page
    assert 'class="strip"' not in page and "failed: " in page
    assert '<a href="/">' in page


def test_every_open_set_score_is_explained(world: dict[str, Path]) -> None:
    """Whichever score an index chose, the page says in a sentence what it measures."""
    attributor = Attributor.load(world["index"])
    result = attributor.attribute(world["queries"] / "deep" / "gamma.mp4")
    assert set(SCORE_MEANINGS) == set(SCORE_NAMES)
    for score in SCORE_NAMES:
        attributor.index.open_set.score = score
        page = render_html([result], attributor.index)
        assert f"<dt>open-set score ({score})</dt>" in page and SCORE_MEANINGS[score] in page
        others = [SCORE_MEANINGS[s] for s in SCORE_NAMES if s != score]
        assert not any(m in page for m in others)
    attributor.index.open_set.threshold = None
    assert "this index has none" in render_html([result], attributor.index)


def test_public_names_never_start_at_the_root() -> None:
    assert public_name("/srv/dfdm/beta/s0.mp4") == ".../dfdm/beta/s0.mp4"
    assert public_name("/data/s0.mp4") == ".../data/s0.mp4"
    assert public_name("C:\\data\\beta\\s0.mp4") == ".../data/beta/s0.mp4"
    assert public_name("beta/s0.mp4") == "beta/s0.mp4"
    assert public_name("./a/b/c/d.mp4") == ".../b/c/d.mp4"
    assert public_name("clip.mp4") == "clip.mp4"


def test_the_command_line_report_keeps_full_paths(report: dict[str, Any]) -> None:
    """The CLI's page stays on the machine that made it: whole paths in the tooltips."""
    neighbor = report["json"]["videos"][0]["neighbors"][0]["video_id"]
    assert f'title="{escape(neighbor)}"' in report["page"]
