"""torchvision ResNets with optional attention inside every residual block (DMA-STA).

The trunk is torchvision's ``ResNet`` (its classifier an Identity), so its state-dict keys
are torchvision's; attention adds ``layerX.Y.spatial_attention.conv.weight`` and
``layerX.Y.channel_attention.mlp.{0,2}.weight`` to the blocks that have it.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn
from torchvision.models import get_model_weights
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from attribnet.errors import CheckpointError
from attribnet.models.attention import ChannelAttention, SpatialAttention
from attribnet.models.backbones._common import load_trunk_state, read_weights_file

log = logging.getLogger(__name__)


class _AttentionMixin:
    """Optional channel and spatial attention on a block's residual branch.

    The modules are registered on the instance by :func:`add_block_attention` (no
    class-level defaults: a class attribute would shadow nn.Module's lookup of registered
    submodules).
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


class AttentionResNet(ResNet):
    """torchvision's ResNet with timm's ``forward_features``: images to the last stage's map."""

    def forward_features(self, images_nchw: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, 512 * expansion, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images_nchw))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# name -> (block, layers). resnet10 is a tiny trunk for tests and the CPU demo.
RESNETS: dict[str, tuple[type[BasicBlock | Bottleneck], list[int]]] = {
    "resnet10": (AttentionBasicBlock, [1, 1, 1, 1]),
    "resnet18": (AttentionBasicBlock, [2, 2, 2, 2]),
    "resnet34": (AttentionBasicBlock, [3, 4, 6, 3]),
    "resnet50": (AttentionBottleneck, [3, 4, 6, 3]),
    "resnet101": (AttentionBottleneck, [3, 4, 23, 3]),
}


def build_resnet(name: str, weights: str | None = None) -> AttentionResNet:
    """A ResNet trunk without attention, its classifier an Identity.

    ``weights``: None (random init), ``imagenet`` (torchvision's API, may download) or a
    path to a torchvision state dict.
    """
    block, layers = RESNETS[name]
    trunk = AttentionResNet(block, layers)
    if weights is not None:
        _load_weights(trunk, name, weights)
    trunk.fc = nn.Identity()
    return trunk


def add_block_attention(trunk: ResNet, spatial: bool, channel: bool) -> None:
    """Put CBAM's channel attention (``channel``) and/or a SAM (``spatial``) in every block."""
    for stage in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4):
        for blk in stage:
            width = blk.conv3.out_channels if hasattr(blk, "conv3") else blk.conv2.out_channels
            if channel:
                blk.channel_attention = ChannelAttention(width)
            if spatial:
                blk.spatial_attention = SpatialAttention()


def _load_weights(trunk: ResNet, name: str, weights: str) -> None:
    """Load ImageNet weights: ``imagenet`` (torchvision's API, may download) or a local file."""
    if weights == "imagenet":
        if name == "resnet10":
            raise CheckpointError("no ImageNet weights exist for resnet10")
        log.info("loading torchvision ImageNet weights for %s (downloads if not cached)", name)
        state = get_model_weights(name).DEFAULT.get_state_dict(progress=False)
    else:
        state = read_weights_file(weights)
    load_trunk_state(trunk, state, name, weights, head=("fc.",))
