"""The training task: model and loss in one module, so one optimizer, one checkpoint and
one DDP wrapper see every trainable parameter (the ArcFace weight matrix included)."""

from __future__ import annotations

from torch import Tensor, nn

from attribnet.losses import AttributionLoss
from attribnet.models import AttributionModel


class AttributionTask(nn.Module):
    """``forward(clips, labels) -> (outputs, losses)``; the model itself holds no loss code."""

    def __init__(self, model: AttributionModel, loss: AttributionLoss):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(
        self, clips_btchw: Tensor, labels: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        outputs = self.model(clips_btchw)
        return outputs, self.loss(outputs, labels)
