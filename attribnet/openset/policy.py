"""The open-set policy of a generator index: which knownness score, and its threshold.

A video's *knownness* score is one of the candidates of :mod:`attribnet.openset.scores`
(``knn_cosine``, ``prototype_cosine``, ``mahalanobis``, ``max_softmax``, ``energy``), and
which one is chosen per index, from data, when the index is built
(:meth:`OpenSetPolicy.choose_score`, :mod:`attribnet.openset.choice`): each known generator
in turn plays the unseen one, every candidate is computed as if that generator had never
been seen, and, when the build made them, the validation clips re-synthesised by random
generator-like nets play unknowns too; the candidate with the best mean AUROC wins. No score
is right for every model (docs/results.md, "Figures moved from module docstrings"), hence a
choice per index. The classifier scores are
candidates only for a model trained with a classifier head (``loss.ce_weight > 0``). The
choice and every candidate's AUROCs (mean and per held-out generator, and against the
simulated unknowns) are in the sidecar's ``open_set`` block.

The threshold is the 5th percentile of the chosen score over the known-generator
VALIDATION videos, i.e. the highest value that keeps at least 95% of them; a video scoring
below it is an ``unknown generator``. Without a validation split the choice and the
threshold use the training videos themselves, each scored leave-self-out (its own vector
left out of the kNN search and of its class's prototype and mean), and the sidecar says
so. Indexes written before the choice existed (score ``max_softmax`` or
``prototype_cosine``, no ``open_set`` block) load and score as they did.

``open_set.npz`` (when the index has them) holds the class means (K, D) and shared
precision matrix (D, D) of the ``mahalanobis`` score, fitted on the indexed embeddings.
"""

from __future__ import annotations

import logging
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from attribnet.errors import DataError
from attribnet.openset.choice import ScoreSelection, Unknowns, select_score
from attribnet.openset.scores import (
    SCORE_NAMES,
    ClassGaussians,
    ClassMixtures,
    Reference,
    default_knn_k,
    energy,
    fit_gaussians,
    fit_mixtures,
    mahalanobis,
    max_softmax,
    mixture_log_likelihoods,
    score_videos,
)

log = logging.getLogger(__name__)

OPEN_SET_FILE = "open_set.npz"
DEFAULT_KEEP = 0.95
KNOWNNESS_SCORES = SCORE_NAMES
FALLBACK_SCORE = "prototype_cosine"
_SELECTION_KEYS = ("chosen", "mean_auroc", "per_class_auroc", "unknown_auroc")


class NeighbourIndex(Protocol):
    """What the policy needs of an index (:class:`attribnet.index.GeneratorIndex` is one):
    its unit vectors with their generator ids, prototypes and a cosine search."""

    labels: np.ndarray
    class_names: list[str]

    @property
    def ntotal(self) -> int: ...

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray: ...

    def unit_queries(self, queries: np.ndarray) -> np.ndarray: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def prototype_predict(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def calibrate_threshold(scores: np.ndarray, keep: float = DEFAULT_KEEP) -> float:
    """The highest threshold t with ``mean(scores >= t) >= keep``: (N,) -> float.

    With ``keep=0.95`` this is the 5th percentile (the lower sample), so at most
    ``floor(0.05 N)`` known samples fall below it.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("cannot calibrate a threshold on zero scores")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    rejected = math.floor((1.0 - keep) * s.size + 1e-9)
    return float(s[rejected])


class OpenSetPolicy:
    """The open-set score and threshold of an index (saved with it: its ``open_set``).

    ``score`` names the knownness score, ``threshold`` (None: nothing is unknown) was
    calibrated on the videos of ``split``. ``knn_k`` (None: :func:`default_knn_k` of the
    index size, set when the index takes the policy) is the k of ``knn_cosine``;
    ``gaussians`` the ``mahalanobis`` model (fitted on the indexed vectors when first
    needed); ``selection`` and ``selection_data`` record how ``score`` was chosen
    (:meth:`choose_score`) and on what data. The methods that score videos take the
    index (:class:`NeighbourIndex`) as their first argument.
    """

    def __init__(
        self,
        *,
        score: str = "prototype_cosine",
        threshold: float | None = None,
        split: str = "",
        knn_k: int | None = None,
        gaussians: ClassGaussians | None = None,
        selection: ScoreSelection | None = None,
        selection_data: dict[str, Any] | None = None,
    ):
        if score not in KNOWNNESS_SCORES:
            raise ValueError(f"threshold_score must be one of {KNOWNNESS_SCORES}")
        self.score = score
        self.threshold = threshold
        self.split = split
        self.knn_k = int(knn_k) if knn_k else None
        self.gaussians = gaussians
        self.selection = selection
        self.selection_data = dict(selection_data or {})
        self._mixtures: ClassMixtures | None = None

    @staticmethod
    def fields(meta: dict[str, Any]) -> dict[str, Any]:
        """The constructor's keywords (all but ``gaussians``) from a parsed sidecar;
        indexes of format 1 have no ``open_set`` block."""
        open_set = meta.get("open_set") or {}
        chosen = open_set.get("selection") or {}
        return {
            "threshold": meta["threshold"]["value"],
            "split": str(meta["threshold"].get("split", "")),
            "score": str(meta["threshold"].get("score", "prototype_cosine")),
            "knn_k": open_set.get("knn_k"),
            "selection": ScoreSelection.from_json(chosen) if chosen.get("chosen") else None,
            "selection_data": {k: v for k, v in chosen.items() if k not in _SELECTION_KEYS},
        }

    def knownness(
        self,
        index: NeighbourIndex,
        embeddings: np.ndarray,
        probabilities: np.ndarray | None = None,
        *,
        logits: np.ndarray | None = None,
        score: str | None = None,
    ) -> np.ndarray:
        """Open-set knownness (Q,) of videos, higher = more known: the score named by
        ``score`` (default: this policy's ``score``), from their unit embeddings (Q, D)
        and, for ``max_softmax``, the classifier's mean probabilities (Q, K), for
        ``energy`` its mean logits (Q, K) (:class:`~attribnet.predict.VideoPrediction`).

        ``knn_cosine`` searches the index (k = ``knn_k``), ``prototype_cosine`` uses its
        prototypes, ``mahalanobis`` its Gaussians, ``gmm`` per-class mixtures fitted on its
        vectors when first needed (not saved: refitted the same way after a load)
        (:mod:`attribnet.openset.scores`).
        """
        name = self.score if score is None else score
        if name == "prototype_cosine":
            return index.prototype_predict(embeddings)[1]
        if name == "knn_cosine":
            kth = index.search(embeddings, self.k_for(index))[0][:, -1]
            return np.maximum(kth, -1.0).astype(np.float64)  # -inf: an IVF search found < k
        if name == "mahalanobis":
            return mahalanobis(index.unit_queries(embeddings), self.class_gaussians(index))
        if name == "gmm":
            if self._mixtures is None:  # seeded: the same index always fits the same ones
                self._mixtures = fit_mixtures(index.vectors(), index.labels, len(index.class_names))
            log_lik = mixture_log_likelihoods(index.unit_queries(embeddings), self._mixtures)
            return log_lik.max(axis=1)
        if name == "max_softmax" and probabilities is not None:
            return max_softmax(probabilities)
        if name == "energy" and logits is not None:
            return energy(logits)
        if name not in KNOWNNESS_SCORES:
            raise ValueError(f"unknown knownness score {name!r}; choose from {KNOWNNESS_SCORES}")
        what = "probabilities" if name == "max_softmax" else "logits"
        raise ValueError(
            f"this index's open-set score is the classifier's {name}: pass the classifier {what}"
        )

    def is_unknown(self, scores: np.ndarray) -> np.ndarray:
        """(Q,) knownness scores -> (Q,) bool: below the threshold (all False without one)."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.threshold is None:
            return np.zeros(scores.shape, dtype=bool)
        return scores < self.threshold

    def k_for(self, index: NeighbourIndex) -> int:
        """The k of ``knn_cosine``: ``knn_k``, else :func:`default_knn_k` of the index."""
        return self.knn_k or default_knn_k(index.ntotal)

    def class_gaussians(self, index: NeighbourIndex) -> ClassGaussians:
        """The ``mahalanobis`` model: fitted on the indexed vectors when first needed."""
        if self.gaussians is None:
            self.gaussians = fit_gaussians(index.vectors(), index.labels, len(index.class_names))
        return self.gaussians

    def calibrate(
        self,
        index: NeighbourIndex,
        embeddings: np.ndarray,
        probabilities: np.ndarray | None = None,
        keep: float = DEFAULT_KEEP,
        split: str = "val",
        *,
        logits: np.ndarray | None = None,
        score: str | None = None,
    ) -> float:
        """Set and return the threshold from known-generator videos: the highest ``score``
        (see :meth:`knownness`) that keeps ``keep`` of them (see
        :func:`calibrate_threshold`). Without ``score``: ``max_softmax`` when the
        classifier's ``probabilities`` (N, K) are given, else ``prototype_cosine`` of the
        embeddings (N, D)."""
        if score is None:
            score = "prototype_cosine" if probabilities is None else "max_softmax"
        known = self.knownness(index, embeddings, probabilities, logits=logits, score=score)
        return self.calibrate_scores(known, score, keep=keep, split=split)

    def calibrate_scores(
        self, scores: np.ndarray, score: str, keep: float = DEFAULT_KEEP, split: str = "val"
    ) -> float:
        """Set the policy's score to ``score`` and the threshold from the known videos'
        ``scores`` (N,) of it; returns the threshold."""
        if score not in KNOWNNESS_SCORES:
            raise ValueError(f"unknown knownness score {score!r}; choose from {KNOWNNESS_SCORES}")
        self.score = score
        self.threshold = calibrate_threshold(scores, keep)
        self.split = split
        log.info(
            "open-set threshold %.4f (%s, keeps %.0f%% of %d %s videos)",
            self.threshold, score, 100 * keep, len(scores), split,
        )  # fmt: skip
        return self.threshold

    def choose_score(
        self,
        index: NeighbourIndex,
        embeddings: np.ndarray,
        labels: np.ndarray,
        *,
        probabilities: np.ndarray | None = None,
        logits: np.ndarray | None = None,
        split: str = "val",
        self_rows: np.ndarray | None = None,
        keep: float = DEFAULT_KEEP,
        unknowns: Mapping[str, Unknowns] | None = None,
    ) -> ScoreSelection | None:
        """Choose the open-set score from data and calibrate its threshold.

        ``embeddings`` (V, D) and generator ids ``labels`` (V,) are known-generator videos
        (the VALIDATION split), with the classifier's ``probabilities`` / ``logits`` (V, K)
        when its head was trained (else the classifier scores are not candidates).
        :func:`~attribnet.openset.choice.select_score` runs leave-one-class-out with the
        index's vectors as the reference set, and weighs how well each score rejects each
        kind of stand-in ``unknowns`` ({kind: videos}; how each was made goes in the sidecar);
        the threshold keeps ``keep`` of the videos under the chosen score. For indexed
        videos as queries, ``self_rows`` (V,) gives their rows: each is then scored
        leave-self-out, in the choice and the threshold.
        When no choice is possible (fewer than two classes among the queries) the score is
        ``prototype_cosine``; returns None then, else the selection.
        """
        reference = Reference(index.vectors(), index.labels, len(index.class_names))
        inputs = {"probabilities": probabilities, "logits": logits}
        kinds = dict(unknowns or {})
        self.class_gaussians(index)
        k = self.knn_k = self.k_for(index)
        try:
            selection = select_score(
                reference, embeddings, labels, index.class_names, k=k,
                self_rows=self_rows, unknowns=kinds, **inputs,
            )  # fmt: skip
            chosen, note = selection.chosen, ""
        except ValueError as exc:
            selection, chosen, note = None, FALLBACK_SCORE, f"no choice possible: {exc}"
            log.warning("open-set score: %s; using %s", note, chosen)
        self.selection = selection
        self.selection_data = {
            "method": " + ".join(["leave-one-class-out", *kinds]),
            "split": split,
            "videos": int(len(labels)),
            **({"unknowns": {k: u.made for k, u in kinds.items()}} if kinds else {}),
            "reference": f"the {index.ntotal} indexed (training) videos",
            "leave_self_out": self_rows is not None,
            "note": note,
        }
        if self_rows is None:
            known = self.knownness(index, embeddings, score=chosen, **inputs)
        else:
            known = score_videos(chosen, reference, embeddings, k=k, self_rows=self_rows, **inputs)
        self.calibrate_scores(known, chosen, keep=keep, split=split)
        return selection

    def meta(self) -> dict[str, Any]:
        """The sidecar's ``threshold`` and ``open_set`` blocks: the threshold, k of
        ``knn_cosine``, how the score was chosen (every candidate's AUROC, and on what
        data), the ``mahalanobis`` file."""
        selection = None
        if self.selection is not None or self.selection_data:
            chosen = self.selection.to_json() if self.selection else {"chosen": None}
            selection = {**self.selection_data, **chosen}
        gaussians = None
        if self.gaussians is not None:
            gaussians = {
                "file": OPEN_SET_FILE,
                "features": "L2-normalised embeddings of the indexed videos",
                "covariance": "shared within-class, Ledoit-Wolf shrinkage",
                "score": "minus the smallest squared Mahalanobis distance to a class mean",
            }
        return {
            "threshold": {
                "value": self.threshold,
                "score": self.score,
                "keep": DEFAULT_KEEP,
                "split": self.split,
            },
            "open_set": {
                "score": self.score,
                "knn_k": self.knn_k,
                "selection": selection,
                "mahalanobis": gaussians,
            },
        }


def read_gaussians(
    folder: Path, meta: dict[str, Any], num_classes: int, dim: int
) -> ClassGaussians | None:
    """The ``mahalanobis`` Gaussians the sidecar names (None when it names none);
    DataError naming ``open_set.npz`` when it is missing, unreadable or the wrong shape."""
    if not (meta.get("open_set") or {}).get("mahalanobis"):
        return None
    path = folder / OPEN_SET_FILE
    try:
        with np.load(path) as data:
            gaussians = ClassGaussians(data["means"], data["precision"], data["counts"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: missing or corrupt ({exc}); rebuild the index") from exc
    shapes = (gaussians.means.shape, gaussians.precision.shape, gaussians.counts.shape)
    if shapes != ((num_classes, dim), (dim, dim), (num_classes,)):
        raise DataError(f"{path}: arrays of shapes {shapes} for {num_classes} classes of dim {dim}")
    return gaussians
