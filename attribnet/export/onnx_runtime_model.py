"""An exported model run by ONNX Runtime on the CPU, called as the PyTorch model is."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from attribnet.errors import CheckpointError
from attribnet.export.onnx_export import require


class OnnxRuntimeModel(nn.Module):
    """A file written by :func:`attribnet.export.export_onnx`, run by an ONNX Runtime CPU
    session: clips (B, T, 3, S, S) in, a dict of its outputs (``logits``, ``embedding``,
    ``frame_weights``, ``sam``: see :mod:`attribnet.export.onnx_export`) out, as CPU
    tensors. :func:`attribnet.predict.predict_videos` accepts it as its model.

    ``metadata`` holds the file's metadata (``recipe``, ``class_names``,
    ``checkpoint_sha256``, ``outputs``). No parameters: nothing to train or move.
    """

    def __init__(self, session: object, metadata: dict[str, str], path: str = ""):
        super().__init__()
        self.session, self.metadata, self.path = session, metadata, path
        self.output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def load(cls, path: str | os.PathLike[str], threads: int | None = None) -> OnnxRuntimeModel:
        """The model in ``path`` with ``threads`` intra-op threads (default: torch's
        ``get_num_threads()``, so one setting governs both). CheckpointError when the file
        is missing or not a model ONNX Runtime can run."""
        ort = require("onnxruntime")
        if not Path(path).is_file():
            raise CheckpointError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(f"cannot load ONNX model {path}: {exc}") from exc
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        return cls(session, metadata, str(path))

    @property
    def checkpoint_sha256(self) -> str | None:
        """The sha256 of the checkpoint it was exported from (None when not recorded)."""
        return self.metadata.get("checkpoint_sha256")

    @property
    def class_names(self) -> list[str] | None:
        names = self.metadata.get("class_names")
        return json.loads(names) if names else None

    def forward(self, clips_btchw: Tensor) -> dict[str, Tensor]:
        """(B, T, 3, S, S) -> {output name: CPU tensor}."""
        feed = {"clips": clips_btchw.detach().float().cpu().numpy()}
        out = self.session.run(self.output_names, feed)
        return {n: torch.from_numpy(v) for n, v in zip(self.output_names, out, strict=True)}
