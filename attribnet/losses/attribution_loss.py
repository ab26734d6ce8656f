"""The multi-task loss: weighted CE + ArcFace + triplet, returned as a named dict."""

from __future__ import annotations

import torch.nn.functional as F
from pytorch_metric_learning import miners
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.utils import distributed as pml_dist
from torch import Tensor, nn

from attribnet.config import LossConfig
from attribnet.losses.per_class_arcface_loss import PerClassArcFaceLoss


class AttributionLoss(nn.Module):
    """``{"ce", "arcface", "triplet", "total"}`` from model outputs and generator labels.

    Parts with weight 0 are not computed and absent from the dict. The ArcFace class-weight
    matrix is a parameter of this module, so optimizer and checkpoint see it.
    """

    def __init__(
        self,
        cfg: LossConfig,
        class_names: list[str],
        embedding_dim: int,
        distributed: bool = False,
    ):
        super().__init__()
        self.weights = {
            "ce": cfg.ce_weight,
            "arcface": cfg.arcface_weight,
            "triplet": cfg.triplet_weight,
        }
        self.arcface = None
        self.triplet = None
        self.miner = None
        if cfg.arcface_weight:
            unknown = set(cfg.arcface_class_margins) - set(class_names)
            if unknown:
                raise ValueError(f"arcface_class_margins name unknown classes {sorted(unknown)}")
            margins = [cfg.arcface_class_margins.get(c, cfg.arcface_margin) for c in class_names]
            self.arcface = PerClassArcFaceLoss(
                len(class_names), embedding_dim, margins, scale=cfg.arcface_scale
            )
        if cfg.triplet_weight:
            triplet = TripletMarginLoss(margin=cfg.triplet_margin)
            miner = miners.TripletMarginMiner(
                margin=cfg.triplet_margin, type_of_triplets=cfg.triplet_mining
            )
            if distributed:
                triplet = pml_dist.DistributedLossWrapper(triplet)
                miner = pml_dist.DistributedMinerWrapper(miner)
            self.triplet, self.miner = triplet, miner

    def forward(self, outputs: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
        """outputs: the model's dict (logits (B, K), embedding (B, D)); labels (B,) int64."""
        parts: dict[str, Tensor] = {}
        if self.weights["ce"]:
            parts["ce"] = F.cross_entropy(outputs["logits"].float(), labels)
        if self.arcface is not None:
            parts["arcface"] = self.arcface(outputs["embedding"].float(), labels)
        if self.triplet is not None:
            emb = outputs["embedding"].float()
            parts["triplet"] = self.triplet(emb, labels, self.miner(emb, labels))
        parts["total"] = sum(self.weights[k] * v for k, v in parts.items())
        return parts
