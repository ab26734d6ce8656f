"""Reading recipes: YAML -> strictly typed dataclasses (an unknown key names the nearest
valid one), ``--set a.b=v`` overrides, and the resolved recipe back to YAML."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from attribnet.config.sections import Recipe
from attribnet.config.validate import validate
from attribnet.errors import ConfigError


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


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key twice in one mapping (PyYAML keeps the last)."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(
                f"{key_node.start_mark.name}: duplicate key '{key}' at line {line} "
                f"(first at line {seen[key]}); a key appears once per section"
            )
        seen[key] = line
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def read_recipe_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file's raw mapping; ConfigError when missing, malformed, not a mapping or
    holding a key twice in one section."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        with open(path) as f:
            raw = yaml.load(f, Loader=_StrictLoader) or {}  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe in {path}: expected a mapping")
    return raw


# data.* keys whose absence from a recipe means "model.backbone's default" (set by validate)
BACKBONE_DEFAULT_KEYS = ("image_size", "mean", "std")


def _unset_backbone_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with each absent key of BACKBONE_DEFAULT_KEYS None under ``data``."""
    if not isinstance(raw, dict) or not isinstance(raw.get("data", {}), (dict, type(None))):
        return raw  # not a mapping: _build says so
    return {**raw, "data": {**dict.fromkeys(BACKBONE_DEFAULT_KEYS), **(raw.get("data") or {})}}


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, override and validate a recipe file."""
    raw = _unset_backbone_defaults(apply_overrides(read_recipe_yaml(path), overrides or []))
    source = str(path) + (" (with --set overrides)" if overrides else "")
    return validate(_build(Recipe, raw, "", source), source)


def recipe_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Recipe:
    """Build and validate a recipe from a mapping (e.g. one saved in a checkpoint)."""
    return validate(_build(Recipe, _unset_backbone_defaults(raw), "", source), source)


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
