"""The attribution model: one shared clip encoder, a classifier head and an embedding head."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from attribnet.models.encoder import ClipEncoder
from attribnet.models.heads import ClassifierHead, EmbeddingHead

if TYPE_CHECKING:
    from attribnet.config import ModelConfig


class AttributionModel(nn.Module):
    """Clips in, ``{"logits", "embedding", "frame_weights", "features"}`` out, in one pass.

    ``embedding`` is present only when the model has an embedding head (``embedding_dim > 0``).
    """

    def __init__(self, encoder: ClipEncoder, num_classes: int, embedding_dim: int = 0):
        super().__init__()
        self.encoder = encoder
        self.classifier = ClassifierHead(encoder.feature_dim, num_classes)
        self.embedding = (
            EmbeddingHead(encoder.feature_dim, embedding_dim) if embedding_dim else None
        )
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim

    def forward_features(self, clips_btchw: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, 3, H, W) -> clip features (B, C), frame weights (B, T); C is
        ``encoder.feature_dim`` (trunk features plus any spectral features)."""
        return self.encoder(clips_btchw)

    def forward_head(self, features_bc: Tensor) -> dict[str, Tensor]:
        """(B, C) -> logits (B, K) and, with an embedding head, embedding (B, D)."""
        out = {"logits": self.classifier(features_bc)}
        if self.embedding is not None:
            out["embedding"] = self.embedding(features_bc)
        return out

    def forward(self, clips_btchw: Tensor) -> dict[str, Tensor]:
        """(B, T, 3, H, W) -> dict of logits (B, K), embedding (B, D), frame_weights (B, T),
        features (B, C)."""
        features, frame_weights = self.forward_features(clips_btchw)
        out = self.forward_head(features)
        out["frame_weights"] = frame_weights
        out["features"] = features
        return out


def build_model(cfg: ModelConfig, num_classes: int) -> AttributionModel:
    """An AttributionModel from a recipe's model section."""
    encoder = ClipEncoder(
        cfg.backbone,
        sam=cfg.sam,
        channel_attention=cfg.channel_attention,
        fusion=cfg.fusion,
        num_frames=cfg.num_frames,
        weights=cfg.weights,
        input_filter=cfg.input_filter,
        spectral_dim=cfg.spectral_dim,
        spectral_bins=cfg.spectral_bins,
        per_frame_trunk=cfg.per_frame_trunk,
        patch_size=cfg.patch_size,
        patches=cfg.patches,
        patch_grid=cfg.patch_grid,
    )
    return AttributionModel(encoder, num_classes, cfg.embedding_dim)
