"""The web app's own pages: the upload form and the error page (the report itself is
:func:`attribnet.query.html.render_html`). Self-contained like the report: inline CSS, no
script, nothing from another host."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from attribnet.data.manifest import VIDEO_SUFFIXES
from attribnet.query.html import STYLE
from attribnet.serve.upload import FIELD, MiB

FORM_CSS = """
form{margin:1.2em 0;padding:1em;border:1px solid #ccc;border-radius:6px;background:#fafafa}
input[type=file]{margin-right:1em}button{font-size:1em;padding:.35em 1.2em}
p.error{color:#b00020;font-weight:bold}code{background:#f2f2f2;padding:0 .2em}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}{FORM_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def form_page(health: dict[str, Any]) -> str:
    """``GET /``: what the index knows (named by its folder's name, not its path on the
    server), and a form that posts one video to ``/report``."""
    index = health["index"]
    names = ", ".join(index["classes"])
    limit = health["max_upload_bytes"] / MiB
    accept = ",".join(VIDEO_SUFFIXES)
    body = f"""<h1>attribnet</h1>
<p>Which generator made this face-swap video? Upload one video: the page that comes back
gives the verdict, the frames that carried it with their spatial-attention heatmaps, and the
nearest videos of the generator index.</p>
<p class="meta">Index {escape(Path(index["path"]).name)}: {index["vectors"]} videos of
{len(index["classes"])} generators ({escape(names)}). Videos up to {limit:g} MB
({escape(", ".join(VIDEO_SUFFIXES))}).</p>
<form method="post" action="/report" enctype="multipart/form-data">
<input type="file" name="{FIELD}" accept="{accept}" required>
<button type="submit">Attribute</button>
</form>
<p class="note">A video takes a few seconds on a CPU. The same answer as JSON:
<code>curl -F {FIELD}=@clip.mp4 http://HOST:PORT/attribute</code>; the server's state:
<code>GET /health</code>.</p>"""
    return _page("attribnet", body)


def error_page(status: int, message: str) -> str:
    """The page of a refused upload: the reason, and the way back to the form."""
    body = f"""<h1>Cannot attribute this upload</h1>
<p class="error">{escape(message)}</p>
<p class="meta">HTTP status {status}</p>
<p><a href="/">&larr; try another video</a></p>"""
    return _page("attribnet: upload refused", body)
