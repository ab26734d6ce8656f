"""The model as an ONNX graph: :class:`OnnxForward` (the exported function) and
:func:`export_onnx` (write it, with the checkpoint's metadata).

The graph is the model's forward pass on ``clips`` (B, T, 3, S, S), normalised as the
recipe says (B is a dynamic axis; T and S are the recipe's). Outputs, in order: ``logits``
(B, K); ``embedding`` (B, D) for a model with an embedding head; ``frame_weights`` (B, T),
the raw temporal-attention weights (:func:`attribnet.predict.predict_videos` divides them by
their sum); with ``sam=True``, ``sam`` (B, T, S, S), the mean spatial-attention map of each
frame as ``predict_videos(sam=True)`` gives it. It uses PyTorch's TorchScript-based exporter
(``dynamo=False``), which needs no package beyond ``onnx``; a model with a spectral branch is
refused, since that exporter has no FFT.
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from attribnet.errors import ConfigError
from attribnet.files.atomic import atomic_path
from attribnet.predict import mean_sam_map, record_sam_maps

if TYPE_CHECKING:
    from attribnet.models import AttributionModel

ONNX_OPSET = 17
TOLERANCE = 1e-4  # largest |ONNX Runtime - PyTorch| accepted on any output
INSTALL_HINT = "pip install 'attribnet[onnx]' (onnx and onnxruntime)"


def require(module: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or raise a ConfigError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"ONNX needs {module}: {INSTALL_HINT}") from exc


class OnnxForward(nn.Module):
    """The exported function: clips (B, T, 3, S, S) -> the tuple of :attr:`output_names`."""

    def __init__(self, model: AttributionModel, image_size: int, sam: bool = False):
        super().__init__()
        self.model, self.image_size, self.sam = model, image_size, sam
        self.output_names = ["logits"]
        if model.embedding is not None:
            self.output_names.append("embedding")
        self.output_names.append("frame_weights")
        if sam:
            self.output_names.append("sam")

    def forward(self, clips_btchw: Tensor) -> tuple[Tensor, ...]:
        """(B, T, 3, S, S) -> logits (B, K), [embedding (B, D)], frame_weights (B, T),
        [sam (B, T, S, S)]."""
        with record_sam_maps(self.model, self.sam) as maps:
            out = self.model(clips_btchw)
        outputs = [out[name] for name in self.output_names if name != "sam"]
        if self.sam:
            size = self.image_size
            frames = mean_sam_map(maps, size)
            if frames is None:
                raise ConfigError("--sam: this model has no spatial attention (model.sam none)")
            outputs.append(frames.reshape(-1, clips_btchw.shape[1], size, size))
        return tuple(outputs)


def export_onnx(
    model: AttributionModel,
    path: str | os.PathLike[str],
    *,
    num_frames: int,
    image_size: int,
    sam: bool = False,
    metadata: dict[str, str] | None = None,
    opset: int = ONNX_OPSET,
) -> list[str]:
    """Write ``model`` as ONNX to ``path`` (atomically); returns the output names.

    ``metadata`` is stored as the file's metadata properties, with ``outputs`` added.
    ``model`` is left in the training mode it had.
    """
    onnx = require("onnx")
    if model.encoder.spectral is not None:
        raise ConfigError(
            "a model with a spectral branch (model.spectral_dim > 0) cannot be exported: "
            "PyTorch's TorchScript ONNX exporter has no rfft2"
        )
    forward = OnnxForward(model, image_size, sam)
    was_training = model.training
    clips = torch.randn(2, num_frames, 3, image_size, image_size, generator=torch.Generator())
    axes = {"clips": {0: "batch"}, **{name: {0: "batch"} for name in forward.output_names}}
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            # the tracer's notes on the encoder's shape checks (T is fixed by the recipe)
            # and on this exporter being the TorchScript one
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                forward.eval(), (clips,), str(tmp), input_names=["clips"],
                output_names=forward.output_names, dynamic_axes=axes, opset_version=opset,
                dynamo=False,
            )  # fmt: skip
            graph = onnx.load(str(tmp))
            info = {**(metadata or {}), "outputs": ",".join(forward.output_names)}
            for key, value in info.items():
                graph.metadata_props.add(key=key, value=value)
            onnx.save(graph, str(tmp))
    finally:
        model.train(was_training)
    return forward.output_names


def max_differences(
    runtime: nn.Module, model: AttributionModel, clips_btchw: Tensor, image_size: int
) -> dict[str, float]:
    """Largest |ONNX Runtime - PyTorch| of each output of ``runtime`` on ``clips_btchw``."""
    forward = OnnxForward(model, image_size, sam="sam" in runtime.output_names)
    was_training = model.training
    try:
        with torch.no_grad():
            expected = dict(zip(forward.output_names, forward.eval()(clips_btchw), strict=True))
    finally:
        model.train(was_training)
    got = runtime(clips_btchw)
    return {n: float(np.abs(got[n].numpy() - expected[n].numpy()).max()) for n in got}
