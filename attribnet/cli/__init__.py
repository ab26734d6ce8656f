"""The command layer: every entry point (``attribnet-<command>``, ``python -m attribnet.<x>``)
is a module here, built on what this one shares: the parser, logging and exit codes.

Exit codes, for every command: 0 done; 1 the job ran but did not get there (no video could
be attributed, some videos failed and a re-run retries them, the loss became NaN); 2 a
user error (one line on stderr, no traceback); 130 interrupted (run the same command again
to resume where it resumes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attribnet.errors import AttribnetError, ConfigError

DONE, NOTHING, USER_ERROR, INTERRUPTED = 0, 1, 2, 130


MODULES = {
    "train": "attribnet.train", "index": "attribnet.index", "query": "attribnet.query",
    "evaluate": "attribnet.evaluate", "serve": "attribnet.serve", "export": "attribnet.export",
    "preprocess": "attribnet.cli.preprocess", "convert": "attribnet.cli.convert",
    "manifest": "attribnet.data.manifest", "synthetic": "attribnet.data.synthetic",
}  # fmt: skip
"""Command -> the module ``python -m`` runs it as (the console script is attribnet-<command>)."""


def program_name(command: str) -> str:
    """How the user started ``command``: ``attribnet-<command>`` when run as that console
    script, else ``python -m <module>`` (what --help and usage lines show)."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if script == f"attribnet-{command}":
        return script
    return f"python -m {MODULES[command]}"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ConfigErrors (one line, exit code 2), named
    after how ``command`` was started (:func:`program_name`)."""

    def __init__(self, *args: Any, command: str | None = None, **kwargs: Any):
        if command is not None:  # None: a subcommand's parser, named by argparse
            kwargs.setdefault("prog", program_name(command))
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        raise ConfigError(f"{message} (see --help)")


def add_neighbours(parser: argparse.ArgumentParser) -> None:
    """``-k/--neighbours``: k of every k-NN answer (one name and default everywhere)."""
    from attribnet.metrics.embedding import DEFAULT_NEIGHBOURS

    help = f"nearest training videos that vote (default {DEFAULT_NEIGHBOURS})"
    parser.add_argument("-k", "--neighbours", dest="k", type=int, default=DEFAULT_NEIGHBOURS,
                        help=help)  # fmt: skip


def add_clips_per_video(parser: argparse.ArgumentParser) -> None:
    """``--clips-per-video``: clips embedded and averaged per video (one default everywhere)."""
    from attribnet.data.eval_clips import DEFAULT_CLIPS_PER_VIDEO

    parser.add_argument("--clips-per-video", type=int, default=DEFAULT_CLIPS_PER_VIDEO,
                        help="clips of T frames embedded and averaged per video "
                        f"(default {DEFAULT_CLIPS_PER_VIDEO})")  # fmt: skip


def add_speed(parser: argparse.ArgumentParser, default_batch: str) -> None:
    """``--batch-size`` (clips per model pass; ``default_batch`` says what none means) and
    ``--precision`` (fp32 or bf16): how a command runs a model over many videos."""
    from attribnet.predict import PRECISIONS

    parser.add_argument(
        "--batch-size", type=int, default=None, metavar="CLIPS",
        help=f"clips per model pass (default: {default_batch}); on a GPU 64 to 256 keep it "
        "busy, and embeddings then change in their last bits with the batch",
    )  # fmt: skip
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="bf16: bfloat16 autocast (faster on GPUs and on CPUs with AVX512-BF16 or AMX; "
        "scores move by about 1e-4, a borderline verdict may change). On a GPU a model "
        "whose recipe trained with train.amp runs in bf16 either way",
    )  # fmt: skip


def check_batch_size(batch_size: int | None) -> None:
    """ConfigError for a ``--batch-size`` below 1."""
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose``: DEBUG logging."""
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def run_cli(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    body: Callable[[argparse.Namespace], int | None],
    *,
    interrupted: str = "interrupted",
) -> int:
    """Parse ``argv``, set up logging (``args.verbose``) and run ``body(args)``.

    Returns ``body``'s exit code (None is 0). An :class:`AttribnetError` or ``OSError``
    prints ``error: <message>`` on stderr and returns 2 (1 for an error whose
    ``exit_code`` says so: a job that failed on good input); Ctrl-C prints ``interrupted`` and
    returns 130.
    """
    from attribnet.cli.logs import setup_logging

    try:
        args = parser.parse_args(argv)
        setup_logging(getattr(args, "verbose", False))
        code = body(args)
    except (AttribnetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", USER_ERROR)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return INTERRUPTED
    return DONE if code is None else code
