"""What is measured on a model's outputs: closed-set reports (overall and per quality),
embedding-space classifiers, the generator index, real-vs-fake detection and open-set
scores. A part that cannot be measured comes back as ``{"skipped": reason}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from attribnet.evaluate.predictions import Outputs, VideoOutputs
from attribnet.index import GeneratorIndex
from attribnet.metrics import (
    closed_set_report,
    detection_metrics,
    embedding_protocols,
    open_set_metrics,
    softmax,
)
from attribnet.metrics.vectors import l2_normalize
from attribnet.openset.scores import (
    REFERENCE_SCORES,
    SCORE_NAMES,
    energy,
    max_softmax,
    prototype_cosine,
)

DETECTION_FPR = 0.10
REAL = "real"


def quality_order(present: Sequence[str], requested: Sequence[str] | None) -> list[str]:
    """The qualities present, in the requested order (else sorted)."""
    found = set(present)
    return [q for q in requested if q in found] if requested else sorted(found)


def closed_set_metrics(
    out: Outputs, videos: VideoOutputs, names: Sequence[str], qualities: Sequence[str] | None
) -> dict[str, Any]:
    """``{"clip", "video"}`` closed-set reports, plus ``per_quality`` {quality: {"clip",
    "video"}} when the test set holds more than one quality."""
    clip_pred, video_pred = out.scores.argmax(1), videos.probs.argmax(1)
    result: dict[str, Any] = {
        "clip": closed_set_report(out.label, clip_pred, names),
        "video": closed_set_report(videos.label, video_pred, names),
    }
    clip_quality = np.array([out.entries[v].row.quality for v in out.video], dtype=object)
    order = quality_order(list(videos.quality), qualities)
    if len(order) > 1:
        result["per_quality"] = {
            q: {
                "clip": closed_set_report(
                    out.label[clip_quality == q], clip_pred[clip_quality == q], names
                ),
                "video": closed_set_report(
                    videos.label[videos.quality == q], video_pred[videos.quality == q], names
                ),
            }
            for q in order
        }
    return result


def embedding_metrics(
    val: tuple[Outputs, VideoOutputs] | None,
    test: tuple[Outputs, VideoOutputs],
    k: int,
    seed: int,
) -> dict[str, Any]:
    """kNN / logistic regression / linear SVM fit on validation embeddings, scored on test,
    at clip and at video level; ``{"skipped": reason}`` when impossible."""
    if test[0].embedding is None:
        return {"skipped": "the model has no embedding head"}
    if val is None:
        return {"skipped": "no validation videos to fit the classifiers on"}
    if np.unique(val[1].label).size < 2:
        return {"skipped": "the validation split holds fewer than 2 classes"}
    clip = embedding_protocols(
        l2_normalize(val[0].embedding),
        val[0].label,
        l2_normalize(test[0].embedding),
        test[0].label,
        k=k,
        seed=seed,
    )
    video = embedding_protocols(
        val[1].embedding, val[1].label, test[1].embedding, test[1].label, k=k, seed=seed
    )
    return {"fit_on": "val", "clip": clip, "video": video}


def index_metrics(index: GeneratorIndex, test: VideoOutputs, k: int, path: str) -> dict[str, Any]:
    """Video-level accuracy of the generator index's kNN vote and nearest prototype."""
    knn_pred, _, _ = index.knn_predict(test.embedding, k)
    proto_pred, _ = index.prototype_predict(test.embedding)
    return {
        "path": path,
        "k": int(min(k, index.ntotal)),
        "knn_accuracy": float(np.mean(knn_pred == test.label)),
        "prototype_accuracy": float(np.mean(proto_pred == test.label)),
    }


def detection(
    val: tuple[Outputs, VideoOutputs] | None,
    test: tuple[Outputs, VideoOutputs],
    names: Sequence[str],
) -> dict[str, Any]:
    """Real-vs-fake metrics with score = 1 - p(real), threshold at validation FPR 10%, at
    clip and video level; ``{"skipped": reason}`` when impossible."""
    if val is None:
        return {"skipped": "no validation videos to choose the threshold on"}
    real = list(names).index(REAL)

    def scores(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return 1.0 - probs[:, real], labels != real

    result: dict[str, Any] = {"target_fpr": DETECTION_FPR}
    levels = {
        "clip": (softmax(val[0].scores), val[0].label, softmax(test[0].scores), test[0].label),
        "video": (val[1].probs, val[1].label, test[1].probs, test[1].label),
    }
    for level, (vp, vl, tp, tl) in levels.items():
        try:
            result[level] = detection_metrics(*scores(vp, vl), *scores(tp, tl), DETECTION_FPR)
        except ValueError as exc:
            return {"skipped": str(exc)}
    return result


def prototype_scores(
    embeddings: np.ndarray, prototypes: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Knownness (V,): max cosine of unit embeddings (V, D) to the prototypes (K, D) of
    classes with training videos (``counts`` (K,) > 0);
    :func:`attribnet.openset.scores.prototype_cosine`."""
    return prototype_cosine(embeddings, prototypes, counts)


def video_logits(out: Outputs, videos: VideoOutputs) -> np.ndarray:
    """Mean class scores (logits) of each video's clips: (V, K), in ``videos`` order."""
    position = np.full(int(out.video.max()) + 1, -1, dtype=np.int64)
    position[videos.video] = np.arange(len(videos.video))
    sums = np.zeros((len(videos.video), out.scores.shape[1]), dtype=np.float64)
    np.add.at(sums, position[out.video], out.scores)
    return sums / np.bincount(position[out.video], minlength=len(videos.video))[:, None]


def knownness_scores(
    out: Outputs, videos: VideoOutputs, index: GeneratorIndex | None
) -> dict[str, np.ndarray]:
    """Every knownness candidate that can be computed, {name: (V,)} in
    :data:`~attribnet.openset.scores.SCORE_NAMES` order: the classifier scores always, the
    reference scores (kNN, prototype, Mahalanobis) with an ``index`` of training videos
    and embeddings, each computed by the index as a query would be."""
    found = {
        "max_softmax": max_softmax(videos.probs),
        "energy": energy(video_logits(out, videos)),
    }
    if index is not None and videos.embedding is not None:
        for name in REFERENCE_SCORES:
            found[name] = index.open_set.knownness(index, videos.embedding, score=name)
    return {name: found[name] for name in SCORE_NAMES if name in found}


def open_set(
    test: tuple[Outputs, VideoOutputs],
    unknown: tuple[Outputs, VideoOutputs],
    index: GeneratorIndex | None,
    origin: str = "",
    primary: str | None = None,
) -> dict[str, Any]:
    """Open-set metrics at video level, known = test videos, unknown = unseen generators.

    Every candidate knownness score (:func:`knownness_scores`; the reference scores need
    ``index``, the generator index or one of the training videos, described by
    ``origin``) gets AUROC, OSCR and TNR@95TPR under ``result[name]``; ``result["scores"]``
    lists them. ``primary`` names the score of the verdict (the index's
    ``threshold_score``, chosen at build time); by default ``prototype_cosine`` when
    computed, else ``max_softmax``. ``known_correct`` = video prediction right.
    """
    videos = test[1]
    correct = videos.probs.argmax(1) == videos.label
    known = knownness_scores(*test, index)
    unseen = knownness_scores(*unknown, index)
    result: dict[str, Any] = {
        "level": "video",
        "known_videos": int(len(videos.label)),
        "unknown_videos": int(len(unknown[1].label)),
        "scores": list(known),
        "primary": "prototype_cosine" if "prototype_cosine" in known else "max_softmax",
    }
    for name in known:
        result[name] = open_set_metrics(known[name], unseen[name], correct)
    if "prototype_cosine" in known:
        result["prototypes_from"] = origin
        result["knn_k"] = index.open_set.knn_k
    if primary is not None and primary in known:
        result["primary"] = primary
    if index is not None and index.open_set.selection is not None:
        result["index_choice"] = {
            **index.open_set.selection_data,
            "chosen": index.open_set.selection.chosen,
            "mean_auroc": index.open_set.selection.mean_auroc,
        }
    return result
