"""The one inference path: a model over cached face videos, one typed result per video.

Every consumer (index building, query, evaluation, the Python API) runs a model through
:func:`predict_videos`. A video gives up to ``clips_per_video`` deterministic clips of the
recipe's ``T`` frames (:class:`attribnet.data.eval_clips.EvalClips`: training's periodic
stride, phase-shifted so clips interleave). Per clip it keeps the logits, the unit
embedding and the evidence: which cached frames it read, their temporal-attention weights
(normalised to sum to 1: the share of each frame in the clip's fused features, DMA-STA's
Eq. 5) and, on request, the spatial-attention maps. Per video the clip embeddings are
averaged and re-normalised, the softmax probabilities and the logits averaged.

Spatial-attention maps (``sam=True``): every SAM module of the encoder (one per residual
block with the authors' placement) gates its feature map with a sigmoid map at its own
resolution; each is upsampled to the face crop and the maps are averaged, giving one
(S, S) map in (0, 1) per frame. A model without SAM has no maps (``None``). With
``data.resize`` the model sees the centre of the face crop only (resized, then cropped:
:class:`attribnet.data.eval_clips.EvalClips`); its maps are placed on that part of the
crop, 0 around it (:func:`sam_on_faces`).

On the CPU, :func:`predict_videos` reads clips in the main process (no loader workers) and
runs :func:`cpu_inference_model` (a copy of the model with each BatchNorm folded into its
convolution, weights in channels_last): the same outputs within 1e-5, and faster
(benchmarks/LOG.md, "Query speed on a CPU"). ``precision="bf16"`` runs it under bfloat16
autocast on the CPU too: faster again on a CPU with AVX512-BF16 or AMX, but outputs differ
from fp32 by about 1e-3, so it is not the default.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.data import DataLoader
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from tqdm import tqdm

from attribnet.data.eval_clips import DEFAULT_CLIPS_PER_VIDEO, EvalClips
from attribnet.errors import ConfigError
from attribnet.metrics import softmax
from attribnet.metrics.vectors import l2_normalize
from attribnet.models import AttributionModel
from attribnet.models.attention import SpatialAttention
from attribnet.runtime.device import autocast, resolve_device

if TYPE_CHECKING:
    from attribnet.config import Recipe
    from attribnet.data.cache import CacheEntry, FaceCache

PRECISIONS = ("fp32", "bf16")


def class_scores(
    logits: np.ndarray, embedding: np.ndarray | None, centres: np.ndarray | None, scale: float = 1.0
) -> np.ndarray:
    """(N, K) class scores of clips: the classifier's ``logits`` (N, K), or, for a model
    trained without CE, ``scale`` times the cosine of each ``embedding`` (N, D) to each
    ArcFace class centre (``centres`` (K, D)). Validation in training and evaluation both
    predict through this one rule."""
    if centres is None:
        return np.asarray(logits, dtype=np.float64)
    if embedding is None:
        raise ValueError("ArcFace centres need the clips' embeddings")
    cosine = l2_normalize(embedding) @ l2_normalize(centres).T
    return scale * cosine.astype(np.float64)


@torch.no_grad()
def run_model(
    model: AttributionModel, loader: DataLoader, device: torch.device, amp: bool = False
) -> dict[str, np.ndarray]:
    """Clip-level outputs over a loader of ``{"clip", "label", "index"}`` batches (training's
    validation, on its own clip dataset): ``logits`` (N, K), ``embedding`` (N, D) when the
    model has one, ``label`` (N,) and ``index`` (N,) (dataset item indices)."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"logits": [], "embedding": [], "label": [], "index": []}
    try:
        for batch in loader:
            with autocast(device, amp):
                out = model(batch["clip"].to(device, non_blocking=True))
            parts["logits"].append(out["logits"].float().cpu().numpy())
            if "embedding" in out:
                parts["embedding"].append(out["embedding"].float().cpu().numpy())
            parts["label"].append(batch["label"].numpy())
            parts["index"].append(batch["index"].numpy())
    finally:
        model.train(was_training)
    return {k: np.concatenate(v) for k, v in parts.items() if v}


@dataclass
class ClipEvidence:
    """One clip of a video: ``frames`` (T,) positions in the video's cached face frames,
    ``weights`` (T,) temporal-attention weights summing to 1, and ``sam`` (T, S, S) float32
    spatial-attention maps in (0, 1) over the face crops, or None."""

    frames: np.ndarray
    weights: np.ndarray
    sam: np.ndarray | None = None


@dataclass
class VideoPrediction:
    """A model's outputs for one video: per clip ``clip_logits`` (C, K), ``clip_embeddings``
    (C, D) unit vectors (None without an embedding head) and ``clips`` (C evidence)."""

    clip_logits: np.ndarray
    clip_embeddings: np.ndarray | None
    clips: list[ClipEvidence]

    @property
    def num_clips(self) -> int:
        return len(self.clips)

    @property
    def logits(self) -> np.ndarray:
        """(K,) mean clip logits (for logit scores such as energy)."""
        return self.clip_logits.mean(0)

    @property
    def probabilities(self) -> np.ndarray:
        """(K,) mean of the clip softmax probabilities."""
        return softmax(self.clip_logits.astype(np.float64)).mean(0).astype(np.float32)

    @property
    def embedding(self) -> np.ndarray | None:
        """(D,) mean of the unit clip embeddings, re-normalised; None without a head."""
        if self.clip_embeddings is None:
            return None
        return l2_normalize(self.clip_embeddings.mean(0, keepdims=True))[0]


def stack(predictions: Sequence[VideoPrediction], field: str) -> np.ndarray:
    """One video-level field of every prediction as an array: ``embedding`` (V, D),
    ``probabilities`` (V, K), ``logits`` (V, K) or ``num_clips`` (V,)."""
    if field == "num_clips":
        return np.array([p.num_clips for p in predictions], dtype=np.int64)
    rows = [getattr(p, field) for p in predictions]
    if any(r is None for r in rows):
        raise ValueError(f"some predictions have no {field}")
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)


@contextlib.contextmanager
def record_sam_maps(model: nn.Module, enabled: bool) -> Iterator[list[torch.Tensor]]:
    """While active, every SAM module's map (N, 1, h, w) of a forward pass is appended to
    the yielded list (nothing when not ``enabled``)."""
    maps: list[torch.Tensor] = []
    modules = [m for m in model.modules() if isinstance(m, SpatialAttention)] if enabled else []
    hooks = [
        m.conv.register_forward_hook(lambda _m, _i, out: maps.append(torch.sigmoid(out.float())))
        for m in modules
    ]
    try:
        yield maps
    finally:
        for hook in hooks:
            hook.remove()


def mean_sam_map(maps: list[torch.Tensor], size: int) -> torch.Tensor | None:
    """SAM maps of several resolutions (each (N, 1, h, w)) -> their mean at (N, size, size),
    summed one map at a time (memory: two maps at full size, not one per SAM module)."""
    if not maps:
        return None
    total = None
    for m in maps:
        up = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
        total = up if total is None else total + up
    return (total / len(maps))[:, 0]


def sam_on_faces(maps_nss: torch.Tensor, resize: int) -> torch.Tensor:
    """SAM maps over the model's input (N, S, S) -> over the whole face crop (N, S, S), when
    the input was the centre S x S of the face resized to ``resize`` x ``resize``: the maps
    shrink by S / resize onto the part of the crop the model saw, 0 elsewhere. No change
    when ``resize`` is 0 (off) or S."""
    size = maps_nss.shape[-1]
    if not resize or resize == size:
        return maps_nss
    inner = round(size * size / resize)
    start = round((resize - size) // 2 * size / resize)
    small = F.interpolate(maps_nss[:, None], size=(inner, inner), mode="bilinear")[:, 0]
    out = maps_nss.new_zeros(maps_nss.shape)
    out[:, start : start + inner, start : start + inner] = small
    return out


def cpu_inference_model(model: AttributionModel) -> AttributionModel:
    """A copy of ``model`` for inference on a CPU: eval mode, every BatchNorm of the ResNet
    trunk folded into the convolution that feeds it, those convolutions' weights in
    channels_last memory format (the encoder then feeds its trunk channels_last). Same
    outputs within 1e-5. The copy shares every other tensor with ``model`` (read only), so
    it costs little more than the folded weights; ``model`` itself is left as it is."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    fused = copy.deepcopy(model, {id(t): t for t in tensors}).eval()
    for module in fused.modules():
        if isinstance(module, (ResNet, BasicBlock, Bottleneck)):
            _fold_pairs(module, [(f"conv{i}", f"bn{i}") for i in (1, 2, 3)])
            if isinstance(getattr(module, "downsample", None), nn.Sequential):
                _fold_pairs(module.downsample, [("0", "1")])
    return fused


def _fold_pairs(module: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Replace each child Conv2d of ``module`` by a new one with the BatchNorm2d that follows
    it in ``module``'s forward folded in (weights channels_last); the BatchNorm becomes an
    Identity."""
    for conv_name, bn_name in pairs:
        conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
        usable = isinstance(bn, nn.BatchNorm2d) and bn.running_var is not None
        if isinstance(conv, nn.Conv2d) and usable:
            folded = fuse_conv_bn_eval(conv, bn)
            folded.weight.data = folded.weight.data.contiguous(memory_format=torch.channels_last)
            setattr(module, conv_name, folded)
            setattr(module, bn_name, nn.Identity())


@torch.no_grad()
def predict_videos(
    model: nn.Module,
    cache: FaceCache,
    videos: Sequence[CacheEntry],
    recipe: Recipe,
    *,
    clips_per_video: int = DEFAULT_CLIPS_PER_VIDEO,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    sam: bool = False,
    progress: bool = False,
    precision: str = "fp32",
    fuse: bool = True,
    transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[VideoPrediction]:
    """Run ``model`` over cached videos; one :class:`VideoPrediction` per video, in order.

    Clips come from ``recipe.data`` (frame count, face size and resize, normalisation); batches
    default to ``recipe.train.batch_size`` and mix clips of several videos. ``sam`` also
    returns the spatial-attention maps (memory: C * T * S * S floats per video).
    ``num_workers`` loader processes default to the recipe's on a GPU and to none on the
    CPU, where the model is the bound and workers only take its cores. ``precision``:
    ``fp32``, or ``bf16`` (bfloat16 autocast, on the CPU too; on CUDA the recipe's
    ``train.amp`` also turns it on). ``fuse``: on the CPU, run :func:`cpu_inference_model`
    (``model`` itself is left as it is). ``model`` is an :class:`AttributionModel` or a
    module with its outputs, such as :class:`attribnet.export.OnnxRuntimeModel` (ONNX
    Runtime, on the CPU): its SAM maps
    come from the graph, so it has them only when exported with them. ``transform(clips,
    items)``, when given, replaces each batch's normalised clips (B, T, 3, S, S), on the
    device, before the model sees them (``items``: their dataset item numbers, (B,)); the
    index build's simulated unknowns are made so.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    if not videos:
        return []
    data = recipe.data
    dataset = EvalClips(
        cache,
        videos,
        [-1] * len(videos),
        num_frames=data.num_frames,
        image_size=data.image_size,
        mean=data.mean,
        std=data.std,
        clips_per_video=clips_per_video,
        resize=data.resize,
    )
    device = resolve_device(device)
    if num_workers is None:
        num_workers = 0 if device.type == "cpu" else data.num_workers
    loader = DataLoader(
        dataset,
        batch_size=batch_size or recipe.train.batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    show = progress and sys.stderr.isatty()
    bar = tqdm(loader, desc="predict", unit="batch", disable=not show)
    runner = model.to(device)
    if fuse and device.type == "cpu" and isinstance(runner, AttributionModel):
        runner = cpu_inference_model(runner)
    bf16 = precision == "bf16" or (recipe.train.amp and device.type == "cuda")
    clips = _run(runner, bar, device, bf16, sam, data.image_size, data.resize, transform)
    return _per_video(dataset, clips, len(videos))


def _run(
    model: nn.Module,
    batches: Iterator[dict[str, torch.Tensor]],
    device: torch.device,
    bf16: bool,
    sam: bool,
    size: int,
    resize: int = 0,
    transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, list[np.ndarray]]:
    """Per-batch outputs: logits, embedding, frame weights, dataset index, SAM maps (from
    the SAM modules' hooks, or the model's ``sam`` output when it has one; placed on the
    face crops, :func:`sam_on_faces`)."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "embedding", "w", "i", "sam")}
    try:
        for batch in batches:
            clips_btchw = batch["clip"].to(device, non_blocking=True)
            if transform is not None:
                clips_btchw = transform(clips_btchw, batch["index"].to(device))
            with (
                record_sam_maps(model, sam) as maps,
                autocast(device, bf16, on_cpu=True),
            ):
                out = model(clips_btchw)
            parts["logits"].append(out["logits"].float().cpu().numpy())
            if "embedding" in out:
                parts["embedding"].append(out["embedding"].float().cpu().numpy())
            weights = out["frame_weights"].float()
            parts["w"].append((weights / weights.sum(1, keepdim=True)).cpu().numpy())
            parts["i"].append(batch["index"].numpy())
            b, t = clips_btchw.shape[:2]
            sam_maps = out["sam"] if sam and "sam" in out else mean_sam_map(maps, size)
            if sam_maps is not None:
                sam_maps = sam_on_faces(sam_maps.float().reshape(b * t, size, size), resize)
                parts["sam"].append(sam_maps.reshape(b, t, size, size).cpu().numpy())
    finally:
        model.train(was_training)
    return parts


def _per_video(
    dataset: EvalClips, parts: dict[str, list[np.ndarray]], num_videos: int
) -> list[VideoPrediction]:
    """Group clip outputs (in dataset order) by video."""
    cat: dict[str, np.ndarray | None] = {
        k: (np.concatenate(v) if v else None) for k, v in parts.items()
    }
    index = cat["i"]
    video_of = dataset.video_of[index]
    embeddings = cat["embedding"]
    unit = l2_normalize(embeddings) if embeddings is not None else None
    rows: list[list[int]] = [[] for _ in range(num_videos)]
    for n, v in enumerate(video_of):
        rows[int(v)].append(n)
    out = []
    for r in rows:
        evidence = [
            ClipEvidence(
                frames=np.asarray(dataset.items[index[n]][1], dtype=np.int64),
                weights=cat["w"][n],
                sam=cat["sam"][n] if cat["sam"] is not None else None,
            )
            for n in r
        ]
        out.append(
            VideoPrediction(
                clip_logits=cat["logits"][r],
                clip_embeddings=unit[r] if unit is not None else None,
                clips=evidence,
            )
        )
    return out


def top_frames(prediction: VideoPrediction, n: int | None = None) -> list[tuple[int, int, float]]:
    """The ``n`` (default all) sampled frames with the largest share of the decision:
    (clip, cached frame, weight), each weight a frame's TAM weight divided by the number
    of clips (so the weights of all frames of a video sum to 1), largest first."""
    share = 1.0 / max(prediction.num_clips, 1)
    found = [
        (c, int(f), float(w) * share)
        for c, clip in enumerate(prediction.clips)
        for f, w in zip(clip.frames, clip.weights, strict=True)
    ]
    return sorted(found, key=lambda x: -x[2])[:n]
