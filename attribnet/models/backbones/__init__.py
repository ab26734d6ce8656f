"""The backbone registry: one per-frame trunk per name, with what the encoder needs to know.

A trunk maps images to a feature map, ``trunk.forward_features: (N, 3, H, W) -> (N, C, h,
w)``; the encoder adds the spatial attention ``last`` (one SAM on that map), pools and
fuses. ``every_block`` (a SAM inside every residual block, the authors' placement) and
CBAM's channel attention exist only where the spec has ``block_attention``: the ResNets.

A new backbone is one module with a builder ``(weights: str | None) -> trunk``, its card in
:data:`attribnet.config.choices.BACKBONE_CARDS` (what a recipe may name, torch-free) and its
builder line in ``_BUILDERS``; the model tests pick it up from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from attribnet.config.choices import (
    BACKBONE_CARDS,
    RESNETS,
    SAM_PLACEMENTS,
    BackboneCard,
    Preprocessing,
)
from attribnet.models.backbones.meso import build_meso_inception4
from attribnet.models.backbones.resnet import add_block_attention, build_resnet
from attribnet.models.backbones.timm_backbones import build_timm


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry: the recipe's view of the backbone (``card``: name, C,
    preprocessing, attention support; :mod:`attribnet.config.choices`) and how to build it.

    ``build(weights)`` returns the trunk (``weights``: None for random init, or a path;
    ResNets also take ``imagenet``). ``block_attention(trunk, spatial, channel)``, where it
    exists, puts a SAM and/or CBAM's channel attention in every block.
    """

    card: BackboneCard
    build: Callable[[str | None], nn.Module]
    block_attention: Callable[[nn.Module, bool, bool], None] | None = None

    def __post_init__(self) -> None:
        if self.card.block_attention != (self.block_attention is not None):
            raise ValueError(f"{self.card.name}: card and builder disagree on block attention")

    def __getattr__(self, name: str):
        """``name``, ``num_features``, ``preprocessing``, ``sam_placements``,
        ``channel_attention``, ``check_attention``: the card's."""
        if name == "card":
            raise AttributeError(name)
        return getattr(self.card, name)


_BUILDERS: dict[str, tuple[Callable, Callable | None]] = {
    **{name: (partial(build_resnet, name), add_block_attention) for name in RESNETS},
    **{name: (partial(build_timm, name), None)
       for name in ("xception", "efficientnet_b0", "efficientnet_b4")},
    "meso_inception4": (build_meso_inception4, None),
}  # fmt: skip

BACKBONES: dict[str, BackboneSpec] = {
    name: BackboneSpec(card, *_BUILDERS[name]) for name, card in BACKBONE_CARDS.items()
}


def get_backbone(name: str) -> BackboneSpec:
    """The registry entry ``name``; ValueError listing the valid names."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; use one of {sorted(BACKBONES)}")
    return BACKBONES[name]


__all__ = ["BACKBONES", "SAM_PLACEMENTS", "BackboneSpec", "Preprocessing", "get_backbone"]
