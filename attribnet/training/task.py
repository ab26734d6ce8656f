"""The training task: model and loss in one module, so one optimizer, one checkpoint and
one DDP wrapper see every trainable parameter (the ArcFace weight matrix included)."""

from __future__ import annotations

from torch import Tensor, nn

from attribnet.data.open_space import OpenSpaceSimulator
from attribnet.losses import AttributionLoss
from attribnet.models import AttributionModel


class AttributionTask(nn.Module):
    """``forward(clips, labels) -> (outputs, losses)``; the model itself holds no loss code.

    ``open_space`` (when ``loss.open_space_weight`` > 0) is the frozen simulator whose
    clips the training step appends to a batch before calling the task; it has buffers
    only, so no optimizer and no checkpoint sees it.
    """

    def __init__(
        self,
        model: AttributionModel,
        loss: AttributionLoss,
        open_space: OpenSpaceSimulator | None = None,
    ):
        super().__init__()
        self.model = model
        self.loss = loss
        self.open_space = open_space

    def forward(
        self, clips_btchw: Tensor, labels: Tensor, instances: Tensor | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        outputs = self.model(clips_btchw)
        return outputs, self.loss(outputs, labels, instances)
