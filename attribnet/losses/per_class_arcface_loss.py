"""ArcFace with a margin per class (ArcFaceMod of Korshunov et al., ICASSP 2022)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pytorch_metric_learning.losses import ArcFaceLoss
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
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

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        """PML's ``LargeMarginSoftmaxLoss.compute_loss`` with the per-class margins, the
        target cosines gathered by label where PML selects them with a boolean mask (which
        waits for the GPU to count them): the same values and gradients, bitwise."""
        c_f.labels_required(labels)
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        dtype, device = embeddings.dtype, embeddings.device
        self.cast_types(dtype, device)
        miner_weights = lmu.convert_to_weights(indices_tuple, labels, dtype=dtype)
        self._sample_margins = self.class_margins.to(embeddings)[labels]
        try:
            cosine = self.get_cosine(embeddings)
            target = cosine.gather(1, labels[:, None]).squeeze(1)
            diff = (self.modify_cosine_of_target_classes(target) - target).unsqueeze(1)
        finally:
            self._sample_margins = None
        mask = torch.zeros_like(cosine).scatter_(1, labels[:, None], 1.0)
        logits = self.scale_logits(cosine + mask * diff, embeddings)
        losses = self.cross_entropy(logits, labels) * miner_weights
        loss_dict = {"loss": {"losses": losses, "indices": c_f.torch_arange_from_size(embeddings),
                              "reduction_type": "element"}}  # fmt: skip
        self.add_weight_regularization_to_loss_dict(loss_dict, self.W.t())
        return loss_dict

    def modify_cosine_of_target_classes(self, cosine_of_target_classes: Tensor) -> Tensor:
        """cos(theta + m_y), or cos(theta) - m_y sin(m_y) past theta = 180 deg - m_y."""
        m = self._sample_margins
        angles = self.get_angles(cosine_of_target_classes)
        return torch.where(
            angles <= np.pi - m,
            torch.cos(angles + m),
            torch.cos(angles) - m * torch.sin(m),
        )
