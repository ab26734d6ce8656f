"""Export a trained model for other runtimes: ``python -m attribnet.export onnx``.

    python -m attribnet.export onnx --checkpoint runs/<name>/best.pt --out model.onnx --sam
    python -m attribnet.query video.mp4 --index indexes/<name> --onnx model.onnx

- :mod:`~attribnet.export.onnx_export`: the exported function and :func:`export_onnx`;
- :mod:`~attribnet.export.onnx_runtime_model`: :class:`OnnxRuntimeModel`, an exported model
  run by ONNX Runtime, which :func:`attribnet.predict.predict_videos` and
  :class:`attribnet.Attributor` accept in place of the PyTorch model;
- :mod:`~attribnet.export.cli`: the command line.

ONNX Runtime's outputs equal PyTorch's within 1e-4 (tests/test_export.py). On this project's
2-core CPU, in fp32, it embedded 1.26x faster than predict_videos' default CPU path with
DMA-STA ResNet-50 at 224 px, and about as fast with resnet10 (benchmarks/README.md, "Query
speed on a CPU"). Needs ``pip install 'attribnet[onnx]'``.
"""

from attribnet.export.cli import main
from attribnet.export.onnx_export import OnnxForward, export_onnx, max_differences
from attribnet.export.onnx_runtime_model import OnnxRuntimeModel

__all__ = ["OnnxForward", "OnnxRuntimeModel", "export_onnx", "main", "max_differences"]
