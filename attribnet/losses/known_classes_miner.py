"""A miner that keeps only triplets of known classes (labels >= 0)."""

from __future__ import annotations

from pytorch_metric_learning.miners import BaseMiner
from torch import Tensor


class KnownClassesMiner(BaseMiner):
    """Runs ``miner`` and drops every triplet with a member whose label is negative (an
    outlier or simulated clip, "none of the known").

    The triplets left are exactly those the wrapped miner finds on the known rows alone, so
    the triplet loss ignores the other rows while the batch keeps its size (which
    ``DistributedMinerWrapper`` needs: it gathers equal-sized batches from every rank).
    With every label known it returns the wrapped miner's triplets unchanged.
    """

    def __init__(self, miner: BaseMiner, **kwargs):
        super().__init__(**kwargs)
        self.miner = miner

    def mine(
        self, embeddings: Tensor, labels: Tensor, ref_emb: Tensor, ref_labels: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(a, p, n) index tensors: anchors into ``embeddings``, the others into ``ref_emb``."""
        anchors, positives, negatives = self.miner(embeddings, labels, ref_emb, ref_labels)
        keep = (labels[anchors] >= 0) & (ref_labels[positives] >= 0) & (ref_labels[negatives] >= 0)
        return anchors[keep], positives[keep], negatives[keep]
