"""attribnet: which generator model made this deepfake video?"""

import os

# albumentations checks PyPI for updates on import (a network call of ~2.5 s offline).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
