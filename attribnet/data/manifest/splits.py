"""Train / val / test splits of manifest rows, grouped by source or instance, or per row."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from attribnet.data.manifest.rows import SPLITS, ManifestRow
from attribnet.errors import ConfigError, DataError

SPLIT_GROUPS = ("source_id", "instance")
"""What a grouped split keeps together: the source content, or the generator training."""
DEFAULT_SPLIT = (0.7, 0.15, 0.15)
PAPER_RANDOM_SPLIT = (0.7, 0.0, 0.3)
"""DMA-STA's split: 70% train / 30% test, drawn per video (use with ``group_by=None``)."""


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three finite non-negative numbers summing to 1."""
    values = tuple(float(f) for f in fractions)
    if len(values) != len(SPLITS):
        raise ConfigError(f"split fractions need {len(SPLITS)} values {SPLITS}, got {values}")
    if not all(math.isfinite(f) and f >= 0 for f in values):
        raise ConfigError(f"split fractions must be finite and >= 0, got {values}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got {values} (sum {sum(values):g})")
    return values[0], values[1], values[2]


def assign_splits(
    rows: Sequence[ManifestRow],
    fractions: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    group_by: str | None = "source_id",
    overwrite: bool = False,
) -> list[ManifestRow]:
    """Rows (same order) with ``split`` set to train/val/test in the given proportions.

    ``group_by="source_id"`` keeps every row sharing a ``source_id`` in one split, so a
    source never appears in two splits at any quality (a row without a source_id is its own
    group). ``group_by="instance"`` keeps every row sharing an ``instance`` in one split
    (the cross-instance protocol); every row must name its instance. Groups are dealt in a
    seeded random order, each to the split furthest below its target row count.
    ``group_by=None`` draws per row (DMA-STA's split; see PAPER_RANDOM_SPLIT), with counts
    rounded by largest remainder.

    Rows that already have a split keep it unless ``overwrite``; in grouped mode the rest of
    their group follows them, and a group already spread over two splits is a DataError.
    Fractions apply to the rows still to be assigned. The result depends on ``seed`` and the
    rows' content, not on their order.
    """
    fractions = check_fractions(fractions)
    rng = np.random.default_rng(seed)
    if group_by is None:
        splits = _random_splits(rows, fractions, rng, overwrite)
    elif group_by in SPLIT_GROUPS:
        splits = _grouped_splits(rows, fractions, rng, overwrite, group_by)
    else:
        raise ConfigError(f"cannot group splits by {group_by!r}; use one of {SPLIT_GROUPS}")
    return [replace(r, split=s) for r, s in zip(rows, splits, strict=True)]


def _largest_remainder(n: int, fractions: Sequence[float]) -> list[int]:
    exact = [f * n for f in fractions]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _random_splits(
    rows: Sequence[ManifestRow],
    fractions: Sequence[float],
    rng: np.random.Generator,
    overwrite: bool,
) -> list[str]:
    splits = ["" if overwrite else r.split for r in rows]
    todo = sorted((i for i, s in enumerate(splits) if not s), key=lambda i: (rows[i].path, i))
    order = [todo[j] for j in rng.permutation(len(todo))]
    start = 0
    for name, count in zip(SPLITS, _largest_remainder(len(todo), fractions), strict=True):
        for i in order[start : start + count]:
            splits[i] = name
        start += count
    return splits


def _grouped_splits(
    rows: Sequence[ManifestRow],
    fractions: Sequence[float],
    rng: np.random.Generator,
    overwrite: bool,
    group_by: str,
) -> list[str]:
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        key = getattr(r, group_by)
        if not key and group_by == "instance":
            raise DataError(
                f"{r.path} has no instance: a cross-instance split needs every row's "
                "generator training (the manifest's 'instance' column)"
            )
        groups.setdefault(key or r.path, []).append(i)
    splits = ["" if overwrite else r.split for r in rows]
    open_groups = []
    for key in sorted(groups):
        given = {splits[i] for i in groups[key]} - {""}
        if len(given) > 1:
            raise DataError(
                f"{group_by} {key!r} is already in splits {sorted(given)}; it must stay "
                "in one split (re-split with overwrite=True)"
            )
        if given:
            (split,) = given
            for i in groups[key]:
                splits[i] = split
        else:
            open_groups.append(key)
    order = [groups[open_groups[j]] for j in rng.permutation(len(open_groups))]
    _deal_groups(order, fractions, splits)
    return splits


def _deal_groups(groups: list[list[int]], fractions: Sequence[float], splits: list[str]) -> None:
    """Give each group (in the given order) to the split furthest below its target."""
    total = sum(len(g) for g in groups)
    targets = [f * total for f in fractions]
    filled = [0] * len(SPLITS)
    allowed = [s for s, f in enumerate(fractions) if f > 0]
    for group in groups:
        k = max(allowed, key=lambda s: (targets[s] - filled[s], -s))
        filled[k] += len(group)
        for i in group:
            splits[i] = SPLITS[k]
