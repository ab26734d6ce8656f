"""A model's outputs over evaluation clips: per clip (:class:`Outputs`) and per video
(:class:`VideoOutputs`), and the rule that turns them into class scores. The model runs
through :func:`attribnet.predict.predict_videos`, as for the index and queries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attribnet.data.cache import CacheEntry
from attribnet.errors import DataError
from attribnet.evaluate.loaded_model import LoadedModel
from attribnet.evaluate.options import EvalOptions
from attribnet.evaluate.source import EvalSource
from attribnet.metrics import aggregate_by_video
from attribnet.metrics.vectors import l2_normalize
from attribnet.predict import class_scores as predict_class_scores
from attribnet.predict import predict_videos

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """Per-clip outputs over a dataset, in dataset order.

    ``scores`` (N, K): class scores whose softmax is the class probability (the logits, or
    the scaled cosine to the ArcFace class centres); ``embedding`` (N, D) or None;
    ``label`` (N,) ids into the dataset's class names; ``video`` (N,) position of the
    clip's video in ``entries``.
    """

    scores: np.ndarray
    embedding: np.ndarray | None
    label: np.ndarray
    video: np.ndarray
    entries: list[CacheEntry]


@dataclass
class VideoOutputs:
    """Per-video outputs, videos in order of first clip: ``probs`` (V, K) mean of clip
    probabilities; ``label`` (V,); ``quality`` (V,) str; ``embedding`` (V, D) mean of the
    unit clip embeddings, re-normalised, or None; ``video`` (V,) position of each video in
    :attr:`Outputs.entries`."""

    probs: np.ndarray
    label: np.ndarray
    quality: np.ndarray
    embedding: np.ndarray | None
    video: np.ndarray


def prediction_rule(loaded: LoadedModel) -> str:
    """``classifier`` (argmax of the logits) unless the model was trained without CE and
    has ArcFace class centres: then ``arcface_centres`` (nearest centre by cosine)."""
    centres = (loaded.state.get("loss") or {}).get("arcface.W")
    if loaded.recipe.loss.ce_weight or centres is None or not loaded.model.embedding_dim:
        return "classifier"
    return "arcface_centres"


def class_scores(loaded: LoadedModel, out: dict[str, np.ndarray]) -> np.ndarray:
    """(N, K) class scores of :class:`Outputs` from clip ``logits`` and ``embedding``, by
    :func:`prediction_rule` (:func:`attribnet.predict.class_scores`)."""
    centres = None
    if prediction_rule(loaded) == "arcface_centres":
        centres = loaded.state["loss"]["arcface.W"].float().numpy().T
    scale = loaded.recipe.loss.arcface_scale
    return predict_class_scores(out["logits"], out.get("embedding"), centres, scale)


def to_videos(out: Outputs) -> VideoOutputs:
    """Aggregate clip outputs per video (:func:`attribnet.metrics.aggregate_by_video`)."""
    probs, labels, videos = aggregate_by_video(out.scores, out.video, out.label)
    quality = np.array([out.entries[v].row.quality for v in videos], dtype=object)
    embedding = None
    if out.embedding is not None:
        position = {int(v): i for i, v in enumerate(videos)}
        rows = np.array([position[int(v)] for v in out.video])
        sums = np.zeros((len(videos), out.embedding.shape[1]))
        np.add.at(sums, rows, l2_normalize(out.embedding))
        embedding = l2_normalize(sums)
    return VideoOutputs(probs, labels, quality, embedding, videos.astype(np.int64))


def evaluate_entries(
    loaded: LoadedModel,
    source: EvalSource,
    entries: Sequence[CacheEntry],
    class_names: Sequence[str],
    opts: EvalOptions,
) -> tuple[Outputs, VideoOutputs]:
    """Clip and video outputs of the model over ``entries``: up to ``opts.clips_per_video``
    periodic clips per video (one per full stride of ``T`` frames); videos shorter than
    ``T`` frames are left out with a warning.

    Raises DataError for a label not in ``class_names`` or when no video is long enough.
    """
    t = loaded.recipe.data.num_frames
    usable = [e for e in entries if e.num_frames >= t]
    if len(usable) < len(entries):
        log.warning("leaving out %d video(s) shorter than %d frames", len(entries) - len(usable), t)
    if entries and not usable:
        raise DataError(f"none of {len(entries)} videos has the {t} frames a clip needs")
    stray = sorted({e.row.label for e in usable} - set(class_names))
    if stray:
        raise DataError(f"labels {stray} are not in class_names {list(class_names)}")
    preds = predict_videos(
        loaded.model, source.cache, usable, loaded.recipe,
        clips_per_video=opts.clips_per_video, batch_size=opts.batch_size,
        num_workers=opts.num_workers, device=loaded.device,
    )  # fmt: skip
    counts = [p.num_clips for p in preds]
    clips = {"logits": np.concatenate([p.clip_logits for p in preds])}
    if loaded.model.embedding_dim:
        clips["embedding"] = np.concatenate([p.clip_embeddings for p in preds])
    labels = [list(class_names).index(e.row.label) for e in usable]
    out = Outputs(
        scores=class_scores(loaded, clips),
        embedding=clips.get("embedding"),
        label=np.repeat(np.asarray(labels, dtype=np.int64), counts),
        video=np.repeat(np.arange(len(usable), dtype=np.int64), counts),
        entries=list(usable),
    )
    return out, to_videos(out)
