"""Time bounds on decoding.

Every open and every ``get_frames`` runs in a daemon worker thread and is abandoned after
``timeout_s`` seconds with a ``VideoError``. A hung decord (or FFmpeg) call cannot be
killed from Python: its thread keeps running (and holding memory) until the call returns
or the process exits, and its source refuses further reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from attribnet.errors import VideoError

_T = TypeVar("_T")


class DecodeTimeoutError(VideoError):
    """Decoding did not finish within the time bound (the worker thread was abandoned)."""


def call_with_timeout(fn: Callable[[], _T], timeout_s: float | None, what: str) -> _T:
    """Run ``fn()`` in a daemon thread; wait at most ``timeout_s`` seconds (None or <= 0: no
    bound). Exceptions of ``fn`` are re-raised here.

    On timeout raises :class:`DecodeTimeoutError` naming ``what``. The thread cannot be
    killed; it is abandoned (daemon, so it does not block interpreter exit).
    """
    if timeout_s is None or timeout_s <= 0:
        return fn()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"attribnet-decode {what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise DecodeTimeoutError(f"{what}: decoding timed out after {timeout_s:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]
