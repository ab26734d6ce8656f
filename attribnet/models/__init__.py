"""Models: attention modules, the DMA-STA clip encoder, heads and the attribution model."""

from attribnet.models.attribution_model import AttributionModel, build_model

__all__ = ["AttributionModel", "build_model"]
