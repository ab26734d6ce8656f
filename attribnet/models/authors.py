"""The DMA-STA authors' checkpoints as attribnet checkpoints (the command:
``attribnet-convert dmasta-authors``, :mod:`attribnet.cli.convert`).

A state dict of the DMA-STA authors' code (Jia, Li, Lyu, ICIP 2022),
read with ``weights_only=True``; bare, or under ``"state_dict"`` or ``"model"``, with or
without DataParallel's ``module.`` prefix. Their modules map one to one onto attribnet's
DMA-STA model (:data:`KEY_MAP`): ``ta.fc.0``/``ta.fc.2`` (TAM) -> ``encoder.fusion.fc1``/
``fc2``, ``layerN.M.sa.conv1`` (SAM) -> ``encoder.trunk.layerN.M.spatial_attention.conv``,
``fc`` -> ``classifier.fc``, every other key -> ``encoder.trunk.<key>``. A key that maps
to nothing, a weight the model lacks or one of another shape is a CheckpointError naming
the first few keys, and nothing is written.

The checkpoint written (:func:`attribnet.models.restore.load_model` reads it; index, query and
evaluate use it) holds the weights, the class names in ``--classes`` order (the rows of
the authors' ``fc``) and a recipe of the DMA-STA model (ResNet-50, SAM in every
bottleneck, TAM over T frames, T read from the TAM weights; CE only) with the authors'
preprocessing: faces resized to 256 x 256 and centre-cropped to 224 (``data.resize``),
normalised with their mean (0.643, 0.466, 0.387) and std (0.259, 0.220, 0.203). Its data
section names DFDM as ``recipes/dfdm_dmasta.yaml`` does (``--set`` changes any field).
It holds no optimizer state: it is a ``best.pt`` to use, not a ``last.pt`` to resume.

Training differs (not reproduced here): the authors' forward runs the trunk once per frame
index, so each BatchNorm normalises over the B images of one frame index and updates its
running statistics T times per step, while attribnet runs all B*T frames as one batch, one
normalisation and one update per step. In eval mode both give the same logits (running
statistics only), but retraining here does not reproduce the authors' batch statistics.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from attribnet.config import (
    Recipe,
    apply_overrides,
    recipe_from_dict,
    to_dict,
)
from attribnet.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

AUTHORS_MEAN = (0.643, 0.466, 0.387)
AUTHORS_STD = (0.259, 0.220, 0.203)
AUTHORS_RESIZE, AUTHORS_IMAGE_SIZE, AUTHORS_FRAMES = 256, 224, 10
KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"ta\.fc\.0\.", "encoder.fusion.fc1."),
    (r"ta\.fc\.2\.", "encoder.fusion.fc2."),
    (r"(layer\d+\.\d+)\.sa\.conv1\.", r"encoder.trunk.\1.spatial_attention.conv."),
    (r"fc\.", "classifier.fc."),
    (r"", "encoder.trunk."),
)
"""(authors' key prefix as a regex, attribnet's), first match wins."""
_SHOWN = 3


def authors_key(key: str) -> str:
    """The attribnet name of an authors' state-dict key (:data:`KEY_MAP`)."""
    for pattern, target in KEY_MAP:
        mapped, found = re.subn(f"^{pattern}", target, key, count=1)
        if found:
            return mapped
    raise AssertionError("the last rule of KEY_MAP maps every key")


def _few(items: Sequence[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file: bare or under ``state_dict``/``model``, any
    ``module.`` prefix removed. CheckpointError for anything else."""
    from attribnet.files.checkpoints import load_tensors_file

    path = Path(path)
    raw = load_tensors_file(path, "state dict")
    if isinstance(raw, dict) and "args" in raw and "class_names" in raw:
        raise CheckpointError(f"{path} is an attribnet checkpoint already; use it as it is")
    for wrapper in ("state_dict", "model"):
        if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
            raw = raw[wrapper]
            break
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{path} holds no state dict (a {type(raw).__name__})")
    odd = [f"{k} ({type(v).__name__})" for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise CheckpointError(f"{path} is not a state dict; not tensors: {_few(odd)}")
    return {str(k).removeprefix("module."): v for k, v in raw.items()}


def dmasta_recipe(
    class_names: Sequence[str],
    *,
    name: str = "dmasta_authors",
    num_frames: int = AUTHORS_FRAMES,
    overrides: Sequence[str] = (),
) -> Recipe:
    """The recipe of the authors' DMA-STA model and preprocessing; ``overrides`` are
    ``--set`` strings applied last."""
    raw = to_dict(Recipe(name=name))
    raw["data"].update(
        manifest="data/dfdm/manifest.csv", cache="data/dfdm/cache", detector="haar",
        classes=list(class_names), num_frames=num_frames, sampling="periodic",
        image_size=AUTHORS_IMAGE_SIZE, resize=AUTHORS_RESIZE,
        mean=list(AUTHORS_MEAN), std=list(AUTHORS_STD),
    )  # fmt: skip
    raw["model"].update(
        backbone="resnet50", sam="every_block", channel_attention=False, fusion="tam",
        num_frames=num_frames, embedding_dim=0, weights=None, input_filter="none",
        spectral_dim=0,
    )  # fmt: skip
    raw["loss"].update(ce_weight=1.0, arcface_weight=0.0, triplet_weight=0.0)
    source = "the converted recipe" + (" (with --set overrides)" if overrides else "")
    return recipe_from_dict(apply_overrides(raw, list(overrides)), source=source)


def convert_dmasta_authors(
    state: dict[str, torch.Tensor], recipe: Recipe, class_names: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The authors' weights as the state dict of attribnet's model for ``recipe``.

    Raises CheckpointError when ``class_names`` do not match the classifier's rows, or a
    key maps to nothing, maps twice, is missing or has another shape. A missing BatchNorm
    ``num_batches_tracked`` (unused in eval mode) keeps the model's value.
    """
    from attribnet.models import build_model

    rows = state.get("fc.weight")
    if rows is not None and rows.shape[0] != len(class_names):
        raise CheckpointError(
            f"--classes names {len(class_names)} classes, but the checkpoint's classifier "
            f"(fc.weight) has {rows.shape[0]} outputs"
        )
    model = build_model(recipe.model, num_classes=len(class_names))
    expected = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unmapped, twice = [], []
    for key, value in state.items():
        target = authors_key(key)
        if target not in expected:
            unmapped.append(key)
        elif target in mapped:
            twice.append(f"{key} -> {target}")
        else:
            mapped[target] = value
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} key(s) fit no DMA-STA weight: {_few(unmapped)}")
    if twice:
        raise CheckpointError(f"keys that map onto one weight twice: {_few(twice)}")
    missing = [k for k in expected if k not in mapped]
    if any(not k.endswith("num_batches_tracked") for k in missing):
        raise CheckpointError(
            f"the checkpoint lacks {len(missing)} weight(s) of the DMA-STA model: {_few(missing)}"
        )
    shapes = [
        f"{k} {tuple(v.shape)} (model {tuple(expected[k].shape)})"
        for k, v in mapped.items()
        if v.shape != expected[k].shape
    ]
    if shapes:
        raise CheckpointError(f"weights of another shape than the model's: {_few(shapes)}")
    model.load_state_dict({**expected, **mapped})
    return model.state_dict()


def convert_file(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    class_names: Sequence[str],
    *,
    name: str | None = None,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """Convert the authors' state dict ``source`` into the checkpoint ``out`` (written
    atomically, only once every check passed); returns ``out``."""
    from attribnet.files.checkpoints import save_checkpoint

    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    if out.name == "last.pt":
        raise ConfigError(f"{out}: a converted checkpoint cannot resume training; name it best.pt")
    state = read_state_dict(source)
    tam = state.get("ta.fc.0.weight")
    frames = int(tam.shape[1]) if tam is not None and tam.ndim == 2 else AUTHORS_FRAMES
    name = name or (out.parent.name if out.parent.name not in ("", ".") else "dmasta_authors")
    recipe = dmasta_recipe(class_names, name=name, num_frames=frames, overrides=overrides)
    classes = list(recipe.data.classes)
    weights = convert_dmasta_authors(state, recipe, classes)
    save_checkpoint(out, checkpoint_state(weights, recipe, classes, source))
    log.info("wrote %s: DMA-STA (T=%d) for classes %s", out, frames, classes)
    return out


def checkpoint_state(
    weights: dict[str, torch.Tensor],
    recipe: Recipe,
    class_names: list[str],
    source: str | os.PathLike[str],
) -> dict[str, Any]:
    """A converted checkpoint: what :func:`attribnet.training.state.checkpoint_state` writes
    but the optimizer, scheduler and RNG (no training happened here), plus ``converted``
    (the source format, file and sha256)."""
    from attribnet.files.checkpoints import file_sha256

    return {
        "model": weights,
        "loss": {},
        "epoch": -1,
        "args": to_dict(recipe),
        "class_names": class_names,
        "best_metric": None,
        "converted": {
            "format": "dmasta-authors",
            "file": str(source),
            "sha256": file_sha256(source),
        },
    }
