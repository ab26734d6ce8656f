"""The report's plain words: how far to trust a verdict, and one sentence on each term and
score the page shows (:func:`glossary`, placed under the verdict table by
:mod:`attribnet.query.html`)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from attribnet.openset.policy import DEFAULT_KEEP
from attribnet.openset.scores import SCORE_MEANINGS
from attribnet.query.attribute import UNKNOWN

if TYPE_CHECKING:
    from attribnet.index import GeneratorIndex
    from attribnet.query.attributor import Attribution

_UNKNOWN = f"<i>{UNKNOWN}</i>"


def glossary(results: Sequence[Attribution], index: GeneratorIndex) -> str:
    """How far to trust the verdicts, in plain words, and one sentence on each term of the
    verdict table and the video sections, the index's open-set score among them (empty
    without an attributed video)."""
    ok = [r for r in results if r.ok]
    if not ok:
        return ""
    terms = {**_verdict_terms(ok, index), **_evidence_terms()}
    entries = "".join(f"<dt>{escape(t)}</dt><dd>{d}</dd>" for t, d in terms.items())
    return f'{_trust(index)}\n<dl class="glossary">{entries}</dl>'


def _trust(index: GeneratorIndex) -> str:
    """The plain-words paragraph on how far a verdict of ``index`` can be trusted."""
    policy = index.open_set
    names = escape(", ".join(index.class_names))
    lines = [
        "<b>How far to trust the verdict.</b> It is only as good as the generators in the "
        f"index: the model knows only these {len(index.class_names)}: {names}. A video made "
        "by any other generator is named after the nearest of them whenever its open-set "
        f"score is at or above the threshold; only below it is it called {_UNKNOWN}."
    ]
    if policy.threshold is not None:
        lines.append(
            f"The threshold lets about {1 - DEFAULT_KEEP:.0%} of the known generators' own "
            f"{_split_name(policy.split)} videos fall below it, so a video of a known "
            f"generator is sometimes called {_UNKNOWN} too."
        )
    if policy.selection is not None and policy.score in policy.selection.mean_auroc:
        auroc = policy.selection.mean_auroc[policy.score]
        lines.append(
            "When the index was built, each known generator in turn stood in for an unseen "
            f"one, and this score told its videos from the others' with a mean AUROC of "
            f"{auroc:.2f} (0.50 is a coin toss, 1.00 never wrong), on the very videos the "
            "score was chosen on, so if anything too kindly."
        )
    lines.append(
        "Confidence and probability say how the votes and the classifier lean, not how "
        "likely the verdict is to be right."
    )
    return f'<p class="trust">{" ".join(lines)}</p>'


def _split_name(split: str) -> str:
    return {"val": "validation", "train": "training"}.get(split, split)


def _verdict_terms(ok: Sequence[Attribution], index: GeneratorIndex) -> dict[str, str]:
    """The verdict table's terms, the index's score and threshold among them (HTML)."""
    policy = index.open_set
    k = max(len(r.neighbors) for r in ok)
    score = policy.score
    meaning = SCORE_MEANINGS[score]
    if score == "knn_cosine":
        meaning += f" Here k = {policy.k_for(index)}."
    if policy.threshold is None:
        threshold = f"this index has none: no video is called {_UNKNOWN}."
    else:
        threshold = (
            f"the open-set score below which the verdict is {_UNKNOWN}, set when the index was "
            f"built so that {DEFAULT_KEEP:.0%} of the known generators' "
            f"{_split_name(policy.split)} videos score at or above it."
        )
    terms = {
        "verdict": f"the generator the k-NN vote names, or {_UNKNOWN} when the open-set score "
        "is below the threshold.",
        "k-NN generator (confidence)": f"the {k} indexed training videos nearest to this one "
        "(k nearest neighbours, by cosine similarity) vote for their generators, each vote "
        "weighted by its similarity; the confidence is the winner's share of the votes "
        f"(1.00: all {k} agree).",
        "classifier (probability)": "the model's classification head on its own: its most "
        "likely generator and that generator's softmax probability, averaged over the clips; "
        "it may disagree with the k-NN vote, which decides the verdict.",
        f"open-set score ({score})": "how much the video looks like the work of a known "
        f"generator, higher meaning more; this index uses {escape(score)}, {meaning}",
        "threshold": threshold,
        "nearest prototype (cos)": "the generator whose prototype, the mean embedding of its "
        "indexed videos, is the most similar to this video's embedding, with that cosine "
        "similarity.",
    }
    if not any(r.classifier for r in ok):
        del terms["classifier (probability)"]
    return terms


def _evidence_terms() -> dict[str, str]:
    """The terms of the video sections (HTML)."""
    return {
        "cosine similarity (cos)": "how alike two embeddings are, the model's summaries of "
        "a video's traces as unit vectors: 1 means the same direction, 0 unrelated.",
        "weight": "a frame's share of the decision: the model's temporal attention to it, "
        "divided among the clips so that a video's weights sum to 1.",
        "spatial-attention map": "where in the face crop the model looked hardest (brighter "
        "means more), each map scaled to its own range: compare places within one map, not "
        "maps with each other.",
        "quality": "the compression of an indexed video as its training manifest labels it "
        "(e.g. crf23: H.264 at constant rate factor 23; a higher crf is more compressed).",
    }
