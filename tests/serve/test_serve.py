"""The web app (``python -m attribnet.serve``) through FastAPI's TestClient: /health, the
form, /attribute giving the API's JSON, /report giving the HTML report, every refused
upload (status and reason, on both routes) leaving its temporary folder empty, the size
limit enforced while streaming, one model call at a time, and the startup errors."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from attribnet.cli.serve import main as serve_main
from attribnet.data.codec import write_video
from attribnet.errors import ConfigError
from attribnet.openset.scores import SCORE_MEANINGS
from attribnet.query import Attributor
from attribnet.serve import create_app, require_web_stack
from tests.builders import texture_video
from tests.world import NAMES, SIZE, T, other_checkpoint

ROUTES = ("/attribute", "/report")


@pytest.fixture(scope="module")
def attributor(world: dict[str, Path]) -> Attributor:
    return Attributor.load(world["index"])


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's temp folder: empty after every request."""
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(attributor: Attributor, uploads: Path) -> TestClient:
    return TestClient(create_app(attributor, max_upload_bytes=10**6, temp_dir=uploads))


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory: pytest.TempPathFactory, world: dict[str, Path]) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    write_video(folder / "short.mp4", texture_video(np.random.default_rng(1), 0, T - 2, SIZE))
    return folder


def post(client: TestClient, route: str, name: str, data: bytes) -> Any:
    return client.post(route, files={"video": (name, data, "video/mp4")})


def test_health(client: TestClient, world: dict[str, Path]) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok" and health["max_upload_bytes"] == 10**6
    assert health["index"]["path"] == str(world["index"])
    assert health["index"]["vectors"] == 6 and list(health["index"]["classes"]) == NAMES
    assert health["model"]["checkpoint"] == str(world["checkpoint"])
    assert health["model"]["onnx"] is None


def test_form_posts_one_video_to_the_report(client: TestClient) -> None:
    page = client.get("/").text
    assert '<form method="post" action="/report" enctype="multipart/form-data">' in page
    assert '<input type="file" name="video"' in page and "<script" not in page
    assert "https://" not in page and "http://HOST:PORT/attribute" in page
    assert client.get("/docs").status_code == 404  # its page would load a CDN's scripts


def test_attribute_gives_the_api_json(
    client: TestClient, attributor: Attributor, world: dict[str, Path], uploads: Path
) -> None:
    video = world["queries"] / "deep" / "beta.mp4"
    response = post(client, "/attribute", "suspect clip.mp4", video.read_bytes())
    assert response.status_code == 200, response.text
    api = attributor.attribute(video).to_dict()
    assert response.json() == json.loads(json.dumps({**api, "video": "suspect clip.mp4"}))
    assert list(uploads.iterdir()) == []


def test_report_gives_the_html_page(
    client: TestClient, world: dict[str, Path], uploads: Path
) -> None:
    video = world["queries"] / "deep" / "gamma.mp4"
    response = post(client, "/report", "<gamma>.mp4", video.read_bytes())
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/h")
    page = response.text
    assert "attribnet report: &lt;gamma&gt;.mp4" in page and "<gamma>" not in page
    assert page.count('class="strip"') == 1 and 'src="data:image/png;base64,' in page
    assert '<span class="verdict' in page and '<a href="/">' in page
    assert list(uploads.iterdir()) == []


def _server_paths(attributor: Attributor, world: dict[str, Path], uploads: Path) -> set[str]:
    """Absolute paths of the server a page must not show: the tmp dirs, the index folder,
    the run, the face cache, the indexed training videos, the uploads' folder."""
    index = Path(attributor.index_dir)
    return {
        tempfile.gettempdir() + "/", str(world["root"]), str(uploads), str(index),
        str(index.resolve()), str(attributor.checkpoint), str(attributor.recipe.data.cache),
        *attributor.index.video_ids,
    }  # fmt: skip


def test_served_pages_show_no_path_of_the_server(
    client: TestClient, attributor: Attributor, world: dict[str, Path], uploads: Path
) -> None:
    """The form, a report (its nearest-videos table names the indexed training videos) and
    an error page; no tooltip either."""
    video = (world["queries"] / "deep" / "alpha.mp4").read_bytes()
    report = post(client, "/report", "clip.mp4", video)
    refused = post(
        client, "/report", "corrupt.mp4", (world["queries"] / "corrupt.mp4").read_bytes()
    )
    assert (report.status_code, refused.status_code) == (200, 422)
    shortened = re.findall(r'<td class="path">[.]{3}/videos/\w+/s[01][.]mp4</td>', report.text)
    assert len(shortened) == 5  # the nearest indexed videos, by their last three parts
    for page in (client.get("/").text, report.text, refused.text):
        text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
        shown = [p for p in _server_paths(attributor, world, uploads) if p in text]
        assert shown == [] and "title=" not in text
        assert not re.search(r"[>\s(]/(tmp|home|root|work|srv|data|var)/", text)


def test_the_report_explains_its_terms_and_how_far_to_trust_the_verdict(
    client: TestClient, attributor: Attributor, world: dict[str, Path]
) -> None:
    video = (world["queries"] / "deep" / "beta.mp4").read_bytes()
    page = post(client, "/report", "clip.mp4", video).text
    score = attributor.index.open_set.score
    assert f"({score})</td>" in page  # the score the verdict table shows
    assert f"<dt>open-set score ({score})</dt>" in page and SCORE_MEANINGS[score] in page
    terms = ("verdict", "k-NN generator (confidence)", "classifier (probability)", "threshold",
             "nearest prototype (cos)", "cosine similarity (cos)", "weight",
             "spatial-attention map", "quality")  # fmt: skip
    for term in terms:
        assert re.search(rf"<dt>{re.escape(term)}</dt><dd>\w.{{30,}}?[.]</dd>", page), term
    trust = re.search(r'<p class="trust">(.*?)</p>', page).group(1)
    assert "only as good as the generators in the index" in trust
    assert "named after the nearest of them whenever its open-set score is at or above" in trust
    assert escape(", ".join(NAMES)) in trust and "mean AUROC of" in trust
    # after the verdict table, before the evidence: near where the terms appear
    assert page.index("<h2>Verdicts</h2>") < page.index('class="trust"') < page.index("<h3>")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("name", "content", "status", "message"),
    [
        ("notes.txt", b"not a video\n", 415, "not a video: notes.txt (expected a file ending"),
        ("fake.mp4", b"not a video\n", 422, "cannot attribute fake.mp4: cannot open as video"),
        ("empty.mp4", b"", 400, "the uploaded file empty.mp4 is empty"),
        ("corrupt.mp4", "queries/corrupt.mp4", 422, "cannot attribute corrupt.mp4: "),
        ("short.mp4", "bad/short.mp4", 422, f"only {T - 2} face frames, a clip needs {T}"),
    ],
)
def test_bad_uploads_are_refused_with_the_reason(
    client: TestClient,
    world: dict[str, Path],
    bad_videos: Path,
    uploads: Path,
    route: str,
    name: str,
    content: bytes | str,
    status: int,
    message: str,
) -> None:
    if isinstance(content, str):
        where, file = content.split("/", 1)
        content = ((world["queries"] if where == "queries" else bad_videos) / file).read_bytes()
    response = post(client, route, name, content)
    assert response.status_code == status
    _assert_reason(response, route, message)
    assert str(uploads) not in response.text  # the reason names the upload, not the temp file
    assert list(uploads.iterdir()) == []


@pytest.mark.parametrize("route", ROUTES)
def test_requests_that_are_no_video_upload(client: TestClient, uploads: Path, route: str) -> None:
    no_file = client.post(route, data={"comment": "hello"}, files={"other": ("a.mp4", b"x")})
    assert no_file.status_code == 400
    _assert_reason(no_file, route, "no video in the upload: send it in the form field 'video'")
    raw = client.post(route, content=b"x" * 100, headers={"content-type": "video/mp4"})
    assert raw.status_code == 400
    _assert_reason(raw, route, "expected a multipart/form-data upload")
    two = [("video", ("a.mp4", b"x")), ("video", ("b.mp4", b"y"))]
    assert client.post(route, files=two).status_code == 400
    assert list(uploads.iterdir()) == []


@pytest.mark.parametrize("route", ROUTES)
def test_uploads_over_the_limit_are_refused(
    attributor: Attributor, world: dict[str, Path], uploads: Path, route: str
) -> None:
    tiny = TestClient(create_app(attributor, max_upload_bytes=1000, temp_dir=uploads))
    video = (world["queries"] / "deep" / "alpha.mp4").read_bytes()
    assert len(video) > 1000
    response = post(tiny, route, "alpha.mp4", video)
    assert response.status_code == 413
    _assert_reason(response, route, "the upload is larger than the limit of 0.000953674 MB")
    huge = post(tiny, route, "alpha.mp4", b"\0" * 200_000)  # refused by its Content-Length
    assert huge.status_code == 413
    assert list(uploads.iterdir()) == []


def test_an_oversized_upload_is_not_read_to_its_end(attributor: Attributor, uploads: Path) -> None:
    """A chunked upload without Content-Length: the app stops asking for the body at the
    limit, and leaves nothing behind."""
    app = create_app(attributor, max_upload_bytes=100_000, temp_dir=uploads)
    head = b'--XyZ\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n\r\n'
    chunks = [head, *([b"\0" * 10_000] * 100), b"\r\n--XyZ--\r\n"]
    pulled, sent = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled > len(chunks):
            return {"type": "http.disconnect"}
        more = pulled < len(chunks)
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"multipart/form-data; boundary=XyZ")]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/attribute",
        "raw_path": b"/attribute",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert pulled <= 12  # the head and about 100 kB of the 1 MB
    assert list(uploads.iterdir()) == []


def test_model_calls_do_not_overlap(
    attributor: Attributor, world: dict[str, Path], uploads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original, running, overlaps = attributor.attribute, [0], []
    guard = threading.Lock()

    def attribute(*args: Any, **kwargs: Any) -> Any:
        with guard:
            running[0] += 1
            overlaps.append(running[0])
        time.sleep(0.2)
        try:
            return original(*args, **kwargs)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(attributor, "attribute", attribute)
    app = create_app(attributor, temp_dir=uploads)
    video = (world["queries"] / "deep" / "alpha.mp4").read_bytes()

    def upload(_: int) -> int:
        return post(TestClient(app), "/attribute", "a.mp4", video).status_code

    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(upload, range(3)))
    assert codes == [200] * 3 and overlaps == [1, 1, 1]
    assert list(uploads.iterdir()) == []


def test_serve_refuses_an_index_of_another_model(
    world: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    other = other_checkpoint(world)
    assert serve_main(["--index", str(world["index"]), "--checkpoint", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: index was built from checkpoint") and "\n" not in err
    assert serve_main(["--index", str(world["root"] / "nope")]) == 2
    assert serve_main(["--index", str(world["index"]), "--max-upload-mb", "0"]) == 2


def test_without_the_web_stack_the_error_names_the_extra(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(
        ConfigError, match=r"the web app needs uvicorn: pip install -e '\.\[serve\]'"
    ):
        require_web_stack()
    assert serve_main(["--index", str(world["index"])]) == 2
    assert "[serve]" in capsys.readouterr().err


def _assert_reason(response: Any, route: str, message: str) -> None:
    if route == "/attribute":
        assert message in response.json()["detail"]
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert escape(message) in response.text and "Cannot attribute this upload" in response.text


@pytest.mark.slow
def test_serve_runs_an_onnx_export_and_refuses_one_of_another_model(
    world: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from attribnet.cli import export

    served = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: served.append(app))
    good, wrong = tmp_path / "model.onnx", tmp_path / "other.onnx"
    for checkpoint, out in ((world["checkpoint"], good), (other_checkpoint(world), wrong)):
        assert (
            export.main(["onnx", "--checkpoint", str(checkpoint), "--out", str(out), "--sam"]) == 0
        )
    assert serve_main(["--index", str(world["index"]), "--onnx", str(good)]) == 0
    health = TestClient(served[0]).get("/health").json()
    assert health["status"] == "ok" and health["model"]["onnx"] == str(good)
    assert serve_main(["--index", str(world["index"]), "--onnx", str(wrong)]) == 2
    assert "was not exported from" in capsys.readouterr().err.strip().splitlines()[-1]
