"""Checks shared by the metrics: every array argument is validated (shape, dtype, finite
values, matching lengths) before use, with a ValueError that names it."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_1d(name: str, values: Any) -> np.ndarray:
    """``values`` as a 1-D array."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def as_labels(name: str, values: Any, num_classes: int | None = None) -> np.ndarray:
    """Generator ids as int64 (N,), within ``0..num_classes-1`` when given."""
    array = as_1d(name, values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer generator ids, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if num_classes is not None and array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"{name} holds ids outside 0..{num_classes - 1}: min {array.min()}, max {array.max()}"
        )
    return array


def as_scores(name: str, values: Any) -> np.ndarray:
    """Non-empty finite scores as float64 (N,)."""
    array = as_1d(name, values).astype(np.float64)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def as_mask(name: str, values: Any) -> np.ndarray:
    """A boolean mask (N,) from bools or 0/1."""
    array = as_1d(name, values)
    if array.dtype != np.bool_:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1)")
        array = array.astype(bool)
    return array


def same_length(**arrays: np.ndarray) -> None:
    """Raise unless every array (keyword = its name in the message) has one length."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"length mismatch: {lengths}")
