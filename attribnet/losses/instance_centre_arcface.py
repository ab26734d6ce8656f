"""ArcFace with one sub-centre per generator training (Sub-center ArcFace, Deng et al.,
ECCV 2020, with the sub-centre given by the training instance instead of chosen)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attribnet.losses.instance_adversary import NO_INSTANCE
from attribnet.losses.per_class_arcface_loss import PerClassArcFaceLoss


class InstanceCentreArcFaceLoss(PerClassArcFaceLoss):
    """Each class has one centre per training instance (``num_instances`` columns of ``W``
    per class, class k's at ``k * num_instances + i``).

    A clip of class y made by instance i is pulled, with the margin, to the centre (y, i);
    every other class counts by its nearest centre, and so does class y for a clip without
    an instance (``-1``) and at inference (:meth:`get_logits`). A class need not be one
    point for all its trainings, only nearer to each of its trainings' centres than any
    other class is; the margin still separates classes, not trainings.

    Call :meth:`with_instances` in training; a plain call (no instances) is PML's
    Sub-center ArcFace (nearest centre of the target class).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margins_deg: Sequence[float],
        num_instances: int,
        **kwargs,
    ):
        if num_instances < 1:
            raise ValueError(f"need >= 1 instance, got {num_instances}")
        if len(margins_deg) != num_classes:
            raise ValueError(f"need {num_classes} margins, got {len(margins_deg)}")
        super().__init__(
            num_classes * num_instances,
            embedding_size,
            [m for m in margins_deg for _ in range(num_instances)],
            **kwargs,
        )
        self.num_classes, self.num_instances = num_classes, num_instances
        self.class_margins = self.class_margins[::num_instances].clone()
        self._labels: Tensor | None = None
        self._instances: Tensor | None = None

    def with_instances(self, embeddings: Tensor, labels: Tensor, instances: Tensor) -> Tensor:
        """The loss with each clip's target centre chosen by its instance id."""
        self._labels, self._instances = labels, instances
        try:
            return self(embeddings, labels)
        finally:
            self._labels = self._instances = None

    def get_cosine(self, embeddings: Tensor) -> Tensor:
        """(B, D) -> (B, K): the nearest centre of each class, except the instance's own
        centre for the target class of a clip with an instance."""
        cosine = self.distance(embeddings, self.W.t()).view(
            -1, self.num_classes, self.num_instances
        )
        nearest = cosine.max(dim=2).values
        if self._instances is None:
            return nearest
        rows = torch.nonzero(self._instances != NO_INSTANCE).squeeze(1)
        own = cosine[rows, self._labels[rows], self._instances[rows]]
        return nearest.index_put((rows, self._labels[rows]), own)
