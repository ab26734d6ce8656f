"""A model's outputs over evaluation clips: per clip (:class:`Outputs`) and per video
(:class:`VideoOutputs`), and the rule that turns them into class scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import DataLoader

from attribnet.data.cache import CacheEntry
from attribnet.data.clips import ClipDataset
from attribnet.embedding import l2_normalize
from attribnet.evaluate.loaded_model import LoadedModel
from attribnet.evaluate.options import EvalOptions
from attribnet.evaluate.source import EvalSource, clip_dataset
from attribnet.inference import run_model
from attribnet.metrics import aggregate_by_video


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
    """(N, K) class scores of :class:`Outputs` from ``run_model``'s outputs."""
    if prediction_rule(loaded) == "classifier":
        return out["logits"].astype(np.float64)
    centres = loaded.state["loss"]["arcface.W"].float().numpy().T
    cosine = l2_normalize(out["embedding"]) @ l2_normalize(centres).T
    return loaded.recipe.loss.arcface_scale * cosine.astype(np.float64)


def infer(loaded: LoadedModel, dataset: ClipDataset, opts: EvalOptions) -> Outputs:
    """Run the model over every clip of ``dataset``."""
    recipe = loaded.recipe
    loader = DataLoader(
        dataset,
        batch_size=opts.batch_size or recipe.train.batch_size,
        shuffle=False,
        num_workers=recipe.data.num_workers if opts.num_workers is None else opts.num_workers,
        pin_memory=loaded.device.type == "cuda",
    )
    out = run_model(loaded.model, loader, loaded.device, amp=recipe.train.amp)
    return Outputs(
        scores=class_scores(loaded, out),
        embedding=out.get("embedding"),
        label=out["label"].astype(np.int64),
        video=dataset.video_indices[out["index"]],
        entries=list(dataset.entries),
    )


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
    """Clip and video outputs of the model over ``entries``."""
    dataset = clip_dataset(source, entries, class_names, loaded.recipe, opts)
    out = infer(loaded, dataset, opts)
    return out, to_videos(out)
