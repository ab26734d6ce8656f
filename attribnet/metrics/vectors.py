"""Unit embeddings: the one normalisation every cosine in attribnet goes through.

Videos are embedded by :func:`attribnet.predict.predict_videos`.
"""

from __future__ import annotations

import numpy as np


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D) float32, C-contiguous, rows scaled to unit length (zero rows stay 0).

    Raises ValueError for a non-2-D array or non-finite values.
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected embeddings of shape (N, D), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings hold NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
