"""``python -m attribnet.serve --index indexes/<name>``: the local web app.

Upload a face-swap video in the browser and get the HTML report of
:mod:`attribnet.query.html` (verdict, frame strip, heatmaps, nearest indexed videos), or
post it to ``/attribute`` for the JSON of :meth:`Attribution.to_dict`. FastAPI + uvicorn,
bound to 127.0.0.1 unless told otherwise; installed with the ``serve`` extra
(``pip install -e ".[serve]"``).

- :mod:`.upload`  streaming one uploaded video into a folder, with a size limit
- :mod:`.pages`   the upload form and the error page
- :mod:`.app`     :func:`create_app`: the routes over one loaded Attributor
- :mod:`.cli`     :func:`main`: load the index and its model once, then serve

FastAPI, uvicorn and python-multipart are imported only here, on first use: without them
:func:`require_web_stack` raises a ConfigError that says which extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from attribnet.errors import ConfigError


def require_web_stack() -> None:
    """Import the web stack; ConfigError naming the ``serve`` extra when a part is missing."""
    for name in ("fastapi", "uvicorn", "python_multipart"):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            if name == "python_multipart" and importlib.util.find_spec("multipart"):
                continue  # python-multipart < 0.0.13
            raise ConfigError(
                f"the web app needs {exc.name or name}: pip install -e '.[serve]' "
                "(or: pip install 'fastapi>=0.110' 'uvicorn>=0.29' 'python-multipart>=0.0.9')"
            ) from exc


def __getattr__(name: str) -> Any:
    """``from attribnet.serve import create_app`` imports the web stack only then."""
    if name in ("create_app", "AttributionService"):
        require_web_stack()
        return getattr(importlib.import_module("attribnet.serve.app"), name)
    raise AttributeError(f"module 'attribnet.serve' has no attribute {name!r}")
