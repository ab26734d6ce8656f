"""Recipes: YAML files loaded strictly into typed, validated dataclasses.

Every key maps 1:1 to a field of :mod:`.sections`. An unknown key names the file and the
nearest valid key; a wrong type or an impossible value names the key (:mod:`.validate`).
``--set a.b=v`` overrides a field from the command line (the value is parsed as YAML:
``--set train.epochs=3``; :mod:`.load`).
"""

from attribnet.config.load import (
    add_overrides_argument,
    apply_overrides,
    dump_recipe,
    load_recipe,
    read_recipe_yaml,
    recipe_from_dict,
    to_dict,
)
from attribnet.config.sections import (
    AugmentConfig,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    Recipe,
    TrainConfig,
)
from attribnet.config.validate import validate

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "Recipe",
    "TrainConfig",
    "add_overrides_argument",
    "apply_overrides",
    "dump_recipe",
    "load_recipe",
    "read_recipe_yaml",
    "recipe_from_dict",
    "to_dict",
    "validate",
]
