"""attribnet: which generator model made this deepfake video?"""

import os

# albumentations checks PyPI for updates on import (a network call of ~2.5 s offline).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"


def __getattr__(name: str):
    """``from attribnet import Attributor`` without importing torch on ``import attribnet``."""
    if name == "Attributor":
        from attribnet.query.attributor import Attributor

        return Attributor
    raise AttributeError(f"module 'attribnet' has no attribute {name!r}")
