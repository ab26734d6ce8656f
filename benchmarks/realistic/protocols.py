"""The identity-disjoint cross-instance protocol: folds of identities.

The nine identities are dealt, in a seeded order, into ``folds`` groups (3 of 3). Fold f
tests on the trainings made on pairs of two identities of group f; it validates on the
trainings of pairs inside group f + 1, and trains on every other training whose pair has
no identity of group f. Trainings of a pair that crosses group f and the rest are not
used in fold f. So a test video comes from a generator training that made no training or
validation video and shows faces no training or validation video shows; over the folds
each of the 9 pairs inside a group is a test pair once (the 27 pairs across groups only
ever train or validate). A ``real`` video (a source segment unswapped) belongs to
its identity's group alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from attribnet.data.manifest import ManifestRow


def instance_identities(instance: str) -> frozenset[str]:
    """The identities a training saw: ``A+B@1`` -> {A, B}; a real video's instance is its
    identity alone."""
    return frozenset(instance.split("@", 1)[0].split("+"))


def identity_groups(identities: Sequence[str], folds: int, seed: int = 0) -> list[list[str]]:
    """The identities in a seeded order, dealt into ``folds`` groups of (nearly) equal size."""
    ids = sorted(set(identities))
    if not 3 <= folds <= len(ids):
        raise ValueError(f"{len(ids)} identities make 3 to {len(ids)} folds, not {folds}")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return [sorted(order[f::folds]) for f in range(folds)]


def fold_split(
    rows: Sequence[ManifestRow], groups: Sequence[Sequence[str]], fold: int
) -> list[ManifestRow]:
    """The rows of fold ``fold`` with their split (test / val / train); rows of trainings
    that cross the test group and the rest are left out."""
    test, val = set(groups[fold]), set(groups[(fold + 1) % len(groups)])
    out = []
    for row in rows:
        ids = instance_identities(row.instance)
        if ids <= test:
            split = "test"
        elif ids & test:
            continue
        elif ids <= val:
            split = "val"
        else:
            split = "train"
        out.append(replace(row, split=split))
    return out


def first_instances(rows: Sequence[ManifestRow], k: int) -> list[ManifestRow]:
    """``rows`` with the training split cut to the first ``k`` training instances of each
    class (validation and test as they are): a point of the instance curve. Replica 0 of
    every pair comes first (by name), then replica 1, ...: distinct pairs before seeds."""
    keep: dict[str, list[str]] = {}
    for row in rows:
        if row.split == "train":
            names = keep.setdefault(row.label, [])
            if row.instance not in names:
                names.append(row.instance)
    allowed = {(label, i) for label, names in keep.items() for i in sorted(names, key=_order)[:k]}
    return [r for r in rows if r.split != "train" or (r.label, r.instance) in allowed]


def _order(instance: str) -> tuple[int, str]:
    pair, _, replica = instance.partition("@")
    return int(replica or 0), pair
