"""The DMA-STA clip encoder: a per-frame trunk from the backbone registry, then fusion.

``(B, T, 3, H, W) -> frames as one batch of B*T images -> (B, T, C) -> fusion -> (B, C)``.
The trunk (:mod:`attribnet.models.backbones`: torchvision ResNets with attention in their
blocks, timm's Xception and EfficientNets, MesoInception-4) maps each frame to a feature
map; an optional SAM on that map (``sam="last"``) and average pooling give C features.
Two options, off by default, keep a generator's high-frequency traces in view: an input
filter before the trunk (:mod:`attribnet.models.input_filters`) and a spectral branch whose
D features are appended to the fused ones (:mod:`attribnet.models.spectral`), so the clip
features are ``(B, C + D)``: ``ClipEncoder.feature_dim`` is the one width the heads read.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attribnet.models.attention import SpatialAttention, build_fusion
from attribnet.models.backbones import get_backbone
from attribnet.models.checkpoint_trunk import load_checkpoint_trunk, read_training_checkpoint
from attribnet.models.input_filters import INPUT_FILTERS, build_input_filter
from attribnet.models.patches import PatchSampler
from attribnet.models.spectral import DEFAULT_BINS, SpectralBranch


class ClipEncoder(nn.Module):
    """DMA-STA encoder: a registry trunk (SAM/CBAM in a ResNet's blocks), temporal fusion."""

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
        per_frame_trunk: bool = False,
        patch_size: int = 0,
        patches: int = 4,
        patch_grid: int = 3,
    ):
        """Build the encoder.

        ``backbone``: a name of :data:`attribnet.models.backbones.BACKBONES`. ``sam``:
        ``every_block`` (the authors' placement, ResNets only), ``last`` (once, on the
        trunk's output map) or ``none``. ``channel_attention`` (ResNets only) adds CBAM's
        channel attention to every block; attention a backbone cannot have is a ValueError
        naming it. ``fusion``: ``tam`` (tied to ``num_frames``), ``scorer`` or ``mean``.
        ``weights``: None (random init), a path to a local state dict of the trunk, for
        the ResNets ``imagenet`` (torchvision's; with an input filter the trunk's first
        convolution then starts from RGB weights and sees residuals), or an attribnet
        training checkpoint, whose input filter, trunk and last SAM this encoder takes
        (:mod:`~attribnet.models.checkpoint_trunk`). ``input_filter``:
        ``none``, fixed ``srm``, ``median`` or learnt ``bayar``, applied to each frame before the
        trunk. ``spectral_dim`` > 0 appends that many spectral features (a radial profile
        of ``spectral_bins`` rings) to the fused clip features. ``per_frame_trunk`` runs the
        trunk once per frame index, as the DMA-STA authors' code does: each BatchNorm then
        normalises over the B images of one frame index and updates its running statistics
        T times per step (default: all B*T frames as one batch). Eval-mode outputs and the
        weights' names are the same either way: it changes training only. ``patch_size``
        > 0 runs the trunk on windows of each (filtered) frame on its own pixel grid and
        averages their features (:class:`~attribnet.models.patches.PatchSampler`:
        ``patches`` random ones per frame in training, a ``patch_grid`` x ``patch_grid``
        grid at evaluation).
        """
        super().__init__()
        spec = get_backbone(backbone)
        spec.check_attention(sam, channel_attention)
        if input_filter not in INPUT_FILTERS:
            raise ValueError(f"unknown input filter {input_filter!r}; use one of {INPUT_FILTERS}")
        if spectral_dim < 0:
            raise ValueError(f"spectral_dim must be >= 0, got {spectral_dim}")
        run = None if weights is None else read_training_checkpoint(weights)
        trunk = spec.build(None if weights is None or run is not None else str(weights))
        if spec.block_attention is not None and (sam == "every_block" or channel_attention):
            spec.block_attention(trunk, sam == "every_block", channel_attention)
        self.backbone = backbone
        self.num_features = spec.num_features
        self.trunk = trunk
        self.last_sam = SpatialAttention() if sam == "last" else None
        self.fusion = build_fusion(fusion, self.num_features, num_frames)
        self.num_frames = num_frames
        # built after the fusion, so the default model draws the same initial weights
        self.input_filter = build_input_filter(input_filter)
        self.spectral = SpectralBranch(spectral_dim, spectral_bins) if spectral_dim else None
        self.feature_dim = self.num_features + spectral_dim
        self.per_frame_trunk = per_frame_trunk
        self.patches = PatchSampler(patch_size, patches, patch_grid) if patch_size else None
        if run is not None:
            load_checkpoint_trunk(self, run, str(weights))

    def forward_frames(self, clips_btchw: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> per-frame features (B, T, C); frames as one batch of B*T, or
        T batches of B with ``per_frame_trunk`` in training (in eval mode BatchNorm uses its
        running statistics, so one batch gives the same features, faster)."""
        b, t = clips_btchw.shape[:2]
        if self.per_frame_trunk and self.training:
            return torch.stack([self._features(clips_btchw[:, i]) for i in range(t)], dim=1)
        return self._features(clips_btchw.flatten(0, 1)).view(b, t, -1)

    def _features(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) -> pooled trunk features (N, C)."""
        if self.input_filter is not None:
            x = self.input_filter(x)
        n = x.shape[0]
        if self.patches is not None:
            x = self.patches(x)
        if next(self.trunk.parameters()).is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.trunk.forward_features(x)
        if self.last_sam is not None:
            x = self.last_sam(x)
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return pooled.view(n, -1, pooled.shape[1]).mean(dim=1)  # the mean over a frame's patches

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
