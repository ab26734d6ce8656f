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
    """Linear(C, D, no bias), BatchNorm1d(D), then L2 normalisation: the space of the
    ArcFace/triplet losses and FAISS.

    The batch norm (the "BN-neck" of face-recognition embeddings) centres the embedding
    before normalisation. Without it the pooled features, all positive after ReLU, put every
    embedding in a narrow cone: on the demo, known and unseen generators alike had cosine
    0.99 to their nearest class prototype, and cosine scores could not flag the unseen one.
    """

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.fc = nn.Linear(in_features, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, features_bc: Tensor) -> Tensor:
        """(B, C) -> (B, D), unit L2 norm."""
        return F.normalize(self.bn(self.fc(features_bc)), dim=1)
