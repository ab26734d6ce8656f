"""The multi-task loss: weighted CE + ArcFace + triplet (+ the open-space terms), returned as
a named dict."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pytorch_metric_learning import miners
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.utils import distributed as pml_dist
from torch import Tensor, nn

from attribnet.config import LossConfig
from attribnet.data.clips import OUTLIER_LABEL
from attribnet.data.open_space import OPEN_SPACE_LABEL
from attribnet.losses.cross_instance_supcon_loss import CrossInstanceSupConLoss
from attribnet.losses.instance_adversary import NO_INSTANCE, InstanceAdversary
from attribnet.losses.instance_centre_arcface import InstanceCentreArcFaceLoss
from attribnet.losses.known_classes_miner import KnownClassesMiner
from attribnet.losses.per_class_arcface_loss import PerClassArcFaceLoss
from attribnet.losses.rows import on_rows


def uniform_cross_entropy(logits_bk: Tensor) -> Tensor:
    """(B, K) -> scalar: mean over rows of ``-mean_k log softmax_k``, the cross-entropy to
    the uniform distribution over the K classes (outlier exposure, Hendrycks et al., ICLR
    2019); its minimum, log K, is reached by a uniform softmax."""
    return -F.log_softmax(logits_bk, dim=1).mean(dim=1).mean()


class AttributionLoss(nn.Module):
    """``{"ce", "arcface", "triplet", "outlier", "open_space", "instance", "total"}`` from
    model outputs, generator labels and (for ``instance``) training-instance labels.

    Labels >= 0 are class ids; :data:`~attribnet.data.clips.OUTLIER_LABEL` (-1) marks a clip
    of ``data.outlier_classes`` and :data:`~attribnet.data.open_space.OPEN_SPACE_LABEL` (-2)
    a simulated one. CE, ArcFace and triplet see the known rows only (a part with no known
    row is 0); ``outlier`` and ``open_space`` are the :func:`uniform_cross_entropy` of their
    rows (0 without such rows), averaged over the class heads trained: the classifier's
    logits when ``ce_weight`` > 0, the scaled cosines to the ArcFace centres when
    ``arcface_weight`` > 0. A batch of known rows only gives exactly the closed-set loss.

    ``instance`` (``loss.instance_adversary_weight`` > 0, ``instance_names`` the training
    instances, ``feature_dim`` the clip features' width): the
    :class:`~attribnet.losses.instance_adversary.InstanceAdversary` cross-entropy, whose
    reversed gradient makes the features uninformative of the instance.

    ``supcon`` (``loss.supcon_weight`` > 0, an embedding head): supervised contrastive loss
    on the embeddings whose positives are the same generator from other trainings
    (:class:`~attribnet.losses.cross_instance_supcon_loss.CrossInstanceSupConLoss`).

    ``loss.arcface_instance_centres`` (needs ``instance_names``): ArcFace with one centre per
    class and training instance
    (:class:`~attribnet.losses.instance_centre_arcface.InstanceCentreArcFaceLoss`).

    ``unknown_rows=False`` promises batches of class ids only (no outlier or simulated
    clip): the parts then skip selecting the known rows, which reads the labels back to
    the host (a wait for the GPU in every training step).

    Parts with weight 0 are not computed and absent from the dict. The ArcFace class-weight
    matrix and the adversary's head are parameters of this module, so optimizer and
    checkpoint see them.
    """

    def __init__(
        self,
        cfg: LossConfig,
        class_names: list[str],
        embedding_dim: int,
        distributed: bool = False,
        instance_names: Sequence[str] = (),
        feature_dim: int = 0,
        unknown_rows: bool = True,
    ):
        super().__init__()
        self.unknown_rows = unknown_rows
        self.weights = {
            "ce": cfg.ce_weight,
            "arcface": cfg.arcface_weight,
            "triplet": cfg.triplet_weight,
            "outlier": cfg.outlier_weight,
            "open_space": cfg.open_space_weight,
            "instance": cfg.instance_adversary_weight,
            "supcon": cfg.supcon_weight,
        }
        if (cfg.outlier_weight or cfg.open_space_weight) and not (
            cfg.ce_weight or cfg.arcface_weight
        ):
            raise ValueError("outlier/open-space terms need a class head (CE or ArcFace)")
        self.arcface = None
        self.triplet = None
        self.miner = None
        if cfg.arcface_weight:
            unknown = set(cfg.arcface_class_margins) - set(class_names)
            if unknown:
                raise ValueError(f"arcface_class_margins name unknown classes {sorted(unknown)}")
            margins = [cfg.arcface_class_margins.get(c, cfg.arcface_margin) for c in class_names]
            if cfg.arcface_instance_centres:
                if len(instance_names) < 2:
                    raise ValueError(
                        "loss.arcface_instance_centres needs >= 2 training instances (the "
                        f"manifest's instance column), got {list(instance_names)}"
                    )
                self.arcface = InstanceCentreArcFaceLoss(
                    len(class_names), embedding_dim, margins, len(instance_names),
                    scale=cfg.arcface_scale,
                )  # fmt: skip
            else:
                self.arcface = PerClassArcFaceLoss(
                    len(class_names), embedding_dim, margins, scale=cfg.arcface_scale
                )
        if cfg.triplet_weight:
            triplet = TripletMarginLoss(margin=cfg.triplet_margin)
            miner = KnownClassesMiner(
                miners.TripletMarginMiner(
                    margin=cfg.triplet_margin, type_of_triplets=cfg.triplet_mining
                )
            )
            if distributed:
                triplet = pml_dist.DistributedLossWrapper(triplet)
                miner = pml_dist.DistributedMinerWrapper(miner)
            self.triplet, self.miner = triplet, miner
        self.supcon = None
        if cfg.supcon_weight:
            if not embedding_dim:
                raise ValueError("loss.supcon_weight needs an embedding head (model.embedding_dim)")
            self.supcon = CrossInstanceSupConLoss(temperature=cfg.supcon_temperature)
        self.instance_adversary = None
        if cfg.instance_adversary_weight:
            if len(instance_names) < 2 or feature_dim < 1:
                raise ValueError(
                    "loss.instance_adversary_weight needs >= 2 training instances (the "
                    f"manifest's instance column), got {list(instance_names)}"
                )
            self.instance_adversary = InstanceAdversary(feature_dim, len(instance_names))

    def forward(
        self, outputs: dict[str, Tensor], labels: Tensor, instances: Tensor | None = None
    ) -> dict[str, Tensor]:
        """outputs: the model's dict (logits (B, K), embedding (B, D), features (B, C));
        labels (B,) int64; instances (B,) int64 training-instance ids (-1: none), read by
        the instance adversary, the instance centres and SupCon's choice of positives."""
        logits = outputs["logits"].float()
        emb = outputs["embedding"].float() if "embedding" in outputs else None
        known = labels >= 0 if self.unknown_rows else None
        if instances is None:
            instances = torch.full_like(labels, NO_INSTANCE)
        parts: dict[str, Tensor] = {}
        if self.weights["ce"]:
            parts["ce"] = on_rows(F.cross_entropy, logits, labels, known)
        if isinstance(self.arcface, InstanceCentreArcFaceLoss):
            parts["arcface"] = on_rows(
                lambda e, yi: self.arcface.with_instances(e, yi[:, 0], yi[:, 1]),
                emb, torch.stack([labels, instances], 1), known, self.arcface.W,
            )  # fmt: skip
        elif self.arcface is not None:
            parts["arcface"] = on_rows(self.arcface, emb, labels, known, self.arcface.W)
        if self.triplet is not None:
            parts["triplet"] = self.triplet(emb, labels, self.miner(emb, labels))
        if self.supcon is not None:
            parts["supcon"] = on_rows(
                lambda e, yi: self.supcon.with_instances(e, yi[:, 0], yi[:, 1]),
                emb, torch.stack([labels, instances], 1), known,
            )  # fmt: skip
        for name, label in (("outlier", OUTLIER_LABEL), ("open_space", OPEN_SPACE_LABEL)):
            if self.weights[name]:
                parts[name] = self._uniform_target(logits, emb, labels == label)
        if self.instance_adversary is not None:
            parts["instance"] = self.instance_adversary(outputs["features"], instances)
        parts["total"] = sum(self.weights[k] * v for k, v in parts.items())
        return parts

    def _uniform_target(self, logits_bk: Tensor, emb_bd: Tensor | None, rows: Tensor) -> Tensor:
        """Mean over the trained class heads of the uniform cross-entropy of ``rows``."""
        if not bool(rows.any()):
            return logits_bk.sum() * 0.0
        heads = []
        if self.weights["ce"]:
            heads.append(uniform_cross_entropy(logits_bk[rows]))
        if self.arcface is not None and emb_bd is not None:
            heads.append(uniform_cross_entropy(self.arcface.get_logits(emb_bd[rows])))
        return torch.stack(heads).mean()
