"""The non-deep baseline row of the evaluation tables: logistic regression on the face
crops' log-amplitude DFT spectrum (:mod:`attribnet.baselines.spectrum`), fit on the
training videos the model was trained on and scored on the same test videos as the model.
A deep recipe that loses to it shows it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from attribnet.baselines.spectrum import (
    DEFAULT_BINS,
    SpectrumBaseline,
    entry_labels,
    score_baseline,
    video_features,
)
from attribnet.data.cache import CacheEntry
from attribnet.errors import DataError
from attribnet.evaluate.source import EvalSource, select

log = logging.getLogger(__name__)

NAME = "DFT-spectrum logistic regression"


class BaselineScorer:
    """Spectrum features of a source's videos, computed once each, and baselines fit on
    one training selection and scored on several test selections."""

    def __init__(self, source: EvalSource, class_names: Sequence[str], image_size: int):
        self.source = source
        self.class_names = list(class_names)
        self.bins = min(DEFAULT_BINS, image_size // 2)
        self._features: dict[str, np.ndarray] = {}

    def features(self, entries: Sequence[CacheEntry]) -> np.ndarray:
        """(N, bins) spectrum features of ``entries`` (each video read once per scorer)."""
        todo = [e for e in entries if e.row.path not in self._features]
        if todo:
            for e, f in zip(todo, video_features(self.source.cache, todo, bins=self.bins,
                                                 progress=False), strict=True):  # fmt: skip
                self._features[e.row.path] = f
        return np.stack([self._features[e.row.path] for e in entries])

    def training_videos(self, train_qualities: Sequence[str] | None) -> list[CacheEntry]:
        """The TRAIN split's videos of the known classes at ``train_qualities``."""
        return select(self.source, "train", train_qualities, self.class_names)

    def table(
        self,
        train_qualities: Sequence[str] | None,
        tests: dict[str, Sequence[str] | None],
        split: str = "test",
    ) -> dict[str, Any]:
        """Fit on the TRAIN split (``train_qualities``; None = every quality) and score
        ``split`` at each of ``tests`` (name -> qualities, None = every quality):
        ``{"name", "train_videos", "train_accuracy", "tests": {name: closed_set_report}}``
        at video level; each report also lists its ``videos`` (``label``, ``group`` (the
        source), ``instance``, ``correct``), for intervals over sources or trainings."""
        train = self.training_videos(train_qualities)
        if not train:
            raise DataError(f"no training videos for the {NAME} baseline")
        labels = entry_labels(train, self.class_names)
        model = SpectrumBaseline(len(self.class_names)).fit(self.features(train), labels)
        result: dict[str, Any] = {
            "name": NAME,
            "train_videos": len(train),
            "train_accuracy": float((model.predict(self.features(train)) == labels).mean()),
            "tests": {},
        }
        for name, qualities in tests.items():
            test = select(self.source, split, qualities, self.class_names)
            truth = entry_labels(test, self.class_names)
            scores = score_baseline(model, self.features(test), truth, self.class_names)
            scores.pop("probabilities")
            predicted = np.asarray(scores.pop("predictions"))
            scores["videos"] = {
                "label": [e.row.label for e in test],
                "group": [e.row.source_id or e.row.path for e in test],
                "instance": [e.row.instance for e in test],
                "correct": (predicted == truth).tolist(),
            }
            result["tests"][name] = scores
        log.info(
            "%s: %s", NAME,
            ", ".join(f"{q} {r['accuracy']:.3f}" for q, r in result["tests"].items()),
        )  # fmt: skip
        return result
