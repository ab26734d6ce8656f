"""int8 ONNX: ONNX Runtime's static post-training quantisation of an exported model, and
the check that it answers as the fp32 PyTorch model does.

    python -m attribnet.export onnx --checkpoint runs/<name>/best.pt --out int8.onnx --sam --int8

- Weights int8 per output channel, activations uint8 (QDQ format), ranges calibrated
  (min-max) on one clip from each of up to ``--calibration-videos`` TRAINING videos of the
  run (its face cache, or ``--manifest``'s videos).
- Kept in fp32 (:func:`fp32_nodes`): the input filter (SRM, Bayar), the stem convolution
  and the heads. The stem sees the generator's high-frequency residue, whose range is
  small beside the face's, and 8-bit steps can erase it (how many answers each choice
  changes: benchmarks/bench_int8.py; figures in docs/results.md).
- :func:`agreement` runs the quantised model and the PyTorch model over the run's
  VALIDATION videos (none of which calibrated it): the share of videos whose top
  generator is the same, the largest probability difference and the smallest embedding
  cosine. The export is refused below ``--min-agreement`` and records the figures in the
  file's metadata (``int8_agreement``).

The index's open-set threshold was calibrated on fp32 scores, and int8 moves them a little:
a verdict close to the threshold can differ.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attribnet.errors import ConfigError
from attribnet.export.onnx_export import require

if TYPE_CHECKING:
    from attribnet.config import Recipe
    from attribnet.data.cache import CacheEntry, FaceCache
    from attribnet.export.onnx_runtime_model import OnnxRuntimeModel
    from attribnet.models import AttributionModel

log = logging.getLogger(__name__)

FP32_SCOPES = ("/model/encoder/input_filter/", "/model/embedding/", "/model/classifier/")
"""Graph scopes kept in fp32 besides the stem convolution (see the module docstring)."""
DEFAULT_MIN_AGREEMENT = 0.95


def fp32_nodes(graph: object) -> list[str]:
    """Names of the nodes of an exported graph that stay in fp32: those under
    :data:`FP32_SCOPES` and the first convolution outside them (the stem)."""
    keep = [n.name for n in graph.node if n.name.startswith(FP32_SCOPES)]
    stem = next(
        (n.name for n in graph.node if n.op_type == "Conv" and not n.name.startswith(FP32_SCOPES)),
        None,
    )
    return keep + ([stem] if stem else [])


def draw(entries: Sequence[CacheEntry], n: int, seed: int = 0) -> list[CacheEntry]:
    """Up to ``n`` of ``entries`` drawn at random with ``seed`` (so that a split listed
    class by class is not cut to its first classes), in their order."""
    chosen = sorted(np.random.default_rng(seed).permutation(len(entries))[:n])
    return [entries[i] for i in chosen]


def calibration_clips(
    cache: FaceCache, entries: Sequence[CacheEntry], recipe: Recipe, videos: int
) -> list[np.ndarray]:
    """One normalised clip (1, T, 3, S, S) from each of up to ``videos`` of ``entries``
    (:func:`draw`): the first periodic clip, as evaluation takes it."""
    from attribnet.data.eval_clips import EvalClips

    chosen = draw(entries, videos)
    data = recipe.data
    clips = EvalClips(
        cache, chosen, [-1] * len(chosen),
        num_frames=data.num_frames, image_size=data.image_size, mean=data.mean, std=data.std,
        clips_per_video=1, resize=data.resize,
    )  # fmt: skip
    return [clips[i]["clip"][None].numpy().astype(np.float32) for i in range(len(clips))]


def quantize(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    clips: Sequence[np.ndarray],
    keep_fp32: bool = True,
) -> list[str]:
    """Write the int8 model of the exported ``fp32_path`` to ``out_path``, calibrated on
    ``clips``, with the fp32 file's metadata plus ``precision: int8``; returns the names of
    the nodes kept in fp32 (:func:`fp32_nodes`; none with ``keep_fp32=False``, which
    benchmarks/bench_int8.py measures against)."""
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not clips:
        raise ConfigError("int8 calibration needs at least one clip")

    class Reader(CalibrationDataReader):
        """The clips, a range at a time (ONNX Runtime's CalibStridedMinMax): the
        calibrator holds one range's activations, not every clip's."""

        def __init__(self) -> None:
            self.set_range(0, len(clips))

        def __len__(self) -> int:
            return len(clips)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.clips = iter(clips[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            clip = next(self.clips, None)
            return None if clip is None else {"clips": clip}

    out = Path(out_path)
    prepared = out.with_name(out.name + ".prepared.onnx")
    try:
        quant_pre_process(str(fp32_path), str(prepared))  # shapes, folded constants
        keep = fp32_nodes(onnx.load(str(prepared)).graph) if keep_fp32 else []
        quantize_static(
            str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
            per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep,
            extra_options={"CalibStridedMinMax": 1},
        )  # fmt: skip
    finally:
        prepared.unlink(missing_ok=True)
    meta = {p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props}
    set_metadata(out, {**meta, "precision": "int8"})
    return keep


def set_metadata(path: str | os.PathLike[str], values: dict[str, str]) -> None:
    """Set (add or replace) metadata properties of the ONNX file ``path``, in place."""
    onnx = require("onnx")
    graph = onnx.load(str(path))
    current = {p.key: p.value for p in graph.metadata_props}
    current.update(values)
    del graph.metadata_props[:]
    for key, value in current.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))


def agreement(
    runtime: OnnxRuntimeModel,
    model: AttributionModel,
    cache: FaceCache,
    entries: Sequence[CacheEntry],
    recipe: Recipe,
) -> dict[str, float]:
    """The quantised ``runtime`` against the PyTorch ``model`` (fp32, CPU) on ``entries``,
    per video as a query sees them: ``videos``, ``top1_agreement`` (share with the same
    top class), ``max_probability_difference``, ``min_embedding_cosine`` (1.0 without an
    embedding head)."""
    from attribnet.predict import predict_videos, stack

    ref = predict_videos(model, cache, entries, recipe, device="cpu")
    got = predict_videos(runtime, cache, entries, recipe)
    p, q = stack(ref, "probabilities"), stack(got, "probabilities")
    cosine = 1.0
    if model.embedding is not None:
        a, b = stack(ref, "embedding"), stack(got, "embedding")
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosine = float(((a * b).sum(1) / np.maximum(norms, 1e-12)).min())
    return {
        "videos": float(len(entries)),
        "top1_agreement": float((p.argmax(1) == q.argmax(1)).mean()),
        "max_probability_difference": float(np.abs(p - q).max()),
        "min_embedding_cosine": cosine,
    }
