"""Losses: cross-entropy, ArcFace (per-class margins) and triplet, combined by weights, and
the open-space terms (outlier exposure, simulated unknown generators)."""

from attribnet.losses.attribution_loss import AttributionLoss, uniform_cross_entropy
from attribnet.losses.known_classes_miner import KnownClassesMiner
from attribnet.losses.per_class_arcface_loss import PerClassArcFaceLoss

__all__ = ["AttributionLoss", "KnownClassesMiner", "PerClassArcFaceLoss", "uniform_cross_entropy"]
