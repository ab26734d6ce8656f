"""The FastAPI application of ``python -m attribnet.serve``: :func:`create_app`.

Routes (one video per upload, in the multipart form field ``video``):

- ``GET /``: the upload form;
- ``POST /report``: the HTML report of the video (:func:`attribnet.query.html.render_html`),
  or an error page;
- ``POST /attribute``: the video's :meth:`Attribution.to_dict`, or ``{"detail": reason}``;
- ``GET /health``: ``{"status": "ok", "index": ..., "model": ..., "max_upload_bytes": ...}``.

A refused upload answers 400 (not a form upload, no file, an empty file, several files),
413 (over the size limit), 415 (not a video file name) or 422 (the video cannot be used:
it does not decode, has no face or too few frames). Each request works in its own
temporary folder (the upload and its face crops), removed whatever happens. One model
serves every request: calls to it take a lock, and run in a worker thread, off the event
loop. In the answers the video is named by the file name it was uploaded with, and the
pages (the form, the report, the error page) name no path of the server: the report is
rendered ``public`` (:func:`attribnet.query.html.render_html`), the index is named by its
folder's name. ``/health`` (for whoever runs the server) keeps its paths.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from attribnet.errors import DataError
from attribnet.query.attributor import Attribution, Attributor
from attribnet.query.html import render_html
from attribnet.serve.pages import error_page, form_page
from attribnet.serve.upload import DEFAULT_MAX_UPLOAD_MB, MiB, Upload, UploadError, receive_video

log = logging.getLogger(__name__)
Result = TypeVar("Result")


class AttributionService:
    """One :class:`Attributor` behind a lock; uploads land in per-request temp folders
    under ``temp_dir`` (default: the system's)."""

    def __init__(self, attributor: Attributor, max_upload_bytes: int, temp_dir: str | None = None):
        self.attributor = attributor
        self.max_upload_bytes = max_upload_bytes
        self.temp_dir = temp_dir
        self.lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        """``GET /health``: the index (path and summary), the model and the upload limit."""
        a = self.attributor
        index = {"path": a.index_dir, **a.index.info()}
        model = {"checkpoint": str(a.checkpoint), "device": str(a.device),
                 "onnx": str(a.onnx.path) if a.onnx is not None else None}  # fmt: skip
        limit = self.max_upload_bytes
        return {"status": "ok", "index": index, "model": model, "max_upload_bytes": limit}

    async def run(self, request: Request, work: Callable[[Upload], Result]) -> Result:
        """Receive the request's video into a fresh temp folder and run ``work`` on it in
        a worker thread; the folder is removed afterwards, whatever happened."""
        if self.temp_dir:
            os.makedirs(self.temp_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="attribnet-upload-", dir=self.temp_dir) as tmp:
            try:
                upload = await receive_video(request, Path(tmp), self.max_upload_bytes)
                return await run_in_threadpool(work, upload)
            except UploadError as exc:
                log.info("upload refused (%d): %s", exc.status, exc.message)
                raise

    def attribute(self, upload: Upload) -> Attribution:
        """The upload's attribution, named by its file name (call with the lock held)."""
        path = str(upload.path)
        faces = upload.path.parent / "faces"
        try:
            result = self.attributor.attribute(path, cache_dir=faces)
        except DataError as exc:  # VideoError, NoFaceError: not decodable, no face, too short
            reason = str(exc).removeprefix(f"{path}: ").replace(path, upload.filename)
            reason = reason.replace(str(upload.path.parent), "(the upload's folder)")
            raise UploadError(422, f"cannot attribute {upload.filename}: {reason}") from exc
        name = upload.filename
        return dataclasses.replace(result, video=name, record={**result.record, "video": name})

    def to_dict(self, upload: Upload) -> dict[str, Any]:
        """``POST /attribute``: the upload's :meth:`Attribution.to_dict`."""
        with self.lock:
            return self.attribute(upload).to_dict()

    def report(self, upload: Upload) -> str:
        """``POST /report``: the upload's HTML report."""
        with self.lock:  # matplotlib, drawing the map, is not thread-safe either
            result = self.attribute(upload)
            a = self.attributor
            return render_html(
                [result],
                a.index,
                face_cache=a.recipe.data.cache,
                index_name=a.index_dir,
                title=f"attribnet report: {upload.filename}",
                home_link="/",
                public=True,
            )


def create_app(
    attributor: Attributor,
    *,
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * MiB),
    temp_dir: str | os.PathLike[str] | None = None,
) -> FastAPI:
    """The web app over a loaded ``attributor``; uploads over ``max_upload_bytes`` are
    refused, and each request's files live in a temp folder under ``temp_dir``."""
    service = AttributionService(attributor, max_upload_bytes, temp_dir and str(temp_dir))
    # no /docs or /redoc: their pages load scripts from a CDN, and the app stays offline
    app = FastAPI(title="attribnet", docs_url=None, redoc_url=None)
    app.state.service = service

    @app.get("/", response_class=HTMLResponse)
    def form() -> HTMLResponse:
        return HTMLResponse(form_page(service.health()))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return service.health()

    @app.post("/attribute")
    async def attribute(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await service.run(request, service.to_dict))
        except UploadError as exc:
            return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.post("/report", response_class=HTMLResponse)
    async def report(request: Request) -> HTMLResponse:
        try:
            return HTMLResponse(await service.run(request, service.report))
        except UploadError as exc:
            return HTMLResponse(error_page(exc.status, exc.message), status_code=exc.status)

    return app
