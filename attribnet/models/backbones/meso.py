"""MesoInception-4 (Afchar, Nozick, Yamagishi, Echizen, "MesoNet: a Compact Facial Video
Forgery Detection Network", WIFS 2018), as a per-frame feature extractor.

The paper's network on 256x256 faces: two inception modules with (a, b, c, d) = (1, 4, 4, 2)
and (2, 4, 4, 2) filters, each followed by BatchNorm and 2x2 max-pooling, then two 5x5
convolutions of 16 filters (ReLU, BatchNorm, max-pooling 2x2 then 4x4), giving a
16 x 8 x 8 map. Its dense head (dropout, Dense(16), LeakyReLU, dropout, Dense(1)) is left
out: the encoder pools the 16 channels and its heads take over. Pooling rounds up
(``ceil_mode``, Keras's ``padding="same"``), so any face of at least 1 px gives a map.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attribnet.models.backbones._common import load_local_weights


def _conv_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """A 'same'-padded convolution with bias, then ReLU."""
    pad = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation), nn.ReLU())


class MesoInceptionModule(nn.Module):
    """Four branches, concatenated: 1x1 (a); 1x1 -> 3x3 (b); 1x1 -> 3x3 dilated 2 (c);
    1x1 -> 3x3 dilated 3 (d). Every convolution has a bias and a ReLU."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.branches = nn.ModuleList(
            [
                _conv_relu(cin, a, 1),
                nn.Sequential(_conv_relu(cin, b, 1), _conv_relu(b, b, 3)),
                nn.Sequential(_conv_relu(cin, c, 1), _conv_relu(c, c, 3, dilation=2)),
                nn.Sequential(_conv_relu(cin, d, 1), _conv_relu(d, d, 3, dilation=3)),
            ]
        )
        self.out_channels = a + b + c + d

    def forward(self, x: Tensor) -> Tensor:
        """(N, cin, H, W) -> (N, a + b + c + d, H, W)."""
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class MesoInception4(nn.Module):
    """MesoInception-4's convolutional part: (N, 3, H, W) -> (N, 16, H/32, W/32), rounded up."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        first = MesoInceptionModule(3, 1, 4, 4, 2)
        second = MesoInceptionModule(first.out_channels, 2, 4, 4, 2)
        self.features = nn.Sequential(
            first,
            nn.BatchNorm2d(first.out_channels),
            nn.MaxPool2d(2, ceil_mode=True),
            second,
            nn.BatchNorm2d(second.out_channels),
            nn.MaxPool2d(2, ceil_mode=True),
            _conv_relu(second.out_channels, 16, 5),
            nn.BatchNorm2d(16),
            nn.MaxPool2d(2, ceil_mode=True),
            _conv_relu(16, 16, 5),
            nn.BatchNorm2d(16),
            nn.MaxPool2d(4, ceil_mode=True),
        )

    def forward_features(self, images_nchw: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, 16, ceil(H/32), ceil(W/32)): 8 x 8 at the paper's 256 px."""
        return self.features(images_nchw)

    def forward(self, images_nchw: Tensor) -> Tensor:
        """Same as :meth:`forward_features`."""
        return self.forward_features(images_nchw)


def build_meso_inception4(weights: str | None = None) -> MesoInception4:
    """Random init, or a local state dict of this module (classifier keys ignored)."""
    trunk = MesoInception4()
    if weights is not None:
        load_local_weights(trunk, "meso_inception4", weights)
    return trunk
