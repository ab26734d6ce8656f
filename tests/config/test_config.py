"""Recipes load strictly: unknown keys, wrong types and impossible values name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from attribnet.config import dump_recipe, load_recipe, recipe_from_dict, to_dict
from attribnet.errors import ConfigError
from tests.builders import REPO

RECIPES = sorted(REPO.joinpath("recipes").rglob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_file_and_nearest_key(tmp_path):
    path = write(tmp_path, "loss:\n  arcfce_margin: 20\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert "unknown key 'loss.arcfce_margin'" in msg
    assert str(path) in msg and "did you mean 'loss.arcface_margin'" in msg


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'model'"):
        load_recipe(write(tmp_path, "modle:\n  backbone: resnet50\n"))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("data:\n  num_frames: 0\n", r"data.num_frames .* must be > 0"),
        ("optim:\n  lr: -0.1\n", r"optim.lr .* must be > 0"),
        ("model:\n  backbone: resnet5\n", r"model.backbone .*did you mean 'resnet50'"),
        ("train:\n  epochs: ten\n", r"train.epochs .* expected int"),
        ("train:\n  amp: 1\n", r"train.amp .* expected bool"),
        ("data:\n  augment:\n    h264_p: 1.5\n", r"data.augment.h264_p .* probability"),
        ("data:\n  num_frames: 8\n", r"data.num_frames \(8\) != model.num_frames \(10\)"),
        ("loss:\n  arcface_weight: 1.0\n", r"embedding_dim .* embedding head"),
        (
            "model:\n  embedding_dim: 8\nloss:\n  triplet_weight: 1.0\n",
            r"train.m_per_class .* triplet",
        ),
        ("- just\n- a list\n", r"expected a mapping"),
        ("train:\n  checkpoint_every_steps: -1\n", r"train.checkpoint_every_steps .* >= 0"),
        ("train:\n  checkpoint_every: 10\n", r"did you mean 'train.checkpoint_every_steps'"),
        ("data:\n  face_check: 'yes'\n", r"data.face_check .* expected bool"),
        ("data:\n  face_chek: true\n", r"did you mean 'data.face_check'"),
        ("data:\n  augment:\n    random_crop: true\n", r"random_crop .* data.resize > 0"),
        ("data:\n  cache_size: -1\n", r"data.cache_size .* >= 0"),
        (
            "train:\n  if_exists: resum\n",
            r"train.if_exists .* 'resum' is not one of refuse, resume, overwrite "
            r"\(did you mean 'resume'\?\)",
        ),
        ("train:\n  if_exist: resume\n", r"did you mean 'train.if_exists'"),
    ],
)
def test_impossible_values_are_rejected(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_recipe(write(tmp_path, text))


def test_overrides_parse_yaml_values(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 5\n")
    recipe = load_recipe(path, ["train.epochs=2", "data.augment.h264_crf=[0, 23]", "name=x"])
    assert recipe.train.epochs == 2 and recipe.data.augment.h264_crf == [0, 23]
    assert recipe.name == "x"
    with pytest.raises(ConfigError, match="unknown key 'train.epoch'"):
        load_recipe(path, ["train.epoch=2"])
    with pytest.raises(ConfigError, match="key=value"):
        load_recipe(path, ["train.epochs"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(write(tmp_path, "a: [1,\n"))


def test_round_trip_through_saved_dict(tmp_path):
    recipe = load_recipe(write(tmp_path, "model:\n  embedding_dim: 8\n"), ["data.mean=[0,0,0]"])
    assert recipe_from_dict(to_dict(recipe)) == recipe
    reloaded = load_recipe(write(tmp_path, dump_recipe(recipe)))
    assert reloaded == recipe


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_load(path):
    recipe = load_recipe(path)
    assert recipe.name


def test_a_duplicate_key_is_a_one_line_error_naming_key_and_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: x\ntrain:\n  epochs: 3\n  batch_size: 4\n  epochs: 5\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'epochs' at line 5 \(first at line 3\)"):
        load_recipe(path)
    path.write_text("name: x\nname: y\n")
    with pytest.raises(ConfigError, match="duplicate key 'name' at line 2") as err:
        load_recipe(path)
    assert "\n" not in str(err.value)
    path.write_text("name: x\ntrain:\n  epochs: 3\nloss:\n  epochs_like: 1\n")  # other sections
    with pytest.raises(ConfigError, match="unknown key 'loss.epochs_like'"):
        load_recipe(path)


PRETEXT = "data:\n  pretext: transformations\ntrain:\n  build_index: false\n"


def test_a_pretext_recipe_loads_and_a_misspelt_task_names_the_nearest(tmp_path):
    assert load_recipe(write(tmp_path, PRETEXT)).data.pretext == "transformations"
    assert load_recipe(write(tmp_path, "name: x\n")).data.pretext == "none"
    with pytest.raises(ConfigError, match=r"data.pretext .* \(did you mean 'transformations'"):
        load_recipe(write(tmp_path, PRETEXT), ["data.pretext=transformation"])


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("data.classes=[a, b]", r"^data.classes in .*: must be empty with data.pretext"),
        ("data.outlier_classes=[real]", r"^data.outlier_classes in .*: must be empty"),
        ("data.augment.h264_p=0.5", r"^data.augment.h264_p in .*: must be 0 with data.pretext"),
        ("data.augment.jpeg_p=0.2", r"^data.augment.jpeg_p in .*: must be 0 with data.pretext"),
        ("train.build_index=true", r"^train.build_index in .*: must be false with data.pretext"),
    ],
)
def test_a_pretext_recipe_refuses_what_would_blur_its_labels(tmp_path, override, pattern):
    path = write(
        tmp_path, PRETEXT + "loss:\n  outlier_weight: 0.5\n" * override.startswith("data.o")
    )
    with pytest.raises(ConfigError, match=pattern) as err:
        load_recipe(path, [override])
    assert "\n" not in str(err.value)
    load_recipe(write(tmp_path, PRETEXT))  # the same recipe without the override loads
