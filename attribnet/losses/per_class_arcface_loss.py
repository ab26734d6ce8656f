"""ArcFace with a margin per class (ArcFaceMod of Korshunov et al., ICASSP 2022)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pytorch_metric_learning.losses import ArcFaceLoss
from torch import Tensor


class PerClassArcFaceLoss(ArcFaceLoss):
    """pytorch-metric-learning's ArcFaceLoss, but the additive angular margin depends on the
    sample's class: ``margins_deg[k]`` degrees for class k (e.g. larger for ``real``).

    Everything else (weight matrix ``W``, scale, the monotonic fallback past 180 - m) is
    PML's. With all margins equal it computes exactly ``ArcFaceLoss``.
    """

    def __init__(
        self, num_classes: int, embedding_size: int, margins_deg: Sequence[float], **kwargs
    ):
        if len(margins_deg) != num_classes:
            raise ValueError(f"need {num_classes} margins, got {len(margins_deg)}")
        super().__init__(num_classes, embedding_size, margin=float(np.mean(margins_deg)), **kwargs)
        self.register_buffer("class_margins", torch.tensor(np.radians(margins_deg)))
        self._sample_margins: Tensor | None = None

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):  # noqa: D102
        self._sample_margins = self.class_margins.to(embeddings)[labels]
        try:
            return super().compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        finally:
            self._sample_margins = None

    def modify_cosine_of_target_classes(self, cosine_of_target_classes: Tensor) -> Tensor:
        """cos(theta + m_y), or cos(theta) - m_y sin(m_y) past theta = 180 deg - m_y."""
        m = self._sample_margins
        angles = self.get_angles(cosine_of_target_classes)
        return torch.where(
            angles <= np.pi - m,
            torch.cos(angles + m),
            torch.cos(angles) - m * torch.sin(m),
        )
