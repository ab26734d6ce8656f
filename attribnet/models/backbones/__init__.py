"""The backbone registry: one per-frame trunk per name, with what the encoder needs to know.

A trunk maps images to a feature map, ``trunk.forward_features: (N, 3, H, W) -> (N, C, h,
w)``; the encoder adds the spatial attention ``last`` (one SAM on that map), pools and
fuses. ``every_block`` (a SAM inside every residual block, the authors' placement) and
CBAM's channel attention exist only where the spec has ``block_attention``: the ResNets.

A new backbone is one module with a builder ``(weights: str | None) -> trunk`` plus one
:class:`BackboneSpec` line in :data:`BACKBONES`; the model tests pick it up from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from attribnet.data.augment import IMAGENET_MEAN, IMAGENET_STD
from attribnet.models.backbones.meso import build_meso_inception4
from attribnet.models.backbones.resnet import RESNETS, add_block_attention, build_resnet
from attribnet.models.backbones.timm_backbones import build_timm

SAM_PLACEMENTS = ("every_block", "last", "none")

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class Preprocessing:
    """What a backbone expects of its frames: ``(x / 255 - mean) / std`` per RGB channel,
    faces of ``input_size`` x ``input_size`` pixels."""

    mean: Triple
    std: Triple
    input_size: int


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry.

    ``build(weights)`` returns the trunk (``weights``: None for random init, or a path;
    ResNets also take ``imagenet``). ``num_features`` is the trunk's C.
    ``block_attention(trunk, spatial, channel)``, where it exists, puts a SAM and/or CBAM's
    channel attention in every block.
    """

    name: str
    build: Callable[[str | None], nn.Module]
    num_features: int
    preprocessing: Preprocessing
    block_attention: Callable[[nn.Module, bool, bool], None] | None = None

    @property
    def sam_placements(self) -> tuple[str, ...]:
        """The ``sam`` values this trunk supports."""
        return SAM_PLACEMENTS if self.block_attention is not None else ("last", "none")

    @property
    def channel_attention(self) -> bool:
        """Whether CBAM's channel attention can go in this trunk's blocks."""
        return self.block_attention is not None

    def check_attention(self, sam: str, channel_attention: bool) -> None:
        """ValueError, naming this backbone, for attention it cannot have."""
        if sam not in SAM_PLACEMENTS:
            raise ValueError(f"unknown sam placement {sam!r}; use one of {SAM_PLACEMENTS}")
        if sam not in self.sam_placements:
            raise ValueError(
                f"sam placement {sam!r} is not supported by backbone {self.name!r} (SAMs in "
                f"blocks exist for the ResNets only); use one of {self.sam_placements}"
            )
        if channel_attention and not self.channel_attention:
            raise ValueError(
                f"channel_attention is not supported by backbone {self.name!r}; only the "
                f"ResNets ({', '.join(RESNETS)}) have it"
            )


IMAGENET = Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224)


def _resnet(name: str, num_features: int) -> BackboneSpec:
    return BackboneSpec(name, partial(build_resnet, name), num_features, IMAGENET,
                        block_attention=add_block_attention)  # fmt: skip


def _timm(name: str, num_features: int, preprocessing: Preprocessing) -> BackboneSpec:
    return BackboneSpec(name, partial(build_timm, name), num_features, preprocessing)


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        _resnet("resnet10", 512),
        _resnet("resnet18", 512),
        _resnet("resnet34", 512),
        _resnet("resnet50", 2048),
        _resnet("resnet101", 2048),
        # timm's pretrained configurations: Inception-style [-1, 1] inputs at 299 px
        _timm("xception", 2048, Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 299)),
        _timm("efficientnet_b0", 1280, IMAGENET),
        _timm("efficientnet_b4", 1792, Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 320)),
        # the paper's 256 px faces, pixels scaled to [0, 1]
        BackboneSpec("meso_inception4", build_meso_inception4, 16,
                     Preprocessing((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 256)),
    )
}  # fmt: skip


def get_backbone(name: str) -> BackboneSpec:
    """The registry entry ``name``; ValueError listing the valid names."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; use one of {sorted(BACKBONES)}")
    return BACKBONES[name]


__all__ = ["BACKBONES", "SAM_PLACEMENTS", "BackboneSpec", "Preprocessing", "get_backbone"]
