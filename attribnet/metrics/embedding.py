"""Embedding-space protocols: classifiers fit on embeddings instead of the model's head."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

from attribnet.metrics.closed_set import macro_f1
from attribnet.metrics.inputs import as_labels, same_length

DEFAULT_NEIGHBOURS = 5
"""k of every k-nearest-neighbour answer: the query's vote, the index's and evaluation's
k-NN accuracy (``-k/--neighbours`` on the command line)."""


def embedding_protocols(
    train_emb: np.ndarray,
    train_y: np.ndarray,
    test_emb: np.ndarray,
    test_y: np.ndarray,
    k: int = DEFAULT_NEIGHBOURS,
    seed: int = 0,
) -> dict[str, Any]:
    """Embedding-space protocols of Korshunov et al. (ICASSP 2022): kNN, LogReg, linear SVM.

    Each classifier is fit on ``train_emb`` (callers pass validation-split embeddings, never
    test) and scored on ``test_emb``. kNN uses cosine distance with ``min(k, n_train)``
    neighbours; logistic regression and the linear SVM use sklearn defaults on the raw
    embeddings (pass them L2-normalised, as the embedding heads produce them).
    Deterministic for a given ``seed``.

    Args:
        train_emb: (M, D) embeddings to fit on; train_y: (M,) generator ids, >= 2 classes.
        test_emb: (N, D) embeddings to score; test_y: (N,) generator ids.
        k: number of neighbours before capping.
        seed: random state of the logistic regression and the SVM.

    Returns:
        ``{"knn": {...}, "logreg": {...}, "linear_svm": {...}, "knn_k": int}``, each inner
        dict holding ``accuracy`` and ``macro_f1`` (as in :func:`closed_set_report`).
    """
    x_train = np.asarray(train_emb, dtype=np.float64)
    x_test = np.asarray(test_emb, dtype=np.float64)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"embeddings must be (M, D) and (N, D), got {x_train.shape} and {x_test.shape}"
        )
    y_train, y_test = as_labels("train_y", train_y), as_labels("test_y", test_y)
    same_length(train_emb=x_train, train_y=y_train)
    same_length(test_emb=x_test, test_y=y_test)
    if np.unique(y_train).size < 2:
        raise ValueError("train_y must hold at least 2 classes")
    if y_test.size == 0:
        raise ValueError("test_y is empty")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")

    k_used = min(k, len(y_train))
    classifiers = {
        "knn": KNeighborsClassifier(n_neighbors=k_used, metric="cosine"),
        "logreg": LogisticRegression(max_iter=1000, random_state=seed),
        "linear_svm": LinearSVC(random_state=seed, max_iter=10000),
    }
    report: dict[str, Any] = {}
    for name, classifier in classifiers.items():
        y_pred = classifier.fit(x_train, y_train).predict(x_test)
        report[name] = {
            "accuracy": float(accuracy_score(y_test, y_pred)),
            "macro_f1": macro_f1(y_test, y_pred),
        }
    report["knn_k"] = k_used
    return report
