"""Recipe checks: allowed choices, signs and ranges, and the rules between fields; each
error names the key and the recipe it came from."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from attribnet.config.choices import (
    BACKBONE_CARDS,
    FUSIONS,
    IF_EXISTS,
    INPUT_FILTERS,
    PRETEXTS,
    SAM_PLACEMENTS,
    SAMPLING_MODES,
)
from attribnet.config.sections import Recipe
from attribnet.errors import ConfigError

CHOICES: dict[str, tuple[str, ...]] = {
    "data.sampling": SAMPLING_MODES,
    "data.detector": ("none", "haar", "centre"),
    "data.pretext": PRETEXTS,
    "model.backbone": tuple(sorted(BACKBONE_CARDS)),
    "model.sam": SAM_PLACEMENTS,
    "model.fusion": FUSIONS,
    "model.input_filter": INPUT_FILTERS,
    "loss.triplet_mining": ("semihard", "hard", "all"),
    "optim.name": ("sgd", "adamw"),
    "optim.schedule": ("step", "cosine", "constant"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.select_metric": ("val_accuracy", "val_loss"),
    "train.if_exists": IF_EXISTS,
}
POSITIVE = {
    "data.num_frames", "data.image_size", "data.max_frames", "model.num_frames",
    "model.spectral_bins", "model.patches", "model.patch_grid",
    "optim.lr", "optim.step_epochs", "train.epochs", "train.batch_size", "train.val_every",
    "train.log_every_steps",
    "loss.arcface_scale", "loss.supcon_temperature", "loss.open_space_fraction",
    "loss.open_space_nets",
}  # fmt: skip
NON_NEGATIVE = {
    "data.num_workers", "data.face_margin", "model.embedding_dim", "loss.ce_weight",
    "loss.arcface_weight",
    "loss.triplet_weight", "loss.arcface_margin", "loss.triplet_margin", "optim.momentum",
    "model.spectral_dim", "model.patch_size",
    "optim.weight_decay", "optim.warmup_epochs", "train.grad_clip", "train.m_per_class",
    "train.instances_per_class",
    "train.max_steps_per_epoch", "loss.outlier_weight", "loss.open_space_weight",
    "train.checkpoint_every_steps", "data.resize", "data.cache_size",
    "loss.instance_adversary_weight", "loss.supcon_weight", "optim.lr_batch",
}  # fmt: skip
PROBABILITIES = {
    "data.augment.hflip", "data.augment.h264_p", "data.augment.jpeg_p", "loss.open_space_fraction",
}  # fmt: skip


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flatten(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out


def _check_choice(key: str, value: Any, source: str) -> None:
    if value not in CHOICES[key]:
        near = difflib.get_close_matches(str(value), CHOICES[key], n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise ConfigError(
            f"{key} in {source}: {value!r} is not one of {', '.join(CHOICES[key])}{hint}"
        )


def validate(recipe: Recipe, source: str) -> Recipe:
    """Reject impossible values, naming the key; returns the recipe with the backbone's
    preprocessing filled in where ``data.image_size``/``mean``/``std`` are None."""
    recipe = with_backbone_preprocessing(recipe, source)
    for key, value in _flatten(recipe).items():
        if key in CHOICES:
            _check_choice(key, value, source)
        if key in POSITIVE and not value > 0:
            raise ConfigError(f"{key} in {source}: must be > 0, got {value!r}")
        if key in NON_NEGATIVE and value < 0:
            raise ConfigError(f"{key} in {source}: must be >= 0, got {value!r}")
        if key in PROBABILITIES and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key} in {source}: a probability in [0, 1], got {value!r}")
    m = recipe.model
    _validate_backbone_attention(recipe, source)
    if m.fusion == "tam" and m.num_frames < 2:
        raise ConfigError(f"model.num_frames in {source}: temporal attention needs >= 2 frames")
    if m.fusion == "tam" and recipe.data.num_frames != m.num_frames:
        raise ConfigError(
            f"data.num_frames ({recipe.data.num_frames}) != model.num_frames ({m.num_frames}) "
            f"in {source}: fusion 'tam' is tied to one clip length"
        )
    loss = recipe.loss
    if loss.ce_weight + loss.arcface_weight + loss.triplet_weight + loss.supcon_weight <= 0:
        raise ConfigError(f"loss in {source}: at least one loss weight must be > 0")
    if (loss.arcface_weight or loss.triplet_weight or loss.supcon_weight) and not m.embedding_dim:
        raise ConfigError(
            f"model.embedding_dim in {source}: ArcFace/triplet/SupCon losses need an embedding "
            "head (set model.embedding_dim > 0)"
        )
    if loss.arcface_instance_centres and not (loss.arcface_weight and loss.ce_weight):
        raise ConfigError(
            f"loss.arcface_instance_centres in {source}: needs loss.arcface_weight > 0 and "
            "loss.ce_weight > 0 (its centres are per training, so predictions come from the "
            "classifier)"
        )
    if loss.triplet_weight and recipe.train.m_per_class < 2:
        raise ConfigError(
            f"train.m_per_class in {source}: triplet loss needs >= 2 clips per class in a batch"
        )
    tc = recipe.train
    if tc.instances_per_class and (
        tc.m_per_class < tc.instances_per_class
        or tc.m_per_class % tc.instances_per_class
        or tc.batch_size % tc.m_per_class
    ):
        raise ConfigError(
            f"train.instances_per_class in {source}: {tc.instances_per_class} trainings per "
            f"class need train.m_per_class a multiple of it (got {tc.m_per_class}) and "
            f"train.batch_size a multiple of train.m_per_class (got {tc.batch_size})"
        )
    if m.patch_size and not 8 <= m.patch_size <= recipe.data.image_size:
        raise ConfigError(
            f"model.patch_size in {source}: windows of {m.patch_size} px must be at least 8 px "
            f"and fit the {recipe.data.image_size} px faces (data.image_size)"
        )
    if m.spectral_dim and recipe.data.image_size < 2 * m.spectral_bins:
        raise ConfigError(
            f"model.spectral_bins in {source}: {m.spectral_bins} radial bins need faces of at "
            f"least {2 * m.spectral_bins} px (data.image_size is {recipe.data.image_size}); use "
            f"model.spectral_bins <= {recipe.data.image_size // 2}"
        )
    if 0 < recipe.data.resize < recipe.data.image_size:
        raise ConfigError(
            f"data.resize in {source}: faces are resized to {recipe.data.resize} px and then "
            f"centre-cropped to data.image_size ({recipe.data.image_size}), so it must be 0 "
            "(off) or >= data.image_size"
        )
    if recipe.data.augment.random_crop and not recipe.data.resize:
        raise ConfigError(
            f"data.augment.random_crop in {source}: needs data.resize > 0, the side of the "
            "face a random data.image_size crop is taken from (evaluation takes the centre one)"
        )
    if recipe.data.augment.h264_cache and not recipe.data.augment.h264_p:
        raise ConfigError(
            f"data.augment.h264_cache in {source}: needs data.augment.h264_p > 0 (the share of "
            "clips re-encoded with H.264); without it there is nothing to cache"
        )
    lo, hi = recipe.data.augment.crop_scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"data.augment.crop_scale in {source}: need 0 < min <= max <= 1")
    _validate_open_space(recipe, source)
    _validate_pretext(recipe, source)
    return recipe


def with_backbone_preprocessing(recipe: Recipe, source: str) -> Recipe:
    """``recipe`` with ``data.image_size``/``mean``/``std`` that are None set to
    ``model.backbone``'s defaults (attribnet.config.choices); values given win."""
    _check_choice("model.backbone", recipe.model.backbone, source)
    pre = BACKBONE_CARDS[recipe.model.backbone].preprocessing
    defaults = {"image_size": pre.input_size, "mean": pre.mean, "std": pre.std}
    unset = {k: v for k, v in defaults.items() if getattr(recipe.data, k) is None}
    if not unset:
        return recipe
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, **unset))


def _validate_backbone_attention(recipe: Recipe, source: str) -> None:
    """``model.sam``/``channel_attention`` that ``model.backbone`` cannot have."""
    m = recipe.model
    spec = BACKBONE_CARDS[m.backbone]
    try:
        spec.check_attention(m.sam, m.channel_attention)
    except ValueError as exc:
        key = "model.sam" if m.sam not in spec.sam_placements else "model.channel_attention"
        raise ConfigError(f"{key} in {source}: {exc}") from exc


def _validate_open_space(recipe: Recipe, source: str) -> None:
    """Outlier exposure and open-space simulation: keys that only work together."""
    data, loss = recipe.data, recipe.loss
    outliers = list(data.outlier_classes)
    if len(set(outliers)) != len(outliers):
        raise ConfigError(f"data.outlier_classes in {source}: repeats a label: {outliers}")
    both = sorted(set(outliers) & set(data.classes))
    if both:
        raise ConfigError(
            f"data.outlier_classes in {source}: {both} also in data.classes; a label is "
            "either a class of the model or an outlier, not both"
        )
    if outliers and not loss.outlier_weight:
        raise ConfigError(
            f"loss.outlier_weight in {source}: data.outlier_classes {outliers} need "
            "loss.outlier_weight > 0 (e.g. 0.5)"
        )
    if loss.outlier_weight and not outliers:
        raise ConfigError(
            f"data.outlier_classes in {source}: loss.outlier_weight > 0 needs outlier videos "
            "(name their labels in data.outlier_classes, e.g. [real])"
        )
    margins = sorted(set(outliers) & set(loss.arcface_class_margins))
    if margins:
        raise ConfigError(
            f"loss.arcface_class_margins in {source}: {margins} are data.outlier_classes, "
            "which have no ArcFace centre"
        )
    if (loss.outlier_weight or loss.open_space_weight) and not (
        loss.ce_weight or loss.arcface_weight
    ):
        raise ConfigError(
            f"loss in {source}: outlier_weight/open_space_weight push class scores toward "
            "uniform and need a class head (ce_weight or arcface_weight > 0)"
        )


def _validate_pretext(recipe: Recipe, source: str) -> None:
    """A pretext run's classes are its transformations: no classes named, no compression
    augmentation on top of them, no generator index."""
    data = recipe.data
    if data.pretext == "none":
        return
    why = f"with data.pretext {data.pretext!r}"
    for key in ("classes", "outlier_classes"):
        if getattr(data, key):
            raise ConfigError(
                f"data.{key} in {source}: must be empty {why} (its classes are the "
                "transformations; every video of the manifest is used)"
            )
    for key in ("h264_p", "jpeg_p"):
        if getattr(data.augment, key):
            raise ConfigError(
                f"data.augment.{key} in {source}: must be 0 {why} (compression on top of the "
                "transformations would blur the labels)"
            )
    if recipe.train.build_index:
        raise ConfigError(
            f"train.build_index in {source}: must be false {why} (a generator index of "
            "transformation classes means nothing)"
        )
