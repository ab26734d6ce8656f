"""Receiving one uploaded video: a multipart/form-data body streamed into a folder.

The body is parsed as it arrives (python-multipart's streaming parser); the file in the
form field :data:`FIELD` is written to ``<folder>/video<suffix>`` and reading stops as soon
as it passes the size limit, so an upload is never held in memory and an oversized one is
never read to its end. Other form fields are read past and dropped. Every refusal is an
:class:`UploadError` with an HTTP status and a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from attribnet.data.manifest import VIDEO_SUFFIXES

try:  # python-multipart >= 0.0.13 names its module python_multipart
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # pragma: no cover - older python-multipart
    from multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from starlette.requests import Request

FIELD = "video"
FORM_OVERHEAD = 64 * 1024  # multipart headers and small fields allowed beyond the video
DEFAULT_MAX_UPLOAD_MB = 200.0
MiB = 1024 * 1024


class UploadError(Exception):
    """An upload refused with an HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Upload:
    """The received video: where it is, the name it was sent with, its size in bytes."""

    path: Path
    filename: str
    size: int


def too_large(max_bytes: int) -> UploadError:
    return UploadError(413, f"the upload is larger than the limit of {max_bytes / MiB:g} MB")


async def receive_video(request: Request, folder: Path, max_bytes: int) -> Upload:
    """Stream the request's form into ``folder``; the video of field :data:`FIELD`.

    Raises UploadError: 400 not a form upload, no file, an empty file or several files;
    413 larger than ``max_bytes``; 415 a file name without a video suffix.
    """
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        expected = f"expected a multipart/form-data upload with the video in the field '{FIELD}'"
        raise UploadError(400, expected)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes + FORM_OVERHEAD:
        raise too_large(max_bytes)
    sink = _VideoSink(folder, max_bytes)
    parser = MultipartParser(params[b"boundary"], sink.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + FORM_OVERHEAD:
                raise too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except ValueError as exc:  # python-multipart's FormParserError
        raise UploadError(400, f"malformed form upload ({exc})") from exc
    finally:
        sink.close()
    return sink.upload()


@dataclass
class _VideoSink:
    """python-multipart callbacks that write the video part to a file and drop the rest."""

    folder: Path
    max_bytes: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_field: bytes = b""
    header_value: bytes = b""
    file: IO[bytes] | None = None
    writing: bool = False
    result: Upload | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.headers, self.header_field, self.header_value = {}, b"", b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name != FIELD or b"filename" not in options:
            return
        if self.result is not None:
            raise UploadError(400, "one video per upload, please")
        sent = options[b"filename"].decode("utf-8", "replace").replace("\\", "/")
        filename = PurePosixPath(sent).name.strip()
        if not filename:
            raise UploadError(400, "no video chosen")
        suffix = PurePosixPath(filename).suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            expected = ", ".join(VIDEO_SUFFIXES)
            raise UploadError(
                415, f"not a video: {filename} (expected a file ending in {expected})"
            )
        path = self.folder / f"video{suffix}"
        self.file, self.writing = open(path, "wb"), True  # noqa: SIM115 - closed in close()
        self.result = Upload(path, filename, 0)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.writing or self.file is None or self.result is None:
            return
        self.result.size += end - start
        if self.result.size > self.max_bytes:
            raise too_large(self.max_bytes)
        self.file.write(data[start:end])

    def on_part_end(self) -> None:
        self.writing = False
        self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def upload(self) -> Upload:
        if self.result is None:
            raise UploadError(400, f"no video in the upload: send it in the form field '{FIELD}'")
        if self.result.size == 0:
            raise UploadError(400, f"the uploaded file {self.result.filename} is empty")
        return self.result
