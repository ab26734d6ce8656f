"""The DMA-STA clip encoder: a torchvision ResNet with attention in its blocks, then fusion.

``(B, T, 3, H, W) -> frames as one batch of B*T images -> (B, T, C) -> fusion -> (B, C)``.
Two options, off by default, keep a generator's high-frequency traces in view: an input
filter before the trunk (:mod:`attribnet.models.input_filters`) and a spectral branch whose
D features are appended to the fused ones (:mod:`attribnet.models.spectral`), so the clip
features are ``(B, C + D)``: ``ClipEncoder.feature_dim`` is the one width the heads read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import get_model_weights
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from attribnet.errors import CheckpointError
from attribnet.models.attention import ChannelAttention, SpatialAttention, build_fusion
from attribnet.models.input_filters import INPUT_FILTERS, build_input_filter
from attribnet.models.spectral import DEFAULT_BINS, SpectralBranch

log = logging.getLogger(__name__)

SAM_PLACEMENTS = ("every_block", "last", "none")


class _AttentionMixin:
    """Optional channel and spatial attention on a block's residual branch.

    The modules are registered on the instance by ClipEncoder (no class-level defaults:
    a class attribute would shadow nn.Module's lookup of registered submodules).
    """

    def _attend(self, out: Tensor) -> Tensor:
        for name in ("channel_attention", "spatial_attention"):
            module = getattr(self, name, None)
            if module is not None:
                out = module(out)
        return out


class AttentionBottleneck(_AttentionMixin, Bottleneck):
    """torchvision's Bottleneck; attention after bn3, before the addition (authors' SAM)."""

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self._attend(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


class AttentionBasicBlock(_AttentionMixin, BasicBlock):
    """torchvision's BasicBlock; attention after bn2, before the addition."""

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self._attend(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


# name -> (block, layers). resnet10 is a tiny trunk for tests and the CPU demo.
BACKBONES: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet10": (AttentionBasicBlock, [1, 1, 1, 1]),
    "resnet18": (AttentionBasicBlock, [2, 2, 2, 2]),
    "resnet34": (AttentionBasicBlock, [3, 4, 6, 3]),
    "resnet50": (AttentionBottleneck, [3, 4, 6, 3]),
    "resnet101": (AttentionBottleneck, [3, 4, 23, 3]),
}


def _load_weights(trunk: ResNet, backbone: str, weights: str) -> None:
    """Load ImageNet weights: ``imagenet`` (torchvision's API, may download) or a local file."""
    if weights == "imagenet":
        if backbone == "resnet10":
            raise CheckpointError("no ImageNet weights exist for resnet10")
        log.info("loading torchvision ImageNet weights for %s (downloads if not cached)", backbone)
        state = get_model_weights(backbone).DEFAULT.get_state_dict(progress=False)
    else:
        path = Path(weights)
        if not path.is_file():
            raise CheckpointError(f"weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read weights file {path}: {exc}") from exc
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise CheckpointError(f"weights {weights} do not fit {backbone}: {detail}") from exc
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise CheckpointError(
            f"weights {weights} do not fit {backbone}: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )


class ClipEncoder(nn.Module):
    """DMA-STA encoder: ResNet trunk with SAM/CBAM in its blocks, temporal fusion on top."""

    def __init__(
        self,
        backbone: str = "resnet50",
        *,
        sam: str = "every_block",
        channel_attention: bool = False,
        fusion: str = "tam",
        num_frames: int = 10,
        weights: str | os.PathLike[str] | None = None,
        input_filter: str = "none",
        spectral_dim: int = 0,
        spectral_bins: int = DEFAULT_BINS,
    ):
        """Build the encoder.

        ``sam``: ``every_block`` (the authors' placement), ``last`` (once, on the last
        stage's output) or ``none``. ``channel_attention`` adds CBAM's channel attention to
        every block. ``fusion``: ``tam`` (tied to ``num_frames``), ``scorer`` or ``mean``.
        ``weights``: None (random init), ``imagenet`` or a path to a torchvision state dict
        (with an input filter the trunk's first convolution then starts from RGB weights
        and sees residuals). ``input_filter``: ``none``, ``srm`` (fixed) or ``bayar``
        (learnt), applied to every frame before the trunk. ``spectral_dim`` > 0 appends that
        many spectral features (a radial profile of ``spectral_bins`` rings) to the fused
        clip features.
        """
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; use one of {sorted(BACKBONES)}")
        if sam not in SAM_PLACEMENTS:
            raise ValueError(f"unknown sam placement {sam!r}; use one of {SAM_PLACEMENTS}")
        if input_filter not in INPUT_FILTERS:
            raise ValueError(f"unknown input filter {input_filter!r}; use one of {INPUT_FILTERS}")
        if spectral_dim < 0:
            raise ValueError(f"spectral_dim must be >= 0, got {spectral_dim}")
        block, layers = BACKBONES[backbone]
        trunk = ResNet(block, layers)
        if weights is not None:
            _load_weights(trunk, backbone, str(weights))
        trunk.fc = nn.Identity()
        self.num_features = 512 * block.expansion
        for stage in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4):
            for blk in stage:
                width = blk.conv3.out_channels if hasattr(blk, "conv3") else blk.conv2.out_channels
                if channel_attention:
                    blk.channel_attention = ChannelAttention(width)
                if sam == "every_block":
                    blk.spatial_attention = SpatialAttention()
        self.trunk = trunk
        self.last_sam = SpatialAttention() if sam == "last" else None
        self.fusion = build_fusion(fusion, self.num_features, num_frames)
        self.num_frames = num_frames
        # built after the fusion, so the default model draws the same initial weights
        self.input_filter = build_input_filter(input_filter)
        self.spectral = SpectralBranch(spectral_dim, spectral_bins) if spectral_dim else None
        self.feature_dim = self.num_features + spectral_dim

    def forward_frames(self, clips_btchw: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> per-frame features (B, T, C); frames as one batch of B*T."""
        b, t = clips_btchw.shape[:2]
        x = clips_btchw.flatten(0, 1)
        if self.input_filter is not None:
            x = self.input_filter(x)
        if self.trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        tr = self.trunk
        x = tr.maxpool(tr.relu(tr.bn1(tr.conv1(x))))
        x = tr.layer4(tr.layer3(tr.layer2(tr.layer1(x))))
        if self.last_sam is not None:
            x = self.last_sam(x)
        return tr.avgpool(x).flatten(1).view(b, t, -1)

    def forward(self, clips_btchw: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, 3, H, W) -> clip features (B, feature_dim) and frame weights (B, T).

        With a spectral branch the features are ``[fused trunk features (C), spectral (D)]``;
        the spectral part is the frames' mean weighted by the same frame weights.
        """
        if clips_btchw.ndim != 5 or clips_btchw.shape[2] != 3:
            raise ValueError(f"expected clips (B, T, 3, H, W), got {tuple(clips_btchw.shape)}")
        fused, frame_weights = self.fusion(self.forward_frames(clips_btchw))
        if self.spectral is not None:
            spectral = self.spectral(clips_btchw, frame_weights)
            fused = torch.cat([fused, spectral.to(fused.dtype)], dim=1)
        return fused, frame_weights
