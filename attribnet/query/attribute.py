"""Query embeddings -> one JSON-ready record per video: :func:`query`.

Each record holds the ``k`` nearest indexed training videos (video id, generator, quality,
cosine); the similarity-weighted k-NN vote (generator and its share of the vote); the
nearest class prototype; the classifier head's generator and softmax probability; the
open-set score (the one the index chose when it was built, see :mod:`attribnet.index`) and
the verdict: the k-NN generator, or :data:`UNKNOWN` when the score is below the index's
threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from attribnet.metrics.embedding import DEFAULT_NEIGHBOURS

if TYPE_CHECKING:
    from attribnet.index import GeneratorIndex

UNKNOWN = "unknown generator"


def query(
    index: GeneratorIndex,
    embeddings: np.ndarray,
    k: int = DEFAULT_NEIGHBOURS,
    *,
    probabilities: np.ndarray | None = None,
    video_ids: Sequence[str] | None = None,
    logits: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Attribute query embeddings (Q, D): one JSON-ready dict per query.

    Keys: ``video``, ``status`` ("ok"), ``verdict`` (k-NN generator or ``unknown
    generator``), ``is_unknown``, ``score`` (the index's open-set score, named in
    ``score_name``; see :meth:`GeneratorIndex.knownness`), ``threshold``,
    ``knn`` {generator, confidence, votes}, ``prototype`` {generator, similarity},
    ``neighbors`` [{rank, video_id, generator, quality, similarity}] and, with
    ``probabilities`` (Q, K) from the classifier head, ``classifier`` {generator,
    probability}. The classifier's mean ``logits`` (Q, K) are needed when the index's
    score is ``energy``.
    """
    names = index.class_names
    ids = list(video_ids) if video_ids is not None else [str(i) for i in range(len(embeddings))]
    if len(embeddings) == 0:
        return []
    sims, rows = index.search(embeddings, k)
    knn_pred, knn_conf, votes = index.knn_predict(embeddings, k)
    proto_pred, proto_sims = index.prototype_predict(embeddings)
    scores = index.open_set.knownness(index, embeddings, probabilities, logits=logits)
    unknown = index.open_set.is_unknown(scores)
    records = []
    for q, video in enumerate(ids):
        record: dict[str, Any] = {
            "video": video,
            "status": "ok",
            "verdict": UNKNOWN if unknown[q] else names[knn_pred[q]],
            "is_unknown": bool(unknown[q]),
            "score": float(scores[q]),
            "score_name": index.open_set.score,
            "threshold": index.open_set.threshold,
            "knn": {
                "generator": names[knn_pred[q]],
                "confidence": float(knn_conf[q]),
                "votes": {n: float(v) for n, v in zip(names, votes[q], strict=True) if v > 0},
            },
            "prototype": {
                "generator": names[proto_pred[q]],
                "similarity": float(proto_sims[q]),
            },
            "neighbors": _neighbors(index, sims[q], rows[q]),
        }
        if probabilities is not None:
            top = int(np.argmax(probabilities[q]))
            record["classifier"] = {
                "generator": names[top],
                "probability": float(probabilities[q, top]),
            }
        records.append(record)
    return records


def _neighbors(index: GeneratorIndex, sims: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
    """One query's neighbour rows (k,) as dicts, best first (padding rows -1 left out)."""
    return [
        {
            "rank": rank,
            "video_id": index.video_ids[row],
            "generator": index.class_names[index.labels[row]],
            "quality": index.qualities[row],
            "similarity": float(sim),
        }
        for rank, (sim, row) in enumerate(zip(sims, rows, strict=True), 1)
        if row >= 0
    ]
