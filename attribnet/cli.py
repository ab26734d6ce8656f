"""What every ``python -m attribnet.<command>`` shares: the parser, logging and exit codes.

Exit codes: 0 done, 1 nothing to report (e.g. no video could be attributed), 2 a user
error (one line on stderr, no traceback), 130 interrupted (run the same command again to
resume where it resumes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from attribnet.errors import AttribnetError, ConfigError

DONE, NOTHING, USER_ERROR, INTERRUPTED = 0, 1, 2, 130


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ConfigErrors (one line, exit code 2)."""

    def error(self, message: str) -> Any:
        raise ConfigError(f"{message} (see --help)")


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
    prints ``error: <message>`` on stderr and returns 2; Ctrl-C prints ``interrupted`` and
    returns 130.
    """
    from attribnet.logs import setup_logging

    try:
        args = parser.parse_args(argv)
        setup_logging(getattr(args, "verbose", False))
        code = body(args)
    except (AttribnetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return INTERRUPTED
    return DONE if code is None else code
