"""Attention modules of DMA-STA (and CBAM's channel attention for the Table 3 ablation).

Equations follow Jia, Li, Lyu (ICIP 2022) and the authors' code:

- SAM: ``A = sigmoid(conv7x7([mean_c(Y); max_c(Y)]))``, output ``Y * A``.
- TAM: per-frame features ``f_i`` (C-d) -> ``s_i = mean_c(f_i)`` -> ``m = sigmoid(W2 relu(W1 s))``
  with ``W1: T -> T/2``, ``W2: T/2 -> T``, no biases; fusion ``F = sum_i m_i f_i / sum_i m_i``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attribnet.config.choices import FUSIONS


class SpatialAttention(nn.Module):
    """SAM: re-weights every spatial position of a feature map by one sigmoid gate."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def attention_map(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, 1, H, W) in (0, 1)."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        return x * self.attention_map(x)


class ChannelAttention(nn.Module):
    """CBAM's channel attention: a shared MLP over average- and max-pooled channels."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


def weighted_mean(frames_btc: Tensor, weights_bt: Tensor) -> Tensor:
    """Eq. 5: ``sum_i m_i f_i / sum_i m_i``. (B, T, C), (B, T) -> (B, C)."""
    return (weights_bt.unsqueeze(-1) * frames_btc).sum(1) / weights_bt.sum(1, keepdim=True)


class TemporalAttention(nn.Module):
    """TAM: one weight per frame from the frames' channel means; tied to a fixed T.

    A property of the authors' design: its input (channel means of post-ReLU features) is
    positive, so each of the T/2 hidden ReLU units starts dead with probability ~1/2, and
    with all dead the frame weights are a constant 0.5 and TAM never learns (about 1 in
    2^(T/2) initialisations: 1/32 for T=10).
    """

    def __init__(self, num_frames: int):
        super().__init__()
        if num_frames < 2:
            raise ValueError(f"temporal attention needs at least 2 frames, got {num_frames}")
        self.num_frames = num_frames
        self.fc1 = nn.Linear(num_frames, num_frames // 2, bias=False)
        self.fc2 = nn.Linear(num_frames // 2, num_frames, bias=False)

    def frame_weights(self, frames_btc: Tensor) -> Tensor:
        """(B, T, C) -> m (B, T) in (0, 1)."""
        if frames_btc.shape[1] != self.num_frames:
            raise ValueError(
                f"temporal attention was built for T={self.num_frames} frames, got "
                f"T={frames_btc.shape[1]}; use fusion 'scorer' or 'mean' for other clip lengths"
            )
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(frames_btc.mean(dim=2)))))

    def forward(self, frames_btc: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, C) -> fused (B, C), frame weights (B, T)."""
        weights = self.frame_weights(frames_btc)
        return weighted_mean(frames_btc, weights), weights


class FrameScorer(nn.Module):
    """T-agnostic temporal attention: a per-frame MLP scores each frame on its own."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        # at least 8 hidden units: narrow trunks (MesoInception-4's 16 channels) would get
        # one, and a single dead ReLU would leave the scorer without a gradient
        hidden = max(channels // reduction, min(channels, 8))
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1)
        )

    def forward(self, frames_btc: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, C) -> fused (B, C), frame weights (B, T)."""
        weights = torch.sigmoid(self.mlp(frames_btc).squeeze(-1))
        return weighted_mean(frames_btc, weights), weights


class MeanFusion(nn.Module):
    """Plain averaging of frame features (ResNet-50 and SAM+Ave rows of Table 3)."""

    def forward(self, frames_btc: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, C) -> fused (B, C), uniform frame weights (B, T)."""
        weights = frames_btc.new_ones(frames_btc.shape[:2])
        return frames_btc.mean(dim=1), weights


def build_fusion(name: str, channels: int, num_frames: int) -> nn.Module:
    """A fusion module by name: ``tam`` (fixed T), ``scorer`` (any T) or ``mean``."""
    if name == "tam":
        return TemporalAttention(num_frames)
    if name == "scorer":
        return FrameScorer(channels)
    if name == "mean":
        return MeanFusion()
    raise ValueError(f"unknown fusion {name!r}; use one of {FUSIONS}")
