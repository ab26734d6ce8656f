"""Export a trained model for other runtimes: ``python -m attribnet.export onnx``.

    python -m attribnet.export onnx --checkpoint runs/<name>/best.pt --out model.onnx --sam
    python -m attribnet.export onnx --checkpoint runs/<name>/best.pt --out int8.onnx --sam --int8
    python -m attribnet.query video.mp4 --index indexes/<name> --onnx model.onnx

- :mod:`~attribnet.export.onnx_export`: the exported function and :func:`export_onnx`;
- :mod:`~attribnet.export.onnx_int8`: the int8 model (``--int8``): ONNX Runtime's static
  quantisation, calibrated on the run's training videos and checked against PyTorch on
  its validation videos;
- :mod:`~attribnet.export.onnx_runtime_model`: :class:`OnnxRuntimeModel`, an exported model
  run by ONNX Runtime, which :func:`attribnet.predict.predict_videos` and
  :class:`attribnet.Attributor` accept in place of the PyTorch model;
- :mod:`~attribnet.cli.export`: the command line.

ONNX Runtime's outputs equal PyTorch's within 1e-4 (tests/export/test_export.py). How fast
the fp32 and int8 models run a query on a CPU: benchmarks/README.md (``bench_query.py``) and
benchmarks/LOG.md. Needs ``pip install 'attribnet[onnx]'``.
"""

from attribnet.export.onnx_export import OnnxForward, export_onnx, max_differences
from attribnet.export.onnx_runtime_model import OnnxRuntimeModel

__all__ = ["OnnxForward", "OnnxRuntimeModel", "export_onnx", "max_differences"]
