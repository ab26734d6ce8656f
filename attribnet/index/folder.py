"""An index folder on disk: its files and the ``meta.json`` sidecar, read and checked
(:class:`attribnet.index.GeneratorIndex` writes them).

A folder holds two or three files, each written atomically (temp file + rename):
``index.faiss`` (:mod:`attribnet.index.faiss_store`), ``meta.json`` and, when the index has
the ``mahalanobis`` Gaussians, ``open_set.npz`` (:mod:`attribnet.openset.policy`).

``meta.json`` holds the per-row generator ids, video ids and qualities, class names, the
embedding dim, the sha256 and path of the model checkpoint that made the embeddings (the
path relative to the index folder, so that an index moved together with its run, or used
from another working directory, still finds its checkpoint: :func:`checkpoint_record`),
per-class prototypes (mean embedding of the class, re-normalised), the open-set score, its
threshold and how the score was chosen (``open_set``). A query with another checkpoint is
refused (IndexMismatchError).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from attribnet.errors import DataError
from attribnet.index.faiss_store import TUNE_K, read_faiss
from attribnet.openset.policy import OpenSetPolicy
from attribnet.runtime.faiss_import import faiss

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
META_FILE = "meta.json"
FORMAT_VERSION = 2
CHECKPOINT_BASE = "index folder"  # what a relative checkpoint path is relative to
READABLE_FORMATS = (1, 2)
_META_KEYS = (
    "format_version", "embedding_dim", "ntotal", "index_bytes", "class_names", "labels",
    "video_ids", "qualities", "prototypes", "prototype_counts", "threshold", "checkpoint",
)  # fmt: skip


def read_folder(folder: Path) -> tuple[faiss.Index, dict[str, Any]]:
    """The CPU FAISS index and the parsed sidecar of an index folder; DataError naming the
    folder or file when one is missing, corrupt or truncated."""
    if not folder.is_dir():
        raise DataError(f"no index folder at {folder} (build one: python -m attribnet.index)")
    meta = read_meta(folder / META_FILE)
    return read_index_file(folder / INDEX_FILE, meta), meta


def index_fields(meta: dict[str, Any], folder: Path) -> dict[str, Any]:
    """:class:`GeneratorIndex`'s keywords (but ``use_gpu``) from the parsed sidecar of the
    index ``folder``; KeyError, TypeError or ValueError when it is corrupt."""
    names, dim = list(meta["class_names"]), int(meta["embedding_dim"])
    labels = np.asarray(meta["labels"], dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(f"labels outside the class ids 0..{len(names) - 1}")
    return {
        "labels": labels,
        "class_names": names,
        "video_ids": [str(v) for v in meta["video_ids"]],
        "qualities": [str(q) for q in meta["qualities"]],
        "prototypes": np.asarray(meta["prototypes"], dtype=np.float32).reshape(len(names), dim),
        "prototype_counts": np.asarray(meta["prototype_counts"], dtype=np.int64),
        "checkpoint_sha256": str(meta["checkpoint"]["sha256"]),
        "checkpoint_path": checkpoint_path(meta["checkpoint"], folder),
        "nprobe_recall": (meta.get("nprobe_tuning") or {}).get(f"recall_at_{TUNE_K}"),
        "open_set": OpenSetPolicy.fields(meta),
    }


def checkpoint_record(path: str, sha256: str, folder: Path) -> dict[str, str]:
    """``meta.json``'s ``checkpoint`` for the checkpoint at ``path`` (absolute, or relative
    to the working directory) of an index written to ``folder``: the path relative to the
    index folder (POSIX separators), absolute only where there is no relative path (another
    drive), and the sha256 that decides whether a checkpoint found is the right one."""
    if not path:
        return {"path": "", "sha256": sha256}
    file = Path(path)
    file = file.parent.resolve() / file.name  # a linked best.pt keeps its own name
    try:
        stored = Path(os.path.relpath(file, folder.resolve())).as_posix()
    except ValueError:  # another drive than the index folder's
        stored = str(file)
    return {"path": stored, "relative_to": CHECKPOINT_BASE, "sha256": sha256}


def checkpoint_path(record: dict[str, Any], folder: Path) -> str:
    """The checkpoint of ``meta.json``'s ``record``, as this process opens it: a relative
    path is resolved against the index ``folder``. An older index stored the path as given
    at build time, relative to that working directory: it is read so when that file exists
    here, else against the index folder when the file is there, else as stored (the caller
    then says it is not found)."""
    stored = str(record["path"])
    if not stored or Path(stored).is_absolute():
        return stored
    beside = os.path.normpath(folder.resolve() / stored)
    if record.get("relative_to") == CHECKPOINT_BASE:
        return beside
    if Path(stored).exists():
        return str(Path(stored).absolute())
    return beside if Path(beside).exists() else stored


def read_meta(path: Path) -> dict[str, Any]:
    """Parse and sanity-check ``meta.json``; DataError naming the file otherwise."""
    if not path.is_file():
        raise DataError(f"{path}: missing (not an index folder, or an interrupted build)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: corrupt index sidecar, not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or any(k not in meta for k in _META_KEYS):
        missing = [k for k in _META_KEYS if not isinstance(meta, dict) or k not in meta]
        raise DataError(f"{path}: corrupt index sidecar, missing keys {missing}")
    if meta["format_version"] not in READABLE_FORMATS:
        raise DataError(
            f"{path}: index format {meta['format_version']}, this attribnet reads "
            f"{' and '.join(map(str, READABLE_FORMATS))}; rebuild the index"
        )
    n = meta["ntotal"]
    lengths = {k: len(meta[k]) for k in ("labels", "video_ids", "qualities")}
    if any(v != n for v in lengths.values()):
        raise DataError(f"{path}: corrupt index sidecar, {lengths} rows for {n} vectors")
    return meta


def read_index_file(path: Path, meta: dict[str, Any]) -> faiss.Index:
    """Read ``index.faiss`` and check it against the sidecar; DataError naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: missing (an interrupted build?); rebuild the index")
    size = path.stat().st_size
    if meta["index_bytes"] and size != meta["index_bytes"]:
        raise DataError(
            f"{path}: truncated or replaced ({size} bytes, {META_FILE} expects "
            f"{meta['index_bytes']}); rebuild the index"
        )
    index = read_faiss(path)
    if index.ntotal != meta["ntotal"] or index.d != meta["embedding_dim"]:
        raise DataError(
            f"{path}: holds {index.ntotal} vectors of dim {index.d}, {META_FILE} describes "
            f"{meta['ntotal']} of dim {meta['embedding_dim']}; rebuild the index"
        )
    return index
