"""Pre-training on transformations, then fine-tuning on generators from its checkpoint:
the pretext run's classes are the transformations, and the generator run's encoder starts
from the pretext run's trunk."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from attribnet.cli import train
from attribnet.config import load_recipe
from attribnet.data.pretext import TRANSFORMATIONS
from attribnet.errors import CheckpointError
from attribnet.files.checkpoints import read_checkpoint
from attribnet.models import build_model
from attribnet.training import loop
from tests.builders import REPO, tiny_overrides, tiny_recipe, write_checkpoint

PRETEXT = REPO / "recipes/realistic/pretext_transforms.yaml"
FINETUNE = REPO / "recipes/realistic/srm_pretext.yaml"
TAKEN = ("encoder.trunk.", "encoder.input_filter.", "encoder.last_sam.")


def argv(recipe, manifest, out, **extra) -> list[str]:
    extra = {"train.max_steps_per_epoch": 2, "data.face_margin": 0.3, **extra}  # the shared cache
    sets = tiny_overrides(manifest, out, **extra)
    return [str(recipe)] + [a for s in sets for a in ("--set", s)]


def test_pretrain_then_fine_tune_starts_from_the_pretext_trunk(tiny_demo, tmp_path, monkeypatch):
    assert train.main(argv(PRETEXT, tiny_demo, tmp_path)) == 0
    run = tmp_path / "runs/realistic_pretext_transforms"
    best = read_checkpoint(run / "best.pt")
    names = [t.name for t in TRANSFORMATIONS]
    assert best["class_names"] == names
    report = json.loads((run / "val_report.json").read_text())
    assert set(report["val_report"]["per_class_accuracy"]) <= set(names)

    built = []
    real_build = loop.build_model

    def recording_build(cfg, num_classes):
        model = real_build(cfg, num_classes)
        built.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(loop, "build_model", recording_build)
    weights = f"model.weights={run / 'best.pt'}"
    assert train.main(argv(FINETUNE, tiny_demo, tmp_path) + ["--set", weights]) == 0
    (start,) = built  # the generator run's model before its first step
    taken = [k for k in best["model"] if k.startswith(TAKEN)]
    assert any(k.startswith("encoder.trunk.layer1.0.spatial_attention") for k in taken)
    for key in taken:
        assert torch.equal(start[key], best["model"][key]), key
    assert start["classifier.fc.weight"].shape[0] != len(names)  # the heads are its own
    tuned = read_checkpoint(tmp_path / "runs/realistic_srm_pretext/best.pt")
    assert tuned["class_names"] != names


@pytest.mark.parametrize("sam", ["every_block", "last"])
def test_a_model_takes_a_checkpoints_per_frame_part_and_not_its_heads(tmp_path, sam):
    recipe = tiny_recipe(tmp_path, num_frames=4, size=32, embedding_dim=8)
    recipe = replace(recipe, model=replace(recipe.model, sam=sam, input_filter="bayar"))
    path = write_checkpoint(tmp_path / "run.pt", recipe, [t.name for t in TRANSFORMATIONS], seed=1)
    saved = read_checkpoint(path)["model"]
    torch.manual_seed(2)
    model = build_model(replace(recipe.model, weights=str(path)), num_classes=5)
    state = model.state_dict()
    taken = [k for k in saved if k.startswith(TAKEN)]
    assert any(k.startswith("encoder.input_filter.") for k in taken)
    assert any(k.startswith("encoder.last_sam.") for k in taken) == (sam == "last")
    for key in taken:
        assert torch.equal(state[key], saved[key]), key
    assert state["classifier.fc.weight"].shape[0] == 5
    assert not torch.equal(state["embedding.fc.weight"], saved["embedding.fc.weight"])


def test_a_checkpoint_of_another_backbone_is_a_one_line_error(tmp_path):
    recipe = tiny_recipe(tmp_path, num_frames=4, size=32, embedding_dim=0)
    path = write_checkpoint(tmp_path / "run.pt", recipe, ["a", "b"], seed=0)
    other = replace(recipe.model, backbone="resnet18", weights=str(path))
    with pytest.raises(CheckpointError, match="backbone resnet10.* this resnet18 encoder") as err:
        build_model(other, num_classes=2)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="do not fit"):
        build_model(replace(recipe.model, sam="none", weights=str(path)), num_classes=2)


def test_the_shipped_fine_tune_recipe_names_the_pretext_runs_checkpoint():
    pretext, tuned = load_recipe(PRETEXT), load_recipe(FINETUNE)
    assert pretext.data.pretext == "transformations" and tuned.data.pretext == "none"
    assert tuned.model.weights == f"{pretext.train.out_dir}/{pretext.name}/best.pt"
    assert replace(tuned.model, weights=None) == pretext.model
