"""The command line of ``python -m attribnet.serve``: load the index and its model once,
then serve the web app with uvicorn until Ctrl-C.

Exit codes: 0 stopped, 2 a usage error (one line on stderr): the web stack is not
installed, the index is missing, or its model is not the one that built it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from attribnet.cli import DONE, Parser, add_verbose, run_cli
from attribnet.errors import ConfigError
from attribnet.serve.upload import DEFAULT_MAX_UPLOAD_MB

log = logging.getLogger(__name__)

DESCRIPTION = "A local web app: upload a video, get its attribution report (HTML) or JSON."
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m attribnet.serve``."""
    parser = Parser(command="serve", description=DESCRIPTION)
    parser.add_argument("--index", required=True, help="index folder, e.g. indexes/demo")
    parser.add_argument("--checkpoint", help="model (default: the one the index was built by)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: local)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    limit = "largest accepted upload in MB (MiB)"
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help=limit)
    parser.add_argument("--temp-dir", help="where uploads are kept while they are attributed")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument(
        "--onnx", help="run this ONNX export of the model (ONNX Runtime, CPU; the onnx extra)"
    )
    add_verbose(parser)
    return parser


def _command(args: argparse.Namespace) -> int:
    if args.max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb must be > 0, got {args.max_upload_mb:g}")
    from attribnet.serve import require_web_stack

    require_web_stack()  # before the slow model load
    import uvicorn

    from attribnet.query.attributor import Attributor
    from attribnet.serve.app import create_app
    from attribnet.serve.upload import MiB

    attributor = Attributor.load(args.index, args.checkpoint, device=args.device, onnx=args.onnx)
    app = create_app(
        attributor, max_upload_bytes=int(args.max_upload_mb * MiB), temp_dir=args.temp_dir
    )
    log.info("serving index %s on http://%s:%d/", args.index, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return DONE


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring for the exit codes."""
    return run_cli(build_parser(), argv, _command)
