"""``python -m attribnet.query --index indexes/<name> <videos or folders ...>``

Which known generator made each video, how sure, or is it from an unseen generator?

Every video (a file, or a folder of frame images; folders are searched recursively) is
cropped to faces and embedded exactly as for training, then compared with the indexed
videos of known generators. Reported per video: the nearest indexed videos, the k-NN vote,
the classifier head's generator, the open-set score and the verdict: the k-NN generator,
or ``unknown generator`` when the score is below the index's threshold. Videos that cannot
be read, have no face or are too short are reported with the reason; they do not stop the
run. ``--cluster`` groups the query videos into candidate generators; ``--plot`` draws a
2-D PCA of the indexed and the query embeddings.

One concept per module, in the order data flows through them:

- :mod:`.videos`     the videos and frame folders among the inputs
- :mod:`.attributor` :class:`Attributor`, the Python API: faces, model, index, evidence
- :mod:`.attribute`  embeddings -> one record per video (neighbours, vote, verdict)
- :mod:`.cluster`    the query videos grouped into candidate generators
- :mod:`.render`     plain-text tables and the PCA plot
- :mod:`.cli`        argument parsing, :func:`run` (the ``--json`` report) and :func:`main`

Exit codes: 0 at least one video was attributed, 1 none could be, 2 a usage error.
"""

from attribnet.query.attribute import UNKNOWN, query
from attribnet.query.attributor import Attribution, Attributor, FrameEvidence
from attribnet.query.cluster import cluster_embeddings, default_cluster_threshold, describe_clusters
from attribnet.query.render import MAX_PLOT_POINTS, format_clusters, format_table, plot_embeddings
from attribnet.query.videos import find_videos

__all__ = [
    "MAX_PLOT_POINTS",
    "UNKNOWN",
    "Attribution",
    "Attributor",
    "FrameEvidence",
    "cluster_embeddings",
    "default_cluster_threshold",
    "describe_clusters",
    "find_videos",
    "format_clusters",
    "format_table",
    "plot_embeddings",
    "query",
]
