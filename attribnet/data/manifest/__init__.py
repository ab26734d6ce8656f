"""Manifests: one row per video (or frame folder) with its label, quality, source and split.

On disk a manifest is CSV (columns ``path,label,quality,source_id,split,instance``) or JSON
(a list of objects with those keys; ``instance`` may be left out). Relative paths are
relative to the manifest's folder.

Build one from a folder tree and split it by source::

    python -m attribnet.data.manifest build <tree> --out manifest.csv [--split 0.7,0.15,0.15]
        [--random-split | --split-by instance --instance-pattern REGEX] [--seed 0]
        [--layout quality/class] [--source-pattern REGEX]

Tree layouts (see :func:`scan_tree`): ``<class>/<video>.mp4``,
``<quality>/<class>/<video>.mp4`` and the same with frame folders
(``<class>/<video>/<frame>.png``, DFDM's pre-cropped faces) in place of video files.
"""

from attribnet.data.manifest.rows import (
    SPLITS,
    ManifestRow,
    class_names,
    read_manifest,
    write_manifest,
)
from attribnet.data.manifest.splits import DEFAULT_SPLIT, PAPER_RANDOM_SPLIT, assign_splits
from attribnet.data.manifest.tree import IMAGE_SUFFIXES, VIDEO_SUFFIXES, scan_tree

__all__ = [
    "DEFAULT_SPLIT",
    "IMAGE_SUFFIXES",
    "PAPER_RANDOM_SPLIT",
    "SPLITS",
    "VIDEO_SUFFIXES",
    "ManifestRow",
    "assign_splits",
    "class_names",
    "read_manifest",
    "scan_tree",
    "write_manifest",
]
