"""Open-set knownness scores of videos, from the generator index and the classifier.

A *knownness* score says how much a video looks like one of the known generators; higher =
more known. Candidates (:data:`SCORE_NAMES`, also the tie-break order of the choice):

- ``knn_cosine``: cosine similarity of the unit embedding to its k-th nearest training
  embedding (Sun et al., "Out-of-distribution detection with deep nearest neighbors",
  ICML 2022). ``k`` is about 0.1% of the reference set, at least 1 (:func:`default_knn_k`;
  Sun et al. used k = 50 for CIFAR-10's 50,000 training images).
- ``prototype_cosine``: largest cosine similarity to a class prototype (the re-normalised
  mean unit embedding of a class's training videos).
- ``mahalanobis``: minus the smallest squared Mahalanobis distance to a class mean, under
  class-conditional Gaussians with one shared (within-class, Ledoit-Wolf shrunk) covariance
  (Lee et al., NeurIPS 2018). It runs on the L2-normalised embeddings, the features that
  every path (index build, query, evaluate) has; the encoder features before the heads
  are not kept by the inference path, and their covariance (2048-d for ResNet-50) would be
  estimated from a few hundred training videos.
- ``gmm``: the largest class log-likelihood under per-class Gaussian mixtures (diagonal
  covariances, up to :data:`GMM_COMPONENTS` components each) fitted on the reference
  embeddings: a generator made by many trainings can form several clusters, one per group
  of similar trainings, which one mean (prototype, Mahalanobis) covers badly. Reported by
  evaluation; an index chooses among the other five (:data:`CHOICE_SCORES`) unless asked.
- ``max_softmax``: the largest class probability of the video (mean of its clips' softmax).
- ``energy``: ``logsumexp`` of the video's logits (mean of its clips' logits), T = 1
  (Liu et al., NeurIPS 2020).

Which one an index uses is chosen from data: :mod:`attribnet.openset.choice`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from sklearn.covariance import LedoitWolf
from sklearn.mixture import GaussianMixture

from attribnet.metrics.vectors import l2_normalize
from attribnet.runtime.faiss_import import faiss

log = logging.getLogger(__name__)

SCORE_NAMES = ("knn_cosine", "prototype_cosine", "mahalanobis", "max_softmax", "energy", "gmm")
REFERENCE_SCORES = ("knn_cosine", "prototype_cosine", "mahalanobis", "gmm")
CHOICE_SCORES = SCORE_NAMES[:5]
"""What an index chooses its open-set score from by default (``gmm`` only when asked)."""
GMM_COMPONENTS = 4
CLASSIFIER_SCORES = ("max_softmax", "energy")
KNN_FRACTION = 0.001
# each score in plain words, one sentence for a reader of a report (attribnet.query.html)
SCORE_MEANINGS = {
    "knn_cosine": "the cosine similarity of the video's embedding to its k-th nearest indexed "
    "training video: high when the video lies among the videos of one known generator.",
    "prototype_cosine": "the cosine similarity of the video's embedding to the nearest "
    "prototype, the mean embedding of one known generator's indexed videos.",
    "mahalanobis": "how near the video's embedding lies to the nearest known generator's mean, "
    "measured against how much the indexed videos vary (minus a squared distance: 0 at a "
    "mean, more negative farther away).",
    "gmm": "how likely the video's embedding is under the nearest known generator's mixture "
    "of Gaussian clusters, fitted on its indexed videos (a log-likelihood: higher is more "
    "known; several clusters, since one generator's trainings need not lie together).",
    "max_softmax": "the classifier's largest probability for any one known generator: high "
    "when the classifier is sure of one of them.",
    "energy": "the log of the summed exponentials of the classifier's raw outputs (logits) "
    "over the known generators: high when the classifier answers strongly for some known "
    "generator; its scale is the model's own, so read it against the threshold only.",
}
COVARIANCE_RIDGE = 1e-6


def default_knn_k(num_reference: int) -> int:
    """k for ``knn_cosine`` over a reference set of N videos: ``round(0.001 N)``, >= 1."""
    return max(1, round(KNN_FRACTION * num_reference))


# ----------------------------------------------------------------------------- classifier scores


def max_softmax(probabilities: np.ndarray) -> np.ndarray:
    """Largest class probability: (V, K) probabilities -> (V,) float64."""
    return np.asarray(probabilities, dtype=np.float64).max(axis=1)


def energy(logits: np.ndarray) -> np.ndarray:
    """Negative free energy at T = 1, ``logsumexp`` over classes: (V, K) logits -> (V,)."""
    return logsumexp(np.asarray(logits, dtype=np.float64), axis=1)


def drop_class_probabilities(probabilities: np.ndarray, held_out: int) -> np.ndarray:
    """(V, K) -> (V, K-1): class ``held_out`` removed and the rest renormalised, i.e. the
    softmax over the logits without that column (exact for a one-clip video; for a video's
    mean of clip probabilities, the renormalised mean)."""
    rest = np.delete(np.asarray(probabilities, dtype=np.float64), held_out, axis=1)
    return rest / np.maximum(rest.sum(axis=1, keepdims=True), 1e-300)


# ----------------------------------------------------------------------------- reference scores


def class_prototypes(
    embeddings: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean of unit embeddings (N, D), re-normalised -> prototypes (K, D) float32
    and counts (K,) int64. A class without vectors gets a zero prototype and count 0."""
    sums, counts = _class_sums(l2_normalize(embeddings), labels, num_classes)
    return l2_normalize(sums.astype(np.float32)), counts


def prototype_similarities(
    embeddings: np.ndarray, prototypes: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Cosine of unit embeddings (V, D) to each prototype (K, D): (V, K) float32, -inf for
    classes without training videos (``counts`` (K,) == 0)."""
    sims = l2_normalize(embeddings) @ np.asarray(prototypes, dtype=np.float32).T
    return np.where(np.asarray(counts) > 0, sims, -np.inf).astype(np.float32)


def prototype_cosine(
    embeddings: np.ndarray, prototypes: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Max cosine of unit embeddings (V, D) to the prototypes (K, D) of the classes with
    training videos (``counts`` (K,) > 0) -> (V,)."""
    return prototype_similarities(embeddings, prototypes, counts).max(axis=1)


def knn_cosine(
    index_vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    self_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Cosine similarity to the k-th nearest reference vector: (N, D), (V, D) -> (V,).

    Both are L2-normalised here; exact search (``faiss.knn``, inner product). With
    ``self_rows`` (V,) (the row of each query in ``index_vectors``, -1 when it is not one),
    a query's own row is skipped. ``k`` is capped at the neighbours there are.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ref, q = l2_normalize(index_vectors), l2_normalize(queries)
    own = _own_rows(self_rows, len(q))
    k = min(k, len(ref) - int((own >= 0).any()))
    if k < 1:
        raise ValueError("knn_cosine needs at least one reference vector besides the query")
    sims, rows = faiss.knn(q, ref, min(k + 1, len(ref)), metric=faiss.METRIC_INNER_PRODUCT)
    return kth_similarity(sims, rows, k, own)


def kth_similarity(
    sims: np.ndarray, rows: np.ndarray, k: int, self_rows: np.ndarray | None = None
) -> np.ndarray:
    """From neighbour lists (V, n) best first, the k-th similarity per query, skipping the
    query's own row (``self_rows`` (V,), -1 for none) -> (V,) float64."""
    sims = np.asarray(sims, dtype=np.float64)
    own = _own_rows(self_rows, len(sims))
    others = np.asarray(rows) != own[:, None]
    position = np.argmax(np.cumsum(others, axis=1) >= k, axis=1)
    return sims[np.arange(len(sims)), position]


@dataclass(frozen=True)
class ClassGaussians:
    """Class-conditional Gaussians with a shared covariance: ``means`` (K, D), shared
    ``precision`` (D, D) (inverse covariance), ``counts`` (K,) (a class with count 0 has no
    Gaussian)."""

    means: np.ndarray
    precision: np.ndarray
    counts: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name, for ``np.savez``."""
        return {"means": self.means, "precision": self.precision, "counts": self.counts}


def fit_gaussians(features: np.ndarray, labels: np.ndarray, num_classes: int) -> ClassGaussians:
    """Class means of ``features`` (N, D) and the Ledoit-Wolf estimate of their pooled
    within-class covariance (each vector centred by its class mean), inverted with a ridge
    of 1e-6 times its mean variance so that a degenerate covariance still inverts."""
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    sums, counts = _class_sums(x, labels, num_classes)
    means = sums / np.maximum(counts, 1)[:, None]
    centred = x - means[labels]
    covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
    ridge = max(COVARIANCE_RIDGE * float(np.trace(covariance)) / x.shape[1], 1e-12)
    precision = np.linalg.inv(covariance + ridge * np.eye(x.shape[1]))
    return ClassGaussians(means, (precision + precision.T) / 2, counts)


@dataclass(frozen=True)
class ClassMixtures:
    """Per-class Gaussian mixtures with diagonal covariances: log ``weights`` (K, M) (-inf
    for a component or class that does not exist), ``means`` (K, M, D), ``variances``
    (K, M, D)."""

    log_weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray


def fit_mixtures(
    features: np.ndarray, labels: np.ndarray, num_classes: int, components: int = GMM_COMPONENTS
) -> ClassMixtures:
    """One :class:`sklearn.mixture.GaussianMixture` per class with vectors (diagonal
    covariances, ``min(components, n // 2)`` components for a class of n vectors, at least
    1; seeded, so the same vectors give the same mixtures)."""
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    d = x.shape[1]
    log_w = np.full((num_classes, components), -np.inf)
    means = np.zeros((num_classes, components, d))
    variances = np.ones((num_classes, components, d))
    for c in range(num_classes):
        rows = x[labels == c]
        if not len(rows):
            continue
        m = max(1, min(components, len(rows) // 2))
        gmm = GaussianMixture(m, covariance_type="diag", reg_covar=1e-4, random_state=0)
        gmm.fit(rows)
        log_w[c, :m], means[c, :m], variances[c, :m] = (
            np.log(gmm.weights_),
            gmm.means_,
            gmm.covariances_,
        )
    return ClassMixtures(log_w, means, variances)


def mixture_log_likelihoods(features: np.ndarray, mixtures: ClassMixtures) -> np.ndarray:
    """(V, D) -> (V, K) log-likelihood of each vector under each class's mixture (-inf for
    a class without one)."""
    x = np.asarray(features, dtype=np.float64)[:, None, None, :]
    var = mixtures.variances[None]
    log_pdf = -0.5 * (((x - mixtures.means[None]) ** 2 / var) + np.log(2 * np.pi * var)).sum(-1)
    with np.errstate(invalid="ignore"):  # -inf weights of absent components
        return logsumexp(log_pdf + mixtures.log_weights[None], axis=2)


def mahalanobis(features: np.ndarray, gaussians: ClassGaussians) -> np.ndarray:
    """``-min_c (x - mu_c)^T P (x - mu_c)`` over classes with a Gaussian: (V, D) -> (V,)."""
    return -np.min(_squared_distances(np.asarray(features, dtype=np.float64), gaussians), axis=1)


def _squared_distances(x: np.ndarray, gaussians: ClassGaussians) -> np.ndarray:
    """(V, D) -> (V, K) squared Mahalanobis distances; inf for classes without a Gaussian."""
    p, mu = gaussians.precision, gaussians.means
    xp = x @ p
    d2 = (xp * x).sum(1)[:, None] - 2.0 * xp @ mu.T + ((mu @ p) * mu).sum(1)[None, :]
    return np.where(gaussians.counts > 0, np.maximum(d2, 0.0), np.inf)


def _class_sums(x: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """Per-class sums (K, D) float64 and counts (K,) int64 of rows of ``x`` (N, D)."""
    labels = np.asarray(labels, dtype=np.int64)
    sums = np.zeros((num_classes, x.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, x)
    return sums, np.bincount(labels, minlength=num_classes).astype(np.int64)


def _own_rows(self_rows: np.ndarray | None, num_queries: int) -> np.ndarray:
    """``self_rows`` as (V,) int64, all -1 when None."""
    if self_rows is None:
        return np.full(num_queries, -1, dtype=np.int64)
    own = np.asarray(self_rows, dtype=np.int64)
    if own.shape != (num_queries,):
        raise ValueError(f"self_rows must have shape ({num_queries},), got {own.shape}")
    return own


# ----------------------------------------------------------------------------- scoring videos


@dataclass(frozen=True)
class Reference:
    """The known videos that reference scores compare with: unit ``embeddings`` (N, D) and
    generator ids ``labels`` (N,) in 0..num_classes-1."""

    embeddings: np.ndarray
    labels: np.ndarray
    num_classes: int

    def without_class(
        self, held_out: int, self_rows: np.ndarray | None
    ) -> tuple[Reference, np.ndarray | None]:
        """This reference without class ``held_out`` (ids unchanged, the class just has no
        videos), and ``self_rows`` mapped to its rows (-1 for removed rows)."""
        keep = self.labels != held_out
        reduced = Reference(self.embeddings[keep], self.labels[keep], self.num_classes)
        if self_rows is None:
            return reduced, None
        position = np.full(len(self.labels), -1, dtype=np.int64)
        position[keep] = np.arange(int(keep.sum()))
        rows = np.asarray(self_rows, dtype=np.int64)
        return reduced, np.where(rows >= 0, position[np.maximum(rows, 0)], -1)


def score_videos(
    name: str,
    reference: Reference,
    embeddings: np.ndarray,
    *,
    probabilities: np.ndarray | None = None,
    logits: np.ndarray | None = None,
    k: int = 1,
    self_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Knownness ``name`` of videos: unit embeddings (V, D), probabilities or logits (V, K)
    for the classifier scores -> (V,) float64.

    ``self_rows`` (V,) gives each query's row in the reference (-1: none): leave-self-out,
    i.e. kNN skips that row, and the query's own class prototype / mean leaves it out (the
    shared covariance keeps it: one video moves it little).
    """
    if name == "max_softmax":
        return max_softmax(_required(probabilities, name, "probabilities"))
    if name == "energy":
        return energy(_required(logits, name, "logits"))
    if name == "knn_cosine":
        return knn_cosine(reference.embeddings, embeddings, k, self_rows=self_rows)
    if name not in REFERENCE_SCORES:
        raise ValueError(f"unknown knownness score {name!r}; choose from {SCORE_NAMES}")
    x = l2_normalize(embeddings).astype(np.float64)
    ref, labels, num_classes = reference.embeddings, reference.labels, reference.num_classes
    precision = None
    if name == "gmm":
        if self_rows is not None:
            raise ValueError("gmm cannot leave a query's own row out (refit per query)")
        return mixture_log_likelihoods(x, fit_mixtures(ref, labels, num_classes)).max(axis=1)
    if name == "prototype_cosine":
        per_class = prototype_similarities(x, *class_prototypes(ref, labels, num_classes))
        per_class = per_class.astype(np.float64)
    else:
        gaussians = fit_gaussians(ref, labels, num_classes)
        per_class, precision = -_squared_distances(x, gaussians), gaussians.precision
    if self_rows is not None:
        _leave_self_out(per_class, x, reference, _own_rows(self_rows, len(x)), precision)
    return per_class.max(axis=1)


def _leave_self_out(
    per_class: np.ndarray,
    x: np.ndarray,
    reference: Reference,
    own: np.ndarray,
    precision: np.ndarray | None,
) -> None:
    """Recompute in place each query's own-class entry of ``per_class`` (V, K) from its
    class mean without the query's own reference row ``own`` (V,) (-1: none): the cosine to
    it (``precision`` None) or minus the squared Mahalanobis distance; -inf when that
    leaves the class empty."""
    queries = np.flatnonzero(own >= 0)
    if not queries.size:
        return
    ref = l2_normalize(reference.embeddings).astype(np.float64)
    sums, counts = _class_sums(ref, reference.labels, reference.num_classes)
    own_class = reference.labels[own[queries]]
    left = counts[own_class] - 1
    means = (sums[own_class] - ref[own[queries]]) / np.maximum(left, 1)[:, None]
    if precision is None:
        norms = np.maximum(np.linalg.norm(means, axis=1), 1e-12)
        own_score = (x[queries] * means).sum(axis=1) / norms
    else:
        diff = x[queries] - means
        own_score = -((diff @ precision) * diff).sum(axis=1)
    per_class[queries, own_class] = np.where(left > 0, own_score, -np.inf)


def _required(values: np.ndarray | None, name: str, what: str) -> np.ndarray:
    if values is None:
        raise ValueError(f"the {name} knownness score needs the classifier's {what}")
    return values
