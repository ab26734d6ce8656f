"""Choosing an index's open-set knownness score from data, with no retraining.

Leave-one-class-out (:func:`select_score`): each known class in turn plays the unknown
generator (its videos are the unknown queries, the other classes' the known ones) and every
candidate is computed as if the class had never been seen (its reference videos, prototype
and Gaussian removed; its logit column dropped, its probability removed and the rest
renormalised). The candidate with the best mean AUROC over the held-out classes wins; ties
go to the earlier name in :data:`SCORE_NAMES`.

With stand-in unknowns (:class:`Unknowns`: the validation clips re-synthesised by random
generator-like nets, :class:`attribnet.data.open_space.OpenSpaceSimulator`; the validation
videos of ``data.outlier_classes`` when a recipe has them) each candidate also gets the
AUROC of the known videos against each kind, and the choice is the best mean of these and
the leave-one-class-out AUROC. benchmarks/bench_score_choice.py compares the two choices on
the truly held-out generator (figures: docs/results.md, benchmarks/LOG.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from attribnet.openset.scores import (
    CHOICE_SCORES,
    REFERENCE_SCORES,
    SCORE_NAMES,
    Reference,
    drop_class_probabilities,
    score_videos,
)

log = logging.getLogger(__name__)

_INPUT = {"max_softmax": "probabilities", "energy": "logits"}


@dataclass(frozen=True)
class ScoreSelection:
    """The outcome of :func:`select_score`: the ``chosen`` score's name, every candidate's
    ``mean_auroc`` over the held-out classes, ``per_class_auroc`` {score: {held-out class
    name: AUROC}} and, for each kind of stand-in unknowns given, ``unknown_auroc`` {kind:
    {score: AUROC of the known queries against those unknowns}}."""

    chosen: str
    mean_auroc: dict[str, float]
    per_class_auroc: dict[str, dict[str, float]] = field(default_factory=dict)
    unknown_auroc: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (:meth:`from_json` reads it back)."""
        out = {
            "chosen": self.chosen,
            "mean_auroc": dict(self.mean_auroc),
            "per_class_auroc": {s: dict(v) for s, v in self.per_class_auroc.items()},
        }
        if self.unknown_auroc:
            out["unknown_auroc"] = {k: dict(v) for k, v in self.unknown_auroc.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoreSelection:
        """Read what :meth:`to_json` wrote."""

        def nested(block: dict[str, Any]) -> dict[str, dict[str, float]]:
            return {str(a): {str(b): float(x) for b, x in v.items()} for a, v in block.items()}

        return cls(
            str(data["chosen"]),
            {str(s): float(v) for s, v in data["mean_auroc"].items()},
            nested(data.get("per_class_auroc", {})),
            nested(data.get("unknown_auroc", {})),
        )


@dataclass(frozen=True)
class Unknowns:
    """Stand-in unknown videos for :func:`select_score`, through the model: unit
    ``embeddings`` (U, D), and the classifier's ``probabilities`` / ``logits`` (U, K) when
    its head was trained; ``made``: how they were made (for the index sidecar). E.g. the
    validation clips re-synthesised by random nets, or the validation videos of
    ``data.outlier_classes``."""

    embeddings: np.ndarray
    probabilities: np.ndarray | None = None
    logits: np.ndarray | None = None
    made: str = ""


def _computable(
    names: Sequence[str], probabilities: np.ndarray | None, logits: np.ndarray | None
) -> list[str]:
    """The scores of ``names`` that can be computed: the reference scores always, a
    classifier score when its input (probabilities or logits) is given."""
    given = {"probabilities": probabilities, "logits": logits}
    return [n for n in names if n in REFERENCE_SCORES or given[_INPUT[n]] is not None]


def select_score(
    reference: Reference,
    embeddings: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    probabilities: np.ndarray | None = None,
    logits: np.ndarray | None = None,
    k: int = 1,
    self_rows: np.ndarray | None = None,
    candidates: Sequence[str] = CHOICE_SCORES,
    unknowns: Mapping[str, Unknowns] | None = None,
) -> ScoreSelection:
    """Choose a knownness score by leave-one-class-out inside the known classes and by how
    well it tells the queries from each kind of stand-in ``unknowns`` ({kind: videos}).

    Queries are known-generator videos: unit ``embeddings`` (V, D), generator ids
    ``labels`` (V,) and, for ``max_softmax`` / ``energy``, the classifier's
    ``probabilities`` / ``logits`` (V, K) (candidates whose inputs are missing are left
    out). For each class c with queries: c's queries are the unknowns, the others' the
    knowns; each score is computed without class c (see the module docstring) and its
    AUROC (knowns positive) recorded. ``self_rows`` (V,) marks queries that are themselves
    reference rows (leave-self-out, :func:`score_videos`). Each kind of ``unknowns`` gives
    every score the AUROC of all queries (positive) against those videos, computed with the
    whole reference; the choice is the best mean of the leave-one-class-out AUROC and these.
    ValueError when no class can be held out (fewer than two classes among the queries).
    """
    labels = np.asarray(labels, dtype=np.int64)
    usable = _computable(candidates, probabilities, logits)
    if not usable:
        raise ValueError("no knownness score can be computed from what was given")
    per_class: dict[str, dict[str, float]] = {n: {} for n in usable}
    for held_out in (int(c) for c in np.unique(labels)):
        is_known = labels != held_out
        ref, rows = reference.without_class(held_out, self_rows)
        if not is_known.any() or len(ref.labels) == 0:
            continue
        inputs = {
            "probabilities": None
            if probabilities is None
            else drop_class_probabilities(probabilities, held_out),
            "logits": None if logits is None else np.delete(logits, held_out, axis=1),
        }
        for name in usable:
            scores = score_videos(name, ref, embeddings, k=k, self_rows=rows, **inputs)
            scores = np.nan_to_num(scores, neginf=-np.finfo(np.float64).max)
            per_class[name][class_names[held_out]] = float(roc_auc_score(is_known, scores))
    if not per_class[usable[0]]:
        raise ValueError("leave-one-class-out needs queries of at least two known classes")
    mean = {n: float(np.mean(list(per_class[n].values()))) for n in usable}
    against: dict[str, dict[str, float]] = {}
    known = {"probabilities": probabilities, "logits": logits}
    known_scores: dict[str, np.ndarray] = {}  # the same for every kind: computed once
    for kind, videos in (unknowns or {}).items():
        usable = _computable(usable, videos.probabilities, videos.logits)
        other = {"probabilities": videos.probabilities, "logits": videos.logits}
        truth = np.r_[np.ones(len(labels)), np.zeros(len(videos.embeddings))]
        against[kind] = {}
        for name in usable:
            if name not in known_scores:
                known_scores[name] = score_videos(
                    name, reference, embeddings, k=k, self_rows=self_rows, **known
                )
            neg = score_videos(name, reference, videos.embeddings, k=k, **other)
            both = np.r_[known_scores[name], neg]
            both = np.nan_to_num(both, neginf=-np.finfo(np.float64).max)
            against[kind][name] = float(roc_auc_score(truth, both))
    merit = {n: float(np.mean([mean[n], *(a[n] for a in against.values())])) for n in usable}
    chosen = max(usable, key=lambda n: (merit[n], -SCORE_NAMES.index(n)))
    log.info(
        "knownness score %s chosen by %s over %d class(es): mean AUROC %s%s",
        chosen, " and ".join(["leave-one-class-out", *against]), len(per_class[chosen]),
        ", ".join(f"{n} {mean[n]:.3f}" for n in usable),
        "".join(f"; against {kind} " + ", ".join(f"{n} {a[n]:.3f}" for n in usable)
                for kind, a in against.items()),
    )  # fmt: skip
    return ScoreSelection(chosen, mean, per_class, against)
