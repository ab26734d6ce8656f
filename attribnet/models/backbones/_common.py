"""What every backbone module shares: reading a local weights file into a trunk.

No backbone outside torchvision's ResNets ever downloads weights: ``weights`` is None
(random init) or the path of a local state dict, whose classifier keys are dropped.
"""

from __future__ import annotations

from torch import Tensor, nn

from attribnet.errors import CheckpointError

# where a trunk's weights file may hold a classifier (timm: fc / classifier / head), ignored
HEAD_KEYS = ("fc.", "classifier.", "head.")


def read_weights_file(weights: str) -> dict[str, Tensor]:
    """A state dict from a local file (a bare one or ``{"state_dict": ...}``)."""
    from attribnet.files.checkpoints import load_tensors_file

    state = load_tensors_file(weights, "weights file")
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_trunk_state(
    trunk: nn.Module, state: dict[str, Tensor], name: str, weights: str, head: tuple[str, ...]
) -> None:
    """Load ``state`` into ``trunk``, ignoring the classifier keys (prefixes ``head``) on
    both sides; any other missing or unexpected key is a CheckpointError naming ``name``."""
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    try:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise CheckpointError(f"weights {weights} do not fit {name}: {detail}") from exc
    missing = [k for k in missing if not k.startswith(head)]
    if missing or unexpected:
        raise CheckpointError(
            f"weights {weights} do not fit {name}: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )


def load_local_weights(trunk: nn.Module, name: str, weights: str) -> None:
    """Load a local weights file into ``trunk`` (its HEAD_KEYS ignored); ``imagenet`` is
    refused (no downloads)."""
    if weights == "imagenet":
        raise CheckpointError(
            f"{name} loads no weights by name (no downloads): set model.weights to the path "
            "of a local state dict"
        )
    load_trunk_state(trunk, read_weights_file(weights), name, weights, HEAD_KEYS)
