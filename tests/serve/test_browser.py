"""The web app in a real browser: ``python -m attribnet.serve`` started as a process on a
free port, the distribution's headless chromium driven by Playwright uploads a demo video
through the form, waits for the verdict, checks the page and saves a screenshot of it to
``docs/web_app.png`` (the README shows it). Skipped only when chromium is not installed
(``apt-get install chromium``; ``.ci/run`` installs it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from attribnet.data.codec import write_video
from attribnet.data.synthetic import build_generator, draw_source, render_fake
from attribnet.files.atomic import atomic_path
from attribnet.query import UNKNOWN
from tests.builders import REPO
from tests.world import NAMES, SIZE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "chromium is not installed (apt-get install chromium); .ci/run installs it"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]
REPO = REPO
SCREENSHOT = REPO / "docs" / "web_app.png"
STARTUP_S = 120


@pytest.fixture(scope="module")
def server(
    world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, object]]:
    """The web app served by its command line; stopped (Ctrl-C) afterwards."""
    uploads = tmp_path_factory.mktemp("browser_uploads")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # run from the world's folder, as from a checkout: the page names the index as given
    index = world["index"].relative_to(world["root"])
    argv = ["--index", str(index), "--port", str(port), "--temp-dir", str(uploads)]
    log = uploads.parent / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "attribnet.serve", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=world["root"],
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": _pythonpath()},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, log)
        yield {"url": url, "uploads": uploads, "log": log}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pythonpath() -> str:
    """This checkout first, so that the server runs this code even where not installed."""
    return os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if json.load(response)["status"] == "ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    pytest.fail(f"the server did not answer /health in {STARTUP_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-like video: a procedural talking head swapped by the toy 'dfl' generator."""
    path = tmp_path_factory.mktemp("demo") / "suspect_dfl.mp4"
    real = draw_source(np.random.default_rng(3), 12).render(12, 64)
    write_video(path, render_fake(build_generator("dfl"), real))
    return path


def test_upload_in_a_real_browser(
    server: dict[str, object], demo_video: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{server['url']}/")
            assert "Which generator made this face-swap video?" in page.inner_text("body")
            page.set_input_files("input[name=video]", str(demo_video))
            page.click("button[type=submit]")
            page.wait_for_selector("span.verdict", timeout=90_000)

            assert page.inner_text("h1") == "attribnet report: suspect_dfl.mp4"
            verdict = page.inner_text("span.verdict")
            assert verdict in (*NAMES, UNKNOWN)
            text = page.inner_text("body")
            assert "1 of 1 videos attributed" in text and "Nearest indexed videos" in text
            strip = page.locator(".strip img")
            assert strip.count() == 6  # the top 3 frames: face crop and heatmap each
            assert strip.first.get_attribute("src").startswith("data:image/png;base64,")
            assert strip.first.evaluate("img => img.naturalWidth") == SIZE  # it decoded
            assert "#1 weight" in page.inner_text(".strip figcaption >> nth=0")
            png = page.screenshot(full_page=True)

            page.goto(f"{server['url']}/")  # a refused upload: the reason, and a way back
            notes = tmp_path / "notes.txt"
            notes.write_text("not a video\n")
            page.set_input_files("input[name=video]", str(notes))
            page.click("button[type=submit]")
            page.wait_for_selector("p.error", timeout=30_000)
            assert "not a video: notes.txt" in page.inner_text("p.error")
        finally:
            browser.close()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with atomic_path(SCREENSHOT) as tmp:
        tmp.write_bytes(png)
    assert list(Path(server["uploads"]).iterdir()) == []
