"""Evaluation metrics for generator attribution: closed-set, detection, open-set, embeddings.

Pure functions: numpy arrays in, plain Python floats / lists / numpy arrays out. Labels stay
generator ids ``0..K-1`` throughout; nothing here binarises attribution labels.

- :mod:`.closed_set`  per-class accuracy, macro-F1, confusion matrix; clips -> videos
- :mod:`.detection`   real vs fake at a validation threshold
- :mod:`.open_set`    known vs unseen generators, OSCR
- :mod:`.embedding`   kNN, logistic regression and linear SVM on embeddings
- :mod:`.intervals`   bootstrap intervals: an accuracy drop (paired), an accuracy over groups
- :mod:`.inputs`      the argument checks they share
"""

from attribnet.metrics.closed_set import aggregate_by_video, closed_set_report, softmax
from attribnet.metrics.detection import detection_metrics
from attribnet.metrics.embedding import embedding_protocols
from attribnet.metrics.intervals import grouped_accuracy, paired_accuracy_drop
from attribnet.metrics.open_set import open_set_metrics, oscr

__all__ = [
    "aggregate_by_video",
    "closed_set_report",
    "detection_metrics",
    "embedding_protocols",
    "open_set_metrics",
    "oscr",
    "grouped_accuracy",
    "paired_accuracy_drop",
    "softmax",
]
