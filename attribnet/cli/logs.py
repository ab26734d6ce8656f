"""The one place that configures logging for the command-line entry points."""

from __future__ import annotations

import logging


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr: INFO by default, DEBUG with ``verbose``; quiet noisy libraries."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for name in ("PIL", "matplotlib", "faiss"):
        logging.getLogger(name).setLevel(logging.WARNING)
