"""The Python API: which generator made a video, how sure, and which frames say so.

    from attribnet import Attributor

    a = Attributor.load("indexes/demo")        # the index and the model that built it
    r = a.attribute("suspect.mp4")             # one video file -> one Attribution
    r.verdict, r.confidence, r.frames[0].time_s
    rs = a.attribute(["a.mp4", "folder/"])     # a list or a folder -> a list
    json.dumps([x.to_dict() for x in rs])

A video is cropped to its face as the model's training data were (the recipe's detector,
margin, face size and frame budget), run through :func:`attribnet.predict.predict_videos`
and looked up in the generator index (:mod:`attribnet.query.attribute`). The verdict is
the k-NN generator, or ``unknown generator`` when the index's open-set score is below its
threshold. The evidence is every sampled frame's share of the decision (its temporal
attention weight, divided by the number of clips, so a video's shares sum to 1) with its
frame index and time in the file, and for the ``top_frames`` largest shares the face crop
and the spatial-attention heatmap (arrays, for pictures; not in :meth:`to_dict`).

The command line (``python -m attribnet.query``), the HTML report and the web app are thin
layers over :meth:`Attributor.attribute`: they give the same JSON.

``Attributor.load(..., onnx="model.onnx")`` runs the model with ONNX Runtime on the CPU
instead, from a file that ``python -m attribnet.export onnx --sam`` wrote from the index's
checkpoint (checked by its sha256): the same answers within 1e-4, and for ResNet-50 faster
on a CPU (benchmarks/LOG.md, "Query speed on a CPU").
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from attribnet.data.eval_clips import DEFAULT_CLIPS_PER_VIDEO
from attribnet.data.frame_times import source_frames
from attribnet.data.preprocess import skip_error
from attribnet.errors import ConfigError, IndexMismatchError
from attribnet.metrics.embedding import DEFAULT_NEIGHBOURS
from attribnet.predict import (
    PRECISIONS,
    VideoPrediction,
    cpu_inference_model,
    predict_videos,
    stack,
    top_frames,
)
from attribnet.query.attribute import query
from attribnet.query.faces_ahead import FacesAhead
from attribnet.query.videos import find_videos
from attribnet.runtime.device import resolve_device

if TYPE_CHECKING:
    import torch

    from attribnet.config import Recipe
    from attribnet.data.cache import CacheEntry, FaceCache
    from attribnet.export import OnnxRuntimeModel
    from attribnet.index import GeneratorIndex
    from attribnet.models import AttributionModel

log = logging.getLogger(__name__)

DEFAULT_TOP_FRAMES = 3


@dataclass
class FrameEvidence:
    """One sampled frame: ``clip`` it belongs to, ``frame`` (position among the cached face
    frames), ``source_frame`` / ``time_s`` (index and time in the file; None when unknown),
    ``weight`` (share of the video's decision). ``face`` (S, S, 3) uint8 and ``heatmap``
    (S, S) float32 in (0, 1) are set for the top frames (heatmap None without SAM)."""

    clip: int
    frame: int
    source_frame: int | None
    time_s: float | None
    weight: float
    face: np.ndarray | None = field(default=None, repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clip": self.clip,
            "frame": self.frame,
            "source_frame": self.source_frame,
            "time_s": None if self.time_s is None else round(self.time_s, 3),
            "weight": round(self.weight, 6),
        }


@dataclass
class Attribution:
    """The answer for one video. ``status`` is ``ok`` or ``failed`` (then only ``video`` and
    ``reason`` are set). ``verdict``: the generator, or ``unknown generator``;
    ``generator`` / ``confidence``: the k-NN vote's winner and its share; ``score`` /
    ``threshold``: the open-set score (``score_name``) and the index's cut; ``knn``,
    ``prototype``, ``classifier`` and ``neighbors`` as in the JSON; ``frames``: the
    evidence, largest share first; ``embedding`` (D,): the unit video embedding."""

    video: str
    status: str = "ok"
    reason: str | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False)
    frames: list[FrameEvidence] = field(default_factory=list, repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def verdict(self) -> str | None:
        return self.record.get("verdict")

    @property
    def is_unknown(self) -> bool | None:
        return self.record.get("is_unknown")

    @property
    def generator(self) -> str | None:
        return self.record["knn"]["generator"] if self.ok else None

    @property
    def confidence(self) -> float | None:
        return self.record["knn"]["confidence"] if self.ok else None

    @property
    def classifier(self) -> dict[str, Any] | None:
        return self.record.get("classifier")

    @property
    def neighbors(self) -> list[dict[str, Any]]:
        return self.record.get("neighbors", [])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the query record, with ``evidence`` (every sampled frame)."""
        if not self.ok:
            return {"video": self.video, "status": self.status, "reason": self.reason}
        return {**self.record, "evidence": [f.to_dict() for f in self.frames]}


class Attributor:
    """A generator index and the model that built it, checked to belong together;
    ``onnx``, when set, runs that model (ONNX Runtime, CPU) in place of ``model``."""

    def __init__(
        self,
        index: GeneratorIndex,
        model: AttributionModel,
        recipe: Recipe,
        checkpoint: Path,
        device: torch.device,
        index_dir: str = "",
        onnx: OnnxRuntimeModel | None = None,
        precision: str = "fp32",
    ):
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
        if onnx is not None and precision != "fp32":
            raise ConfigError("an ONNX model runs in fp32; leave out precision or onnx")
        self.index, self.model, self.recipe = index, model.to(device).eval(), recipe
        self.checkpoint, self.device, self.index_dir = checkpoint, device, index_dir
        self.onnx, self.precision = onnx, precision
        # what runs: ONNX Runtime, or on a CPU the model with BatchNorm folded in (once, here)
        self._runner: AttributionModel | OnnxRuntimeModel = (
            onnx
            if onnx is not None
            else (cpu_inference_model(self.model) if device.type == "cpu" else self.model)
        )

    @classmethod
    def load(
        cls,
        index_dir: str | os.PathLike[str],
        checkpoint: str | os.PathLike[str] | None = None,
        device: str = "auto",
        onnx: str | os.PathLike[str] | None = None,
        precision: str = "fp32",
    ) -> Attributor:
        """The index at ``index_dir`` and its model (``checkpoint``, default: the one the
        index records), run from the ONNX file ``onnx`` when given (on the CPU), or under
        bfloat16 autocast with ``precision="bf16"`` (see :func:`predict_videos`). Raises
        IndexMismatchError when the checkpoint is not the one that built the index or the
        ONNX file was not exported from it, ConfigError/CheckpointError when one is missing
        or unreadable."""
        from attribnet.files.checkpoints import file_sha256
        from attribnet.index import GeneratorIndex, resolve_checkpoint
        from attribnet.models.restore import load_model

        index = GeneratorIndex.load(index_dir)
        path = resolve_checkpoint(checkpoint or index.checkpoint_path)
        if not path.is_file():
            where = "--checkpoint" if checkpoint else f"the index's checkpoint ({index_dir})"
            raise ConfigError(f"checkpoint {path} not found ({where}); pass --checkpoint")
        model, recipe, _, _ = load_model(path)
        sha256 = file_sha256(path)
        index.check_compatible(
            embedding_dim=model.embedding_dim, checkpoint_sha256=sha256, checkpoint_path=path
        )
        if onnx is None:
            return cls(index, model, recipe, path, resolve_device(device), str(index_dir),
                       precision=precision)  # fmt: skip
        if device not in ("auto", "cpu"):
            raise ConfigError(f"an ONNX model runs on the CPU, not {device}")
        runner = _load_onnx(onnx, path, sha256, model)
        return cls(index, model, recipe, path, resolve_device("cpu"), str(index_dir), runner)

    def attribute(
        self,
        inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        k: int | None = None,
        clips_per_video: int = DEFAULT_CLIPS_PER_VIDEO,
        top: int = DEFAULT_TOP_FRAMES,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
        batch_size: int | None = None,
    ) -> Attribution | list[Attribution]:
        """Attribute videos. One video file -> one :class:`Attribution` (a video that
        cannot be used raises VideoError with the reason: NoFaceError, a VideoError, when it
        decodes but shows no face); a folder, a frame folder or a list -> a list in input
        order, failures included with their reason (``no face: ...`` for NoFaceError's).

        ``k`` neighbours (default :data:`attribnet.metrics.embedding.DEFAULT_NEIGHBOURS`); up to
        ``clips_per_video`` clips per video; ``top`` frames get face crops and heatmaps;
        ``cache_dir`` keeps the face crops (default: a temporary folder, removed after).
        ``batch_size`` (clips per model pass): None runs each video alone, so its answer
        does not depend on the other videos; a number runs the clips of as many videos as
        fit in one pass (on a GPU, 64 to 256 clips keep it busy; their floats then change
        in the last bits with the company a video keeps).
        """
        k = DEFAULT_NEIGHBOURS if k is None else k
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        single = isinstance(inputs, (str, os.PathLike)) and Path(inputs).is_file()
        items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        paths, missing = find_videos(items)
        if not paths and not missing:
            raise ConfigError(f"no videos or frame folders found in {[str(i) for i in items]}")
        with _cache_dir(cache_dir) as where:
            done, failures = self._attribute(
                paths, where, k, clips_per_video, top, progress, batch_size
            )
        failures = {**missing, **failures}
        results = [
            done.get(p) or Attribution(p, status="failed", reason=failures[p])
            for p in [*missing, *paths]
        ]
        if single:
            if not results[0].ok:
                raise skip_error(results[0].video, results[0].reason or "not usable")
            return results[0]
        return results

    def _attribute(
        self,
        paths: list[str],
        cache_dir: str,
        k: int,
        clips_per_video: int,
        top: int,
        progress: bool,
        batch_size: int | None = None,
    ) -> tuple[dict[str, Attribution], dict[str, str]]:
        """Crop, predict and look up ``paths``; (path -> Attribution, path -> reason). The
        faces of later videos are cropped while the model runs on earlier ones
        (:class:`~attribnet.query.faces_ahead.FacesAhead`), one video per model pass, or
        with ``batch_size`` the videos whose clips fill one (:func:`_groups`)."""
        done: dict[str, Attribution] = {}
        bar = tqdm(total=len(paths), desc="videos", unit="video",
                   disable=not (progress and sys.stderr.isatty()))  # fmt: skip
        per_pass = max(batch_size // clips_per_video, 1) if batch_size else 1
        with FacesAhead(self.recipe, paths, cache_dir) as ahead, bar:
            for cache, group in _groups(ahead, per_pass):
                entries = [entry for _, entry in group]
                preds = predict_videos(
                    self._runner, cache, entries, self.recipe, fuse=False,
                    clips_per_video=clips_per_video, device=self.device, sam=True,
                    precision=self.precision, batch_size=batch_size,
                )  # fmt: skip
                records = query(
                    self.index, stack(preds, "embedding"), k, video_ids=[p for p, _ in group],
                    probabilities=stack(preds, "probabilities"), logits=stack(preds, "logits"),
                )  # fmt: skip
                for (path, entry), pred, record in zip(group, preds, records, strict=True):
                    record["clips"] = pred.num_clips
                    frames = self._evidence(cache, entry, pred, top)
                    done[path] = Attribution(path, record=record, frames=frames,
                                             embedding=pred.embedding)  # fmt: skip
                bar.update(len(group))
            failures = ahead.failures()
        return done, failures

    def _evidence(
        self, cache: FaceCache, entry: CacheEntry, pred: VideoPrediction, top: int
    ) -> list[FrameEvidence]:
        """Every sampled frame's share, largest first; faces and heatmaps for the top."""
        max_frames = self.recipe.data.max_frames
        indices, times = source_frames(entry.row.path, entry.num_frames, max_frames)
        faces = cache.load(entry)
        frames = []
        for rank, (c, f, weight) in enumerate(top_frames(pred)):
            clip = pred.clips[c]
            evidence = FrameEvidence(
                clip=c,
                frame=f,
                source_frame=int(indices[f]) if indices is not None else None,
                time_s=float(times[f]) if times is not None else None,
                weight=weight,
            )
            if rank < top:
                evidence.face = np.array(faces[f])
                if clip.sam is not None:
                    position = int(np.flatnonzero(clip.frames == f)[0])
                    evidence.heatmap = clip.sam[position].astype(np.float32)
            frames.append(evidence)
        return frames


def _groups(
    ahead: FacesAhead, size: int
) -> Iterator[tuple[FaceCache, list[tuple[str, CacheEntry]]]]:
    """The cropped videos in groups of up to ``size`` that share a face cache, in order:
    (cache, [(path, entry)]). A group waits for its videos to be cropped."""
    cache, group = None, []
    for video_cache, path, entry in ahead:
        if group and (video_cache is not cache or len(group) == size):
            yield cache, group
            group = []
        cache = video_cache
        group.append((path, entry))
    if group:
        yield cache, group


def _load_onnx(
    path: str | os.PathLike[str], checkpoint: Path, sha256: str, model: AttributionModel
) -> OnnxRuntimeModel:
    """The ONNX model at ``path``, checked to be an export of ``checkpoint`` (sha256) with
    the SAM maps the evidence needs (when the model has SAM)."""
    from attribnet.export import OnnxRuntimeModel
    from attribnet.models.attention import SpatialAttention

    runner = OnnxRuntimeModel.load(path)
    again = f"python -m attribnet.export onnx --checkpoint {checkpoint} --out {path} --sam"
    if runner.checkpoint_sha256 != sha256:
        raise IndexMismatchError(f"{path} was not exported from {checkpoint}; run: {again}")
    has_sam = any(isinstance(m, SpatialAttention) for m in model.modules())
    if has_sam and "sam" not in runner.output_names:
        raise ConfigError(f"{path} has no SAM maps for the evidence; run: {again}")
    return runner


@contextlib.contextmanager
def _cache_dir(path: str | os.PathLike[str] | None) -> Iterator[str]:
    """``path``, or a temporary folder removed on exit."""
    if path:
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="attribnet-query-") as tmp:
        yield tmp
