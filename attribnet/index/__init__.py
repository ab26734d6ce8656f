"""The generator index: nearest-neighbour search over embeddings of training videos.

    python -m attribnet.index build --checkpoint runs/<name>/best.pt --out indexes/<name>
    python -m attribnet.index info indexes/<name>

An index folder holds ``index.faiss`` (one L2-normalised embedding per training video,
searched by cosine similarity), ``meta.json`` (the sidecar: per-row labels and ids, class
prototypes, the checkpoint's sha256, the open-set score and threshold) and, when the index
has them, ``open_set.npz``. An index refuses queries from another checkpoint.

One concept per module:

- :mod:`.faiss_store`  the FAISS index: flat or IVF, ``nprobe`` tuning, GPU placement, reading
- :mod:`.store`        :class:`GeneratorIndex`: vectors, labels and ids; search, k-NN vote,
                       prototypes; save and load
- :mod:`.open_set`     :class:`OpenSetPolicy` (``index.open_set``): which knownness score is
                       chosen, its threshold, ``unknown generator``
- :mod:`.folder`       the folder on disk: ``meta.json`` written, read and checked
- :mod:`.build`        :func:`build_index_for_run`: embed a run's videos, index, calibrate;
                       :func:`index_built_from`: whether a folder holds a checkpoint's index
- :mod:`.cli`          argument parsing and :func:`main`
"""

from attribnet.files.checkpoints import resolve_checkpoint
from attribnet.index.build import build_index_for_run, index_built_from
from attribnet.index.faiss_store import (
    TARGET_RECALL,
    gpu_available,
    ivf_nlist,
    recall_at_k,
    tune_nprobe,
)
from attribnet.index.folder import INDEX_FILE, META_FILE
from attribnet.index.store import GeneratorIndex
from attribnet.openset.policy import (
    KNOWNNESS_SCORES,
    OPEN_SET_FILE,
    OpenSetPolicy,
    calibrate_threshold,
)

__all__ = [
    "INDEX_FILE",
    "KNOWNNESS_SCORES",
    "META_FILE",
    "OPEN_SET_FILE",
    "TARGET_RECALL",
    "GeneratorIndex",
    "OpenSetPolicy",
    "build_index_for_run",
    "calibrate_threshold",
    "gpu_available",
    "index_built_from",
    "ivf_nlist",
    "recall_at_k",
    "resolve_checkpoint",
    "tune_nprobe",
]
