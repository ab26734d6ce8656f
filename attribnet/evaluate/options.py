"""How to evaluate: :class:`EvalOptions` (the command line of ``evaluate run``; the table
commands narrow it per cell) and its defaults."""

from __future__ import annotations

from dataclasses import dataclass

from attribnet.config import Recipe
from attribnet.data.eval_clips import DEFAULT_CLIPS_PER_VIDEO
from attribnet.metrics.embedding import DEFAULT_NEIGHBOURS


@dataclass
class EvalOptions:
    """How to evaluate one checkpoint (the command line of ``evaluate run``).

    ``qualities`` None = every quality of the split. ``seed``/``batch_size``/
    ``num_workers`` None = the recipe's. ``closed_set_only`` skips embeddings, detection,
    open set and plots (what the cross-quality and ablation tables need).
    """

    split: str = "test"
    qualities: list[str] | None = None
    clips_per_video: int = DEFAULT_CLIPS_PER_VIDEO
    manifest: str | None = None
    unknown_manifest: str | None = None
    cache: str | None = None
    index: str | None = None
    k: int = DEFAULT_NEIGHBOURS
    batch_size: int | None = None
    num_workers: int | None = None
    seed: int | None = None
    closed_set_only: bool = False
    tsne: bool = True


def eval_seed(recipe: Recipe, opts: EvalOptions) -> int:
    """The seed of clip sampling, classifiers and t-SNE: ``opts.seed``, else the recipe's."""
    return recipe.train.seed if opts.seed is None else opts.seed
