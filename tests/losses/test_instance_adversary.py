"""The instance adversary: gradient reversal on the generator-training label, in the loss
and through a training run."""

from __future__ import annotations

import json

import pytest
import torch

from attribnet.cli import train
from attribnet.config import LossConfig
from attribnet.data.synthetic import generate_demo
from attribnet.files.checkpoints import read_checkpoint
from attribnet.losses import AttributionLoss
from attribnet.losses.instance_adversary import InstanceAdversary, reverse_gradient
from tests.builders import REPO, tiny_overrides

ROOT = REPO


def test_the_features_get_the_reversed_gradient_and_the_head_the_plain_one():
    torch.manual_seed(0)
    adversary = InstanceAdversary(8, 3, hidden=4)
    features = torch.randn(6, 8, requires_grad=True)
    instances = torch.tensor([0, 1, 2, 0, -1, 1])
    adversary(features, instances).backward()
    reversed_grad, head_grad = features.grad.clone(), adversary.head[0].weight.grad.clone()
    features.grad, adversary.head[0].weight.grad = None, None
    plain = torch.nn.functional.cross_entropy(adversary.head(features[instances >= 0]),
                                              instances[instances >= 0])  # fmt: skip
    plain.backward()
    torch.testing.assert_close(reversed_grad, -features.grad)
    torch.testing.assert_close(head_grad, adversary.head[0].weight.grad)
    assert reversed_grad[4].abs().sum() == 0  # the row without an instance
    x = torch.ones(2, requires_grad=True)
    reverse_gradient(x).sum().backward()
    assert x.grad.tolist() == [-1.0, -1.0]


def test_the_loss_has_an_instance_part_that_reaches_every_parameter():
    cfg = LossConfig(instance_adversary_weight=0.5)
    loss = AttributionLoss(cfg, ["a", "b"], 0, instance_names=["p1", "p2"], feature_dim=8)
    out = {"logits": torch.randn(4, 2, requires_grad=True),
           "features": torch.randn(4, 8, requires_grad=True)}  # fmt: skip
    parts = loss(out, torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1]))
    assert set(parts) == {"ce", "instance", "total"}
    torch.testing.assert_close(parts["total"], parts["ce"] + 0.5 * parts["instance"])
    none = loss(out, torch.tensor([0, 1, 0, 1]))  # no instances: a zero part
    assert none["instance"] == 0
    none["total"].backward()
    assert all(p.grad is not None for p in loss.parameters())
    with pytest.raises(ValueError, match=">= 2 training instances"):
        AttributionLoss(cfg, ["a", "b"], 0, instance_names=["p1"], feature_dim=8)


@pytest.mark.slow
def test_training_with_the_adversary_needs_instances_and_saves_its_head(tmp_path, capsys):
    manifest = generate_demo(tmp_path / "demo", num_sources=10, num_frames=8, size=32,
                             qualities=(0,), instances=5)  # fmt: skip
    extra = {"train.max_steps_per_epoch": 2, "loss.instance_adversary_weight": 0.5}
    sets = tiny_overrides(manifest, tmp_path, **extra)
    argv = [str(ROOT / "recipes/demo.yaml")] + [a for s in sets for a in ("--set", s)]
    assert train.main(argv) == 0
    state = read_checkpoint(tmp_path / "runs/demo/last.pt")
    assert any(k.startswith("instance_adversary.head.") for k in state["loss"])
    record = json.loads((tmp_path / "runs/demo/metrics.jsonl").read_text().splitlines()[-1])
    assert record["train_instance"] > 0
    plain = generate_demo(tmp_path / "plain", num_sources=4, num_frames=8, size=32,
                          qualities=(0,))  # fmt: skip
    sets = tiny_overrides(plain, tmp_path / "b", **{"loss.instance_adversary_weight": 0.5})
    assert (
        train.main([str(ROOT / "recipes/demo.yaml")] + [a for s in sets for a in ("--set", s)]) == 2
    )
    assert ">= 2 training instances" in capsys.readouterr().err.strip().splitlines()[-1]
