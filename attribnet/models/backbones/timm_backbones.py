"""Trunks from timm: Xception (Chollet, CVPR 2017; FaceForensics++'s baseline) and
EfficientNet-B0/B4 (Tan & Le, ICML 2019; B4 won the DFDC).

Built with ``timm.create_model(arch, pretrained=False, num_classes=0, global_pool="")``:
no classifier, no pooling, so ``forward_features`` and ``forward`` both give the last
feature map. Never downloads: random init, or a local state dict in timm's key layout
(classifier keys, ``fc.*`` / ``classifier.*`` / ``head.*``, are ignored).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from torch import nn

from attribnet.models.backbones._common import load_local_weights

# our name -> timm's architecture names, newest first (timm 0.9 renamed xception to
# legacy_xception)
TIMM_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "xception": ("legacy_xception", "xception"),
    "efficientnet_b0": ("efficientnet_b0",),
    "efficientnet_b4": ("efficientnet_b4",),
}


def import_timm() -> ModuleType:
    """timm, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("timm")
    except ImportError as exc:
        raise ImportError(
            "the xception and efficientnet backbones need timm: pip install timm"
        ) from exc


def timm_architecture(name: str) -> str:
    """The installed timm's architecture name for our backbone ``name``."""
    timm = import_timm()
    for arch in TIMM_ARCHITECTURES[name]:
        if timm.is_model(arch):
            return arch
    raise ImportError(
        f"timm {timm.__version__} has none of {TIMM_ARCHITECTURES[name]} for backbone {name!r}"
    )


def build_timm(name: str, weights: str | None = None) -> nn.Module:
    """A timm trunk with ``forward_features``: (N, 3, H, W) -> (N, C, h, w)."""
    trunk = import_timm().create_model(
        timm_architecture(name), pretrained=False, num_classes=0, global_pool=""
    )
    if weights is not None:
        load_local_weights(trunk, name, weights)
    return trunk
