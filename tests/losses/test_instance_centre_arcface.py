"""ArcFace with one centre per class and training instance: the target centre is the
clip's own training's, other classes count by their nearest centre; through a training run."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.losses import SubCenterArcFaceLoss

from attribnet.cli import train
from attribnet.config import LossConfig, load_recipe
from attribnet.data.manifest import read_manifest
from attribnet.data.synthetic import generate_demo
from attribnet.errors import ConfigError
from attribnet.files.checkpoints import read_checkpoint
from attribnet.losses import AttributionLoss
from attribnet.losses.instance_centre_arcface import InstanceCentreArcFaceLoss
from tests.builders import REPO, tiny_overrides

ROOT = REPO


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def _loss() -> InstanceCentreArcFaceLoss:
    """2 classes x 2 instances in the plane: class 0's centres at 0 and 90 degrees,
    class 1's at 180 and 270."""
    loss = InstanceCentreArcFaceLoss(2, 2, [20.0, 20.0], 2, scale=8.0)
    with torch.no_grad():
        loss.W.copy_(torch.tensor([_unit(0), _unit(90), _unit(180), _unit(270)]).T)
    return loss


def test_the_target_is_the_own_trainings_centre_and_other_classes_their_nearest():
    loss = _loss()
    emb = torch.tensor([_unit(30)] * 2)
    labels, instances = torch.tensor([0, 0]), torch.tensor([0, 1])
    loss._labels, loss._instances = labels, instances
    cosine = loss.get_cosine(emb)
    loss._labels = loss._instances = None
    c = math.cos(math.radians(30))
    s = math.sin(math.radians(30))
    # row 0: own centre at 0 deg; row 1: own centre at 90 deg; class 1: nearest of 180/270
    expected = torch.tensor([[c, max(-c, -s)], [s, max(-c, -s)]])
    torch.testing.assert_close(cosine, expected)
    # near its own training's centre the loss is lower than near its class's other one
    at_own = loss.with_instances(torch.tensor([_unit(5)]), torch.tensor([0]), torch.tensor([0]))
    at_other = loss.with_instances(torch.tensor([_unit(85)]), torch.tensor([0]), torch.tensor([0]))
    assert at_own < at_other


def test_without_instances_it_is_pml_sub_center_arcface():
    torch.manual_seed(0)
    ours = InstanceCentreArcFaceLoss(3, 8, [28.6] * 3, 4, scale=16.0)
    pml = SubCenterArcFaceLoss(num_classes=3, embedding_size=8, margin=28.6, scale=16.0,
                               sub_centers=4)  # fmt: skip
    with torch.no_grad():
        pml.W.copy_(ours.W)
    emb, labels = torch.randn(10, 8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    torch.testing.assert_close(ours(emb, labels), pml(emb, labels))
    no_instance = torch.full_like(labels, -1)
    torch.testing.assert_close(ours.with_instances(emb, labels, no_instance), pml(emb, labels))


def test_the_attribution_loss_passes_each_known_rows_instance():
    cfg = LossConfig(
        arcface_weight=1.0, arcface_instance_centres=True, arcface_scale=8.0, arcface_margin=20.0
    )
    loss = AttributionLoss(cfg, ["a", "b"], 2, instance_names=["p1", "p2"])
    with torch.no_grad():
        loss.arcface.W.copy_(_loss().W)
    outputs = {"logits": torch.zeros(3, 2), "embedding": torch.tensor([_unit(5)] * 3)}
    labels = torch.tensor([0, -1, 0])  # the middle row is an outlier: not in ArcFace
    own = loss(outputs, labels, torch.tensor([0, 1, 0]))["arcface"]
    other = loss(outputs, labels, torch.tensor([1, 0, 1]))["arcface"]
    expected = _loss().with_instances(outputs["embedding"][:1], labels[:1], torch.tensor([0]))
    torch.testing.assert_close(own, expected)
    assert other > own
    with pytest.raises(ValueError, match=">= 2 training instances"):
        AttributionLoss(cfg, ["a", "b"], 2, instance_names=["p1"])


@pytest.mark.slow
def test_it_needs_the_classifier_and_trains_a_centre_per_training(tmp_path):
    with pytest.raises(ConfigError, match="arcface_instance_centres .*ce_weight > 0"):
        load_recipe(ROOT / "recipes/demo.yaml", ["loss.arcface_instance_centres=true",
                                                 "loss.ce_weight=0", "model.embedding_dim=8",
                                                 "loss.arcface_weight=1"])  # fmt: skip
    manifest = generate_demo(tmp_path / "demo", num_sources=10, num_frames=8, size=32,
                             qualities=(0,), instances=5)  # fmt: skip
    extra = {"train.max_steps_per_epoch": 2, "loss.arcface_instance_centres": True,
             "loss.arcface_weight": 1.0, "model.embedding_dim": 16}  # fmt: skip
    sets = tiny_overrides(manifest, tmp_path, **extra)
    argv = [str(ROOT / "recipes/demo.yaml")] + [a for s in sets for a in ("--set", s)]
    assert train.main(argv) == 0
    state = read_checkpoint(tmp_path / "runs/demo/last.pt")
    trainings = {r.instance for r in read_manifest(manifest) if r.split == "train"}
    assert len(trainings) >= 2
    assert state["loss"]["arcface.W"].shape == (16, len(state["class_names"]) * len(trainings))
