"""Non-deep baselines that every accuracy table reports next to the deep models."""

from attribnet.baselines.spectrum import (
    SpectrumBaseline,
    entry_labels,
    fit_and_score,
    log_amplitude,
    score_baseline,
    spectrum_features,
    video_features,
)

__all__ = [
    "SpectrumBaseline",
    "entry_labels",
    "fit_and_score",
    "log_amplitude",
    "score_baseline",
    "spectrum_features",
    "video_features",
]
