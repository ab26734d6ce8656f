"""An encoder's per-frame feature extractor initialised from an attribnet training
checkpoint (``model.weights`` naming e.g. a pretext run's ``best.pt``).

A weights file is a training checkpoint when it is a mapping with a ``model`` state and
the ``args`` recipe (:mod:`attribnet.files.checkpoints`); anything else is a trunk's own
state dict (:mod:`attribnet.models.backbones`). From a checkpoint the encoder takes the
per-frame part, what :data:`TAKEN` prefixes: the input filter, the trunk (with the
attention in its blocks and its BatchNorm statistics) and the SAM on its last map. The
fusion (tied to a clip length) and the heads (classifier, embedding; ArcFace centres live
in the loss) start afresh, since they answer another question.
"""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor, nn

from attribnet.errors import CheckpointError
from attribnet.files.checkpoints import load_tensors_file

TAKEN = ("input_filter.", "trunk.", "last_sam.")
"""The encoder's submodules (state-dict prefixes) a training checkpoint initialises."""


def read_training_checkpoint(weights: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint at ``weights`` when it is an attribnet training checkpoint, else None
    (``imagenet``, or a trunk's state dict); CheckpointError when unreadable."""
    if str(weights) == "imagenet":
        return None
    state = load_tensors_file(weights, "weights file")
    is_run = isinstance(state, dict) and isinstance(state.get("model"), dict) and "args" in state
    return state if is_run else None


def load_checkpoint_trunk(
    encoder: nn.Module, checkpoint: dict[str, Any], weights: str | os.PathLike[str]
) -> None:
    """Copy the checkpoint's per-frame feature extractor (:data:`TAKEN`) into ``encoder``.

    The encoder's and the checkpoint's keys under :data:`TAKEN` must be the same, with the
    same shapes; otherwise (another backbone, input filter or attention) a one-line
    CheckpointError names both backbones.
    """
    theirs = _taken(checkpoint["model"], "encoder.")
    ours = _taken(encoder.state_dict(), "")
    args = checkpoint.get("args")
    model = args.get("model") if isinstance(args, dict) else None
    their_backbone = model.get("backbone", "?") if isinstance(model, dict) else "?"
    backbone = getattr(encoder, "backbone", "?")
    missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    shapes = sorted(k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"weights {weights} (a training checkpoint of backbone {their_backbone}) do not "
            f"fit this {backbone} encoder: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(shapes)} of another "
            f"shape (e.g. {shapes[:2]}); use a checkpoint of the same model section"
        )
    encoder.load_state_dict(theirs, strict=False)


def _taken(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``state`` under ``prefix`` + one of :data:`TAKEN`, ``prefix`` cut."""
    cut = len(prefix)
    return {
        k[cut:]: v for k, v in state.items() if k.startswith(prefix) and k[cut:].startswith(TAKEN)
    }
