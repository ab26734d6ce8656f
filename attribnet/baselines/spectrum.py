"""A non-deep attribution baseline: logistic regression on the DFT spectrum of face crops.

Why: generators leave architecture traces in the frequency domain. Upsampling layers
(nearest, bilinear, transposed convolution, pixel shuffle) leave periodic peaks and a
characteristic high-frequency fall-off in the amplitude spectrum of every frame they make.
A linear classifier on the radially averaged log-amplitude spectrum sees these traces and
little else, so every accuracy table reports it next to the deep models: a deep recipe
that loses to it learnt less than a frequency histogram (how the deep recipes compare with
it: README.md, "Results", and docs/results.md).

Feature of one video (:func:`spectrum_features`), for ``bins`` radial bins:

1. per frame, greyscale ``g = 0.299 R + 0.587 G + 0.114 B`` (float);
2. standardise: ``z = (g - mean(g)) / std(g)`` (a constant frame stays 0), so that a
   frame's brightness (offset) and contrast (gain) do not change the feature. Exactly so
   for an offset without clipping; a gain changes the bins where the frame's spectrum is
   down at the uint8 quantisation noise (the noise does not scale with the content), e.g.
   the high frequencies of smooth (bilinearly upsampled) content;
3. window: ``x = z * hann(H)[:, None] * hann(W)[None, :]``, against the leakage of the
   crop's edges, whose jump would otherwise add a cross of energy at every frequency;
4. ``F = fft2(x, norm="ortho")``; the orthonormal scale makes the level of the spectrum
   independent of the crop size (white noise of unit variance gives the same ``|F|``
   on a 48x48 and a 224x224 crop);
5. log amplitude ``A = log(|F| + 1e-3)``. Not ``log(1 + |F|)``: on standardised, orthonormal
   spectra the high frequencies, where the upsampling traces are, have ``|F| << 1`` and
   ``log(1 + |F|)`` would be linear there. ``1e-3`` lies below uint8 quantisation noise;
6. mean of ``A`` over the frames (the mean of per-frame profiles, as radial averaging is
   linear);
7. radial average: frequency ``(fy, fx)`` (cycles per pixel, ``np.fft.fftfreq``) has
   radius ``r = 2 * sqrt(fy^2 + fx^2)``, 1 at the Nyquist frequency of either axis, so crops
   of different sizes give comparable bins. Bin ``b`` holds ``b / bins <= r < (b + 1) /
   bins`` (``r = 1`` in the last bin); the corners ``r > 1`` are left out so that every bin
   covers every direction. The feature is the mean of ``A`` per bin: (bins,) float32.

No ``fftshift`` is needed: the radius is computed on the unshifted ``fftfreq`` grid.

The classifier (:class:`SpectrumBaseline`) is scikit-learn's ``StandardScaler`` followed by
multinomial ``LogisticRegression``. Features are computed once per cached video
(:func:`video_features`); fits are then cheap, so a cross-quality table fits once per
training quality and scores every test quality (:func:`score_baseline`)::

    feats = video_features(cache, entries)                     # (N, bins), once
    labels = entry_labels(entries, class_names)                 # (N,) generator ids
    train = [e.row.split == "train" and e.row.quality == q for e in entries]
    model = SpectrumBaseline(len(class_names)).fit(feats[train], labels[train])
    for q2 in qualities:
        test = [e.row.split == "test" and e.row.quality == q2 for e in entries]
        cell = score_baseline(model, feats[test], labels[test], class_names)
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from attribnet.data.cache import CacheEntry, FaceCache
from attribnet.data.sampling import sample_indices
from attribnet.errors import DataError
from attribnet.metrics import closed_set_report

log = logging.getLogger(__name__)

DEFAULT_BINS = 32
"""Radial bins; a crop needs ``min(H, W) >= 2 * bins`` (64 pixels for the default)."""
LOG_EPS = 1e-3
"""Added to ``|F|`` before the log; below the quantisation noise of a standardised frame."""
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""ITU-R BT.601 luma weights of R, G, B."""


@functools.lru_cache(maxsize=16)
def _radial_bins(height: int, width: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices of the frequencies with r <= 1, their bin ids) for an HxW spectrum.

    With ``min(H, W) >= 2 * bins`` every bin holds a frequency on the shorter axis."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    radius = 2.0 * np.sqrt(fy**2 + fx**2)
    inside = np.flatnonzero(radius.ravel() <= 1.0)
    bin_ids = np.minimum((radius.ravel()[inside] * bins).astype(np.int64), bins - 1)
    inside.flags.writeable = False
    bin_ids.flags.writeable = False
    return inside, bin_ids


@functools.lru_cache(maxsize=16)
def _window(height: int, width: int) -> np.ndarray:
    """(H, W) float32 2-D Hann window."""
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    window.flags.writeable = False
    return window


def _check_frames(frames_thwc: np.ndarray) -> None:
    if not isinstance(frames_thwc, np.ndarray) or frames_thwc.dtype != np.uint8:
        kind = getattr(frames_thwc, "dtype", type(frames_thwc).__name__)
        raise ValueError(f"expected uint8 RGB frames (T, H, W, 3), got {kind}")
    if frames_thwc.ndim != 4 or frames_thwc.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB frames (T, H, W, 3), got shape {frames_thwc.shape}")
    if frames_thwc.shape[0] == 0:
        raise DataError("no frames: cannot compute a spectrum of an empty clip")
    if min(frames_thwc.shape[1:3]) < 2:
        raise DataError(f"frames of {frames_thwc.shape[1]}x{frames_thwc.shape[2]} are too small")


def log_amplitude(frames_thwc: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB -> (H, W) float32: steps 1-6 of the module docstring, the
    log-amplitude spectrum averaged over frames, unshifted (DC at [0, 0])."""
    _check_frames(frames_thwc)
    grey_thw = frames_thwc.astype(np.float32) @ GREY_WEIGHTS
    grey_thw -= grey_thw.mean(axis=(1, 2), keepdims=True)
    std_t11 = grey_thw.std(axis=(1, 2), keepdims=True)
    grey_thw /= np.maximum(std_t11, 1e-6)
    spectrum_thw = np.fft.fft2(grey_thw * _window(*grey_thw.shape[1:]), norm="ortho")
    return np.log(np.abs(spectrum_thw) + LOG_EPS).mean(axis=0).astype(np.float32)


def spectrum_features(frames_thwc: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB face frames of one video -> (bins,) float32 radial profile
    of the log-amplitude spectrum (definition in the module docstring).

    The length depends on ``bins`` only, not on the crop size. Raises ValueError for an
    array that is not uint8 (T, H, W, 3); DataError for zero frames or a crop smaller than
    ``2 * bins`` pixels.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    _check_frames(frames_thwc)
    height, width = frames_thwc.shape[1:3]
    if min(height, width) < 2 * bins:
        raise DataError(
            f"a face crop of {height}x{width} is too small for {bins} radial bins "
            f"(needs {2 * bins}x{2 * bins}); use bins <= {min(height, width) // 2}"
        )
    amplitude_hw = log_amplitude(frames_thwc)
    inside, bin_ids = _radial_bins(*amplitude_hw.shape, bins)
    sums = np.bincount(bin_ids, weights=amplitude_hw.ravel()[inside], minlength=bins)
    return (sums / np.bincount(bin_ids, minlength=bins)).astype(np.float32)


def video_features(
    cache: FaceCache,
    entries: Sequence[CacheEntry],
    max_frames: int = 32,
    bins: int = DEFAULT_BINS,
    progress: bool = True,
) -> np.ndarray:
    """(N, bins) float32: :func:`spectrum_features` of each cached video, in ``entries``
    order, from ``min(max_frames, frames)`` evenly spaced frames (periodic sampling).

    Raises DataError naming the video when its clip is unreadable or empty.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    features = np.empty((len(entries), bins), dtype=np.float32)
    show = progress and sys.stderr.isatty()
    for i, entry in enumerate(tqdm(entries, desc="spectrum", unit="video", disable=not show)):
        try:
            clip_nhwc = cache.load(entry)
            num_frames = int(clip_nhwc.shape[0])
            if num_frames == 0:
                raise DataError("the cached clip has no frames")
            picked = sample_indices(num_frames, min(max_frames, num_frames), "periodic")
            features[i] = spectrum_features(np.asarray(clip_nhwc[picked]), bins)
        except DataError as exc:
            raise DataError(f"{entry.row.path}: {exc}") from exc
    log.info("spectrum features of %d video(s) from cache %s", len(entries), cache.root)
    return features


def entry_labels(entries: Sequence[CacheEntry], class_names: Sequence[str]) -> np.ndarray:
    """(N,) int64 generator ids of the entries' manifest labels (``class_names`` order).

    Raises DataError when a label is not in ``class_names``.
    """
    ids = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({e.row.label for e in entries} - set(ids))
    if unknown:
        raise DataError(f"label(s) {unknown} are not among the classes {list(class_names)}")
    return np.array([ids[e.row.label] for e in entries], dtype=np.int64)


class SpectrumBaseline:
    """StandardScaler + multinomial LogisticRegression on spectrum features.

    Labels are generator ids ``0..num_classes-1``; :meth:`predict_proba` always has
    ``num_classes`` columns, 0 for a class absent from the training labels.
    """

    def __init__(self, num_classes: int, *, c: float = 1.0, max_iter: int = 2000):
        """``c``: LogisticRegression's inverse L2 strength ``C``."""
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.pipeline = Pipeline(
            [
                ("scale", StandardScaler()),
                ("logreg", LogisticRegression(C=c, max_iter=max_iter)),
            ]
        )

    def fit(self, features_nf: np.ndarray, labels_n: np.ndarray) -> SpectrumBaseline:
        """Fit on (N, F) features and (N,) generator ids; returns self.

        Raises DataError when fewer than two classes are present (nothing to separate).
        """
        labels_n = np.asarray(labels_n)
        if features_nf.ndim != 2 or labels_n.shape != (features_nf.shape[0],):
            raise ValueError(f"expected (N, F) and (N,), got {features_nf.shape, labels_n.shape}")
        if labels_n.size and (labels_n.min() < 0 or labels_n.max() >= self.num_classes):
            raise ValueError(f"labels must be ids in 0..{self.num_classes - 1}")
        present = np.unique(labels_n)
        if present.size < 2:
            raise DataError(
                f"the spectrum baseline needs training videos of 2+ classes, got {present}"
            )
        self.pipeline.fit(features_nf, labels_n)
        return self

    def predict_proba(self, features_nf: np.ndarray) -> np.ndarray:
        """(N, F) -> (N, num_classes) class probabilities; rows sum to 1."""
        probs_nk = np.zeros((features_nf.shape[0], self.num_classes), dtype=np.float64)
        probs_nk[:, self.pipeline.classes_] = self.pipeline.predict_proba(features_nf)
        return probs_nk

    def predict(self, features_nf: np.ndarray) -> np.ndarray:
        """(N, F) -> (N,) int64 predicted generator ids."""
        return self.predict_proba(features_nf).argmax(axis=1).astype(np.int64)


def score_baseline(
    model: SpectrumBaseline,
    features_nf: np.ndarray,
    labels_n: np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Video-level scores of a fitted baseline on (N, F) features with (N,) true ids.

    Returns :func:`attribnet.metrics.closed_set_report` (``accuracy``,
    ``per_class_accuracy``, ``support``, ``macro_f1``, ``confusion_matrix``,
    ``class_names``) plus ``probabilities`` (N, K) float64 and ``predictions`` (N,) int64.
    """
    probs_nk = model.predict_proba(features_nf)
    predictions = probs_nk.argmax(axis=1).astype(np.int64)
    report = closed_set_report(np.asarray(labels_n), predictions, class_names)
    return {**report, "probabilities": probs_nk, "predictions": predictions}


def fit_and_score(
    train_features_nf: np.ndarray,
    train_labels_n: np.ndarray,
    test_features_nf: np.ndarray,
    test_labels_n: np.ndarray,
    class_names: Sequence[str],
    *,
    c: float = 1.0,
) -> dict[str, Any]:
    """Fit a :class:`SpectrumBaseline` on the training videos and score the test videos:
    :func:`score_baseline`'s dict plus ``train_accuracy``."""
    model = SpectrumBaseline(len(class_names), c=c).fit(train_features_nf, train_labels_n)
    train_accuracy = float((model.predict(train_features_nf) == train_labels_n).mean())
    scores = score_baseline(model, test_features_nf, test_labels_n, class_names)
    log.info(
        "spectrum baseline: train accuracy %.3f (%d videos), test accuracy %.3f (%d videos)",
        train_accuracy, len(train_labels_n), scores["accuracy"], len(test_labels_n),
    )  # fmt: skip
    return {**scores, "train_accuracy": train_accuracy}
