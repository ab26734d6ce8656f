"""Recipes: YAML files loaded strictly into typed, validated dataclasses.

Every key maps 1:1 to a field below. An unknown key names the file and the nearest valid
key; a wrong type or an impossible value names the key. ``--set a.b=v`` overrides a field
from the command line (the value is parsed as YAML: ``--set train.epochs=3``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from attribnet.data.augment import IMAGENET_MEAN, IMAGENET_STD
from attribnet.data.sampling import MODES as SAMPLING_MODES
from attribnet.errors import ConfigError
from attribnet.models.attention import FUSIONS
from attribnet.models.encoder import BACKBONES, SAM_PLACEMENTS
from attribnet.models.input_filters import INPUT_FILTERS


@dataclass
class AugmentConfig:
    """Training augmentation; probabilities in [0, 1].

    ``crop_scale`` is the area range of a random resized crop; the default (1, 1) takes the
    whole face and does not rescale it. A generator's traces are fine texture at a fixed
    scale, and rescaling blurs them: on the realistic benchmark (benchmarks/README.md) the
    main recipe with ``crop_scale: [0.85, 1.0]`` stayed at chance after 40 epochs (best
    validation accuracy 0.29, 5 classes) and reached 0.60 with ``[1.0, 1.0]``.
    """

    hflip: float = 0.5
    crop_scale: tuple[float, float] = (1.0, 1.0)
    color_jitter: float = 0.0
    h264_p: float = 0.0
    h264_crf: list[int] = field(default_factory=lambda: [0, 10, 23])
    jpeg_p: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)


@dataclass
class DataConfig:
    """Where clips come from and how they are sampled.

    ``manifest``/``cache`` are paths, relative to the working directory. With ``demo: true``
    the built-in synthetic dataset is generated into ``root`` when missing.

    ``outlier_classes`` (outlier exposure, Hendrycks et al., ICLR 2019): labels whose
    TRAIN-split videos are shown in training as "none of the known" (label -1, pushed to a
    uniform softmax, weighted by ``loss.outlier_weight``). They are no classes of the model
    (not in ``classes``, no classifier output, no ArcFace centre) and validation, test and
    the index leave them out. E.g. ``[real]`` or other tools' fakes.

    ``face_check`` (default on): whatever the ``detector``, a video whose face crops show
    no face (noise, one colour, no face in most of 8 sampled crops) is skipped with its
    reason, in training, index building and queries alike
    (attribnet.data.faces.FaceCheck). Turn it off only for inputs that are not faces.
    """

    manifest: str = ""
    cache: str = ""
    demo: bool = False
    root: str = ""
    detector: str = "none"
    face_margin: float = 0.3
    face_check: bool = True
    max_frames: int = 64
    classes: list[str] = field(default_factory=list)
    outlier_classes: list[str] = field(default_factory=list)
    train_qualities: list[str] = field(default_factory=list)
    eval_qualities: list[str] = field(default_factory=list)
    num_frames: int = 10
    sampling: str = "periodic"
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    """The encoder and heads (see attribnet.models.encoder.ClipEncoder).

    Two options keep a generator's high-frequency traces in view; both are off by default.
    ``input_filter``: ``none``, ``srm`` (fixed SRM residuals, greyscale, truncated) or
    ``bayar`` (learnt constrained convolution) before the trunk
    (attribnet.models.input_filters). ``spectral_dim`` > 0: a branch on each frame's
    radially averaged log-amplitude spectrum (``spectral_bins`` rings; frames need
    ``image_size >= 2 * spectral_bins``) adds that many features before the heads
    (attribnet.models.spectral).
    """

    backbone: str = "resnet50"
    sam: str = "every_block"
    channel_attention: bool = False
    fusion: str = "tam"
    num_frames: int = 10
    embedding_dim: int = 0
    weights: str | None = None
    input_filter: str = "none"
    spectral_dim: int = 0
    spectral_bins: int = 32


@dataclass
class LossConfig:
    """Loss weights; total = ce_weight*CE + arcface_weight*ArcFace + triplet_weight*Triplet.

    ArcFace margins are in DEGREES (pytorch-metric-learning's unit): 28.6 deg = 0.5 rad.
    ``arcface_class_margins`` maps class names to per-class margins (ArcFaceMod).

    Two terms teach the open space ("none of the known"); both push a clip's class
    distribution toward uniform (cross-entropy to uniform over the classifier's softmax and,
    with ArcFace, over the scaled cosines to the class centres) and are 0 = off:
    ``outlier_weight`` for the videos of ``data.outlier_classes`` (the two go together);
    ``open_space_weight`` for clips re-synthesised in the training step by a pool of
    ``open_space_nets`` random generator-like nets (attribnet.data.open_space), a fraction
    ``open_space_fraction`` of each batch's clips, appended to the batch.
    """

    ce_weight: float = 1.0
    arcface_weight: float = 0.0
    arcface_margin: float = 28.6
    arcface_scale: float = 64.0
    arcface_class_margins: dict[str, float] = field(default_factory=dict)
    triplet_weight: float = 0.0
    triplet_margin: float = 0.2
    triplet_mining: str = "semihard"
    outlier_weight: float = 0.0
    open_space_weight: float = 0.0
    open_space_fraction: float = 0.25
    open_space_nets: int = 8


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (``step``: lr * gamma every step_epochs)."""

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"
    step_epochs: int = 40
    gamma: float = 0.1
    warmup_epochs: int = 0


@dataclass
class TrainConfig:
    """The loop. ``m_per_class`` > 0 uses PML's MPerClassSampler (needed by triplet).

    ``checkpoint_every_steps`` N > 0 also writes last.pt every N optimizer steps inside an
    epoch (0 = at epoch ends only); ``--resume`` continues from that step with the same
    batches, as if never stopped (attribnet.train_state).
    """

    epochs: int = 300
    batch_size: int = 10
    m_per_class: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    grad_clip: float = 0.0
    seed: int = 0
    out_dir: str = "runs"
    val_every: int = 1
    select_metric: str = "val_accuracy"
    build_index: bool = True
    index_dir: str = "indexes"
    max_steps_per_epoch: int = 0
    checkpoint_every_steps: int = 0


@dataclass
class Recipe:
    """One experiment."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "data.sampling": SAMPLING_MODES,
    "data.detector": ("none", "haar", "centre"),
    "model.backbone": tuple(sorted(BACKBONES)),
    "model.sam": SAM_PLACEMENTS,
    "model.fusion": FUSIONS,
    "model.input_filter": INPUT_FILTERS,
    "loss.triplet_mining": ("semihard", "hard", "all"),
    "optim.name": ("sgd", "adamw"),
    "optim.schedule": ("step", "cosine", "constant"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.select_metric": ("val_accuracy", "val_loss"),
}
POSITIVE = {
    "data.num_frames", "data.image_size", "data.max_frames", "model.num_frames",
    "model.spectral_bins",
    "optim.lr", "optim.step_epochs", "train.epochs", "train.batch_size", "train.val_every",
    "loss.arcface_scale", "loss.open_space_fraction", "loss.open_space_nets",
}  # fmt: skip
NON_NEGATIVE = {
    "data.num_workers", "data.face_margin", "model.embedding_dim", "loss.ce_weight",
    "loss.arcface_weight",
    "loss.triplet_weight", "loss.arcface_margin", "loss.triplet_margin", "optim.momentum",
    "model.spectral_dim",
    "optim.weight_decay", "optim.warmup_epochs", "train.grad_clip", "train.m_per_class",
    "train.max_steps_per_epoch", "loss.outlier_weight", "loss.open_space_weight",
    "train.checkpoint_every_steps",
}  # fmt: skip
PROBABILITIES = {
    "data.augment.hflip", "data.augment.h264_p", "data.augment.jpeg_p", "loss.open_space_fraction",
}  # fmt: skip


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints accepted for floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = ConfigError(
        f"{key} in {source}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}"
    )
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, source)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        if origin is tuple and len(args) != len(value):
            raise ConfigError(f"{key} in {source}: expected {len(args)} values, got {value!r}")
        inner = args if origin is tuple else [args[0]] * len(value)
        items = [_coerce(v, a, key, source) for v, a in zip(value, inner, strict=True)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return {_coerce(k, args[0], key, source): _coerce(v, args[1], key, source)
                for k, v in value.items()}  # fmt: skip
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise bad
    if tp in (int, float) and isinstance(value, bool):
        raise bad
    if not isinstance(value, tp):
        raise bad
    return value


def _build(cls: type, values: dict[str, Any], prefix: str, source: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'recipe'} in {source}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            valid = [prefix + n for n in names]
            near = difflib.get_close_matches(prefix + str(key), valid, n=1, cutoff=0.6)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (valid: {', '.join(names)})"
            raise ConfigError(f"unknown key '{prefix}{key}' in {source}{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{prefix}{key}.", source)
        else:
            kwargs[key] = _coerce(value, tp, prefix + key, source)
    return cls(**kwargs)


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flatten(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out


def validate(recipe: Recipe, source: str) -> Recipe:
    """Reject impossible values, naming the key."""
    for key, value in _flatten(recipe).items():
        if key in CHOICES and value not in CHOICES[key]:
            near = difflib.get_close_matches(str(value), CHOICES[key], n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(
                f"{key} in {source}: {value!r} is not one of {', '.join(CHOICES[key])}{hint}"
            )
        if key in POSITIVE and not value > 0:
            raise ConfigError(f"{key} in {source}: must be > 0, got {value!r}")
        if key in NON_NEGATIVE and value < 0:
            raise ConfigError(f"{key} in {source}: must be >= 0, got {value!r}")
        if key in PROBABILITIES and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key} in {source}: a probability in [0, 1], got {value!r}")
    m = recipe.model
    if m.fusion == "tam" and m.num_frames < 2:
        raise ConfigError(f"model.num_frames in {source}: temporal attention needs >= 2 frames")
    if m.fusion == "tam" and recipe.data.num_frames != m.num_frames:
        raise ConfigError(
            f"data.num_frames ({recipe.data.num_frames}) != model.num_frames ({m.num_frames}) "
            f"in {source}: fusion 'tam' is tied to one clip length"
        )
    loss = recipe.loss
    if loss.ce_weight + loss.arcface_weight + loss.triplet_weight <= 0:
        raise ConfigError(f"loss in {source}: at least one loss weight must be > 0")
    if (loss.arcface_weight or loss.triplet_weight) and not m.embedding_dim:
        raise ConfigError(
            f"model.embedding_dim in {source}: ArcFace/triplet losses need an embedding head "
            "(set model.embedding_dim > 0)"
        )
    if loss.triplet_weight and recipe.train.m_per_class < 2:
        raise ConfigError(
            f"train.m_per_class in {source}: triplet loss needs >= 2 clips per class in a batch"
        )
    if m.spectral_dim and recipe.data.image_size < 2 * m.spectral_bins:
        raise ConfigError(
            f"model.spectral_bins in {source}: {m.spectral_bins} radial bins need faces of at "
            f"least {2 * m.spectral_bins} px (data.image_size is {recipe.data.image_size}); use "
            f"model.spectral_bins <= {recipe.data.image_size // 2}"
        )
    lo, hi = recipe.data.augment.crop_scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"data.augment.crop_scale in {source}: need 0 < min <= max <= 1")
    _validate_open_space(recipe, source)
    return recipe


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


def add_overrides_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``, for :func:`load_recipe`."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe field (repeatable)",
    )


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=v`` strings to a raw recipe mapping (v parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        dotted, text = item.split("=", 1)
        node = raw
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: '{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(text)
    return raw


def read_recipe_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file's raw mapping; ConfigError when missing, malformed or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe in {path}: expected a mapping")
    return raw


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, override and validate a recipe file."""
    raw = apply_overrides(read_recipe_yaml(path), overrides or [])
    source = str(path) + (" (with --set overrides)" if overrides else "")
    return validate(_build(Recipe, raw, "", source), source)


def recipe_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Recipe:
    """Build and validate a recipe from a mapping (e.g. one saved in a checkpoint)."""
    return validate(_build(Recipe, raw, "", source), source)


def to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain mapping of a recipe (tuples as lists), as saved next to checkpoints."""
    return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(recipe))))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML text."""
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)
