"""Heads on the clip features: generator classifier and L2-normalised embedding."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ClassifierHead(nn.Module):
    """Linear(C, K): logits over the K known generators."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features_bc: Tensor) -> Tensor:
        """(B, C) -> logits (B, K)."""
        return self.fc(features_bc)


class EmbeddingHead(nn.Module):
    """Linear(C, D) then L2 normalisation: the space of the ArcFace/triplet losses and FAISS.

    The pooled features are all positive, so the embeddings of every class lie in a narrow
    cone. A BatchNorm1d before the normalisation (a "BN-neck") would spread them, but it
    lowered the demo's test accuracy (docs/results.md, "Figures moved from module
    docstrings"), so there is none. Rankings (kNN, nearest prototype) do not depend on the
    cone.
    """

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.fc = nn.Linear(in_features, dim)

    def forward(self, features_bc: Tensor) -> Tensor:
        """(B, C) -> (B, D), unit L2 norm."""
        return F.normalize(self.fc(features_bc), dim=1)
