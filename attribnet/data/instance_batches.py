"""Training batches that mix generator trainings (instances) of every architecture.

A batch of :class:`InstanceMixedBatches` holds ``batch_size / m_per_class`` classes, and of
each class ``m_per_class`` clips spread evenly over ``instances_per_class`` different
instances (manifest column ``instance``: the generator training that made the video). With
``m_per_class == instances_per_class`` every same-class pair of a batch comes from two
different trainings, so a metric loss on the batch (triplet) can only pull clips together
across trainings: what the architectures share, not what one training leaves.

Outlier clips (label :data:`~attribnet.data.clips.OUTLIER_LABEL`) and clips of no instance
are one more group to draw from, without the instance rule. Batches are fixed by the
``rng`` passed in, so a resumed epoch draws the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from attribnet.errors import DataError


class InstanceMixedBatches:
    """A batch sampler (lists of dataset indices), ``len(labels) // batch_size`` batches.

    labels, instances: (N,) int64 per item (instance -1: none). Each batch draws its
    classes without replacement, each class its instances without replacement, each
    instance its items at random (with replacement only when an instance has fewer items
    than its share). Raises DataError when a class has fewer than ``instances_per_class``
    instances or the batch needs more classes than there are.
    """

    def __init__(
        self,
        labels: np.ndarray,
        instances: np.ndarray,
        batch_size: int,
        m_per_class: int,
        instances_per_class: int,
        rng: np.random.Generator,
    ):
        labels, instances = np.asarray(labels), np.asarray(instances)
        if labels.shape != instances.shape or labels.ndim != 1:
            raise ValueError(f"labels {labels.shape} and instances {instances.shape} differ")
        if m_per_class < 1 or instances_per_class < 1 or m_per_class % instances_per_class:
            raise ValueError(
                f"m_per_class ({m_per_class}) must be a multiple of instances_per_class "
                f"({instances_per_class}), both >= 1"
            )
        if batch_size % m_per_class:
            raise ValueError(f"batch_size {batch_size} is not a multiple of m_per_class")
        self.batch_size, self.m, self.k = batch_size, m_per_class, instances_per_class
        self.rng = rng
        # class -> its instances' item indices; outliers and instance-less items: one group
        self.groups: dict[int, list[np.ndarray]] = {}
        short = []
        for label in np.unique(labels):
            rows = labels == label
            if label < 0 or (instances[rows] < 0).any():
                self.groups[int(label)] = [np.flatnonzero(rows)] * instances_per_class
                continue
            parts = [np.flatnonzero(rows & (instances == i)) for i in np.unique(instances[rows])]
            if len(parts) < instances_per_class:
                short.append(f"class {int(label)}: {len(parts)}")
            self.groups[int(label)] = parts
        if short:
            raise DataError(
                f"train.instances_per_class {instances_per_class} needs that many generator "
                f"trainings (manifest column instance) of every class; {', '.join(short)}"
            )
        per_batch = batch_size // m_per_class
        if per_batch > len(self.groups):
            raise DataError(
                f"a batch of {batch_size} with train.m_per_class {m_per_class} needs "
                f"{per_batch} classes; the training set has {len(self.groups)}"
            )
        self.num_batches = max(len(labels) // batch_size, 1)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        labels = np.array(sorted(self.groups))
        per_instance = self.m // self.k
        for _ in range(self.num_batches):
            batch: list[int] = []
            for label in self.rng.choice(labels, self.batch_size // self.m, replace=False):
                parts = self.groups[int(label)]
                for p in self.rng.choice(len(parts), self.k, replace=False):
                    items = parts[p]
                    take = self.rng.choice(items, per_instance, replace=len(items) < per_instance)
                    batch.extend(int(i) for i in take)
            yield batch
