"""Instance-mixed batches: every class of a batch drawn from several generator trainings."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from attribnet.cli import train
from attribnet.config import load_recipe
from attribnet.data.clips import OUTLIER_LABEL
from attribnet.data.instance_batches import InstanceMixedBatches
from attribnet.data.synthetic import generate_demo
from attribnet.errors import ConfigError, DataError
from attribnet.training.data import prepare_data, train_loader
from tests.builders import REPO, tiny_overrides

ROOT = REPO


def _items(classes: int = 3, instances: int = 3, per_instance: int = 4):
    labels = np.repeat(np.arange(classes), instances * per_instance)
    inst = np.tile(np.repeat(np.arange(instances), per_instance), classes) + 10 * labels
    return labels, inst


def _check(batch: list[int], labels, inst, m: int, k: int) -> None:
    by_class = Counter(int(labels[i]) for i in batch)
    assert set(by_class.values()) == {m}  # m clips of each class in the batch
    for c in by_class:
        trainings = Counter(int(inst[i]) for i in batch if labels[i] == c)
        assert len(trainings) == k and set(trainings.values()) == {m // k}


@pytest.mark.parametrize(("batch", "m", "k"), [(6, 2, 2), (6, 3, 3), (8, 4, 2), (4, 2, 1)])
def test_each_class_of_a_batch_comes_from_k_different_trainings(batch, m, k):
    labels, inst = _items()
    sampler = InstanceMixedBatches(labels, inst, batch, m, k, np.random.default_rng(0))
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == len(labels) // batch
    for b in drawn:
        assert len(b) == batch
        _check(b, labels, inst, m, k)
    # the same generator state draws the same batches (a resumed epoch); another, others
    again = list(InstanceMixedBatches(labels, inst, batch, m, k, np.random.default_rng(0)))
    other = list(InstanceMixedBatches(labels, inst, batch, m, k, np.random.default_rng(1)))
    assert again == drawn and other != drawn


def test_outliers_and_rows_without_a_training_are_one_group_each_without_the_rule():
    labels, inst = _items(classes=2)
    labels = np.concatenate([labels, [OUTLIER_LABEL] * 5])
    inst = np.concatenate([inst, [-1] * 5])
    batches = list(InstanceMixedBatches(labels, inst, 6, 2, 2, np.random.default_rng(0)))
    for b in batches:  # all three groups in every batch: two classes and the outliers
        assert Counter(int(labels[i]) for i in b) == {0: 2, 1: 2, OUTLIER_LABEL: 2}
        _check([i for i in b if labels[i] >= 0], labels, inst, 2, 2)


def test_too_few_trainings_or_classes_is_a_clear_error():
    labels, inst = _items(classes=2, instances=2)
    with pytest.raises(DataError, match=r"instances_per_class 3 .* class 0: 2, class 1: 2"):
        InstanceMixedBatches(labels, inst, 6, 3, 3, np.random.default_rng(0))
    with pytest.raises(DataError, match="needs 3 classes; the training set has 2"):
        InstanceMixedBatches(labels, inst, 6, 2, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="multiple of instances_per_class"):
        InstanceMixedBatches(labels, inst, 6, 3, 2, np.random.default_rng(0))


def test_the_recipe_checks_the_batch_arithmetic():
    recipe = ROOT / "recipes/demo.yaml"
    bad = ["train.instances_per_class=2", "train.m_per_class=3", "train.batch_size=6"]
    with pytest.raises(ConfigError, match=r"train.instances_per_class .* multiple of it"):
        load_recipe(recipe, bad)
    with pytest.raises(ConfigError, match="train.batch_size a multiple"):
        load_recipe(recipe, ["train.instances_per_class=2", "train.m_per_class=2",
                             "train.batch_size=5"])  # fmt: skip


@pytest.mark.slow
def test_a_run_trains_on_instance_mixed_batches(tmp_path):
    manifest = generate_demo(tmp_path / "demo", num_sources=10, num_frames=8, size=32,
                             qualities=(0,), instances=5)  # fmt: skip
    extra = {"train.instances_per_class": 2, "train.m_per_class": 2, "train.batch_size": 10,
             "loss.triplet_weight": 0.5, "model.embedding_dim": 16,
             "train.max_steps_per_epoch": 2}  # fmt: skip
    sets = tiny_overrides(manifest, tmp_path, **extra)
    recipe = load_recipe(ROOT / "recipes/demo.yaml", sets)
    data = prepare_data(recipe)
    labels, inst = data.train.labels, data.train.instances
    assert (inst >= 0).all() and len(set(inst.tolist())) > 2
    for batch in train_loader(data, recipe, epoch=0).batch_sampler:
        _check(batch, labels, inst, 2, 2)
    argv = [str(ROOT / "recipes/demo.yaml")] + [a for s in sets for a in ("--set", s)]
    assert train.main(argv) == 0
