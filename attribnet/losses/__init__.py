"""Losses: cross-entropy, ArcFace (per-class margins) and triplet, combined by weights."""

from attribnet.losses.attribution_loss import AttributionLoss
from attribnet.losses.per_class_arcface_loss import PerClassArcFaceLoss

__all__ = ["AttributionLoss", "PerClassArcFaceLoss"]
