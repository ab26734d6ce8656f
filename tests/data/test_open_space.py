"""Open-space simulation and outlier exposure: the simulator's properties, the recipe keys,
the sampler with outlier labels, and a task whose optimizer never sees the simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning.samplers import MPerClassSampler

from attribnet.config import load_recipe
from attribnet.data.augment import IMAGENET_MEAN, IMAGENET_STD, Normalize
from attribnet.data.open_space import (
    OPEN_SPACE_LABEL,
    UPSAMPLERS,
    OpenSpaceSimulator,
    pool_seed,
    step_generator,
)
from attribnet.errors import ConfigError
from attribnet.losses import AttributionLoss
from attribnet.models import build_model
from attribnet.training.loop import build_open_space, build_optimizer
from attribnet.training.task import AttributionTask


def simulator(seed: int = 0, **kwargs: object) -> OpenSpaceSimulator:
    return OpenSpaceSimulator(8, 0.5, IMAGENET_MEAN, IMAGENET_STD, seed=seed, **kwargs)


def smooth_clips(batch: int = 3, frames: int = 4, size: int = 32) -> torch.Tensor:
    """(B, T, 3, S, S) normalised clips of smooth, slowly drifting 8-bit images."""
    ys, xs = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    clips = []
    for b in range(batch):
        video = []
        for t in range(frames):
            phase = 0.3 * b + 0.1 * t
            rgb = [np.sin(3 * xs + phase), np.cos(2 * ys - phase), xs * ys + 0.2 * phase]
            video.append(np.stack(rgb, -1) * 0.4 + 0.5)
        clips.append(Normalize()(np.clip(np.stack(video) * 255, 0, 255).astype(np.uint8)))
    return torch.stack(clips)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


# ----------------------------------------------------------------------------- simulator


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_has_the_input_shape_and_dtype_and_is_finite(dtype):
    clips = smooth_clips(3, 4, 30).to(dtype)  # odd half-size: 30 -> 15 -> 30
    out = simulator()(clips, torch.tensor([0, 3, 7]))
    assert out.shape == clips.shape and out.dtype == dtype and torch.isfinite(out).all()


def test_every_net_changes_the_trace_but_keeps_the_content():
    sim, clips = simulator(seed=1), smooth_clips(1)
    assert set(sim.kind) == set(UPSAMPLERS)
    for k in range(sim.num_nets):
        out = sim.apply_net(clips[0], k)
        assert not torch.equal(out, clips[0]), k
        assert correlation(out, clips[0]) > 0.8, k


def test_requantised_to_the_loaders_8_bit_grid():
    out = simulator()(smooth_clips(1), torch.tensor([2]))
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = out[0] * 255 * std + 255 * mean
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3


def test_deterministic_for_a_seed_and_redrawn_for_another():
    clips, nets = smooth_clips(), torch.tensor([1, 4, 6])
    a, b = simulator(seed=5), simulator(seed=5)
    assert torch.equal(a(clips, nets), b(clips, nets))
    b.redraw(6)
    assert not torch.equal(a(clips, nets), b(clips, nets))
    b.redraw(5)
    assert torch.equal(a(clips, nets), b(clips, nets))
    labels = torch.tensor([0, 1, 2])
    first = a.extend(clips, labels, step_generator(0, 1, 2))
    again = a.extend(clips, labels, step_generator(0, 1, 2))
    other = a.extend(clips, labels, step_generator(0, 1, 3))
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    assert pool_seed(0, 1) != pool_seed(0, 2) and pool_seed(0, 1) != pool_seed(1, 1)


def test_one_net_for_all_frames_of_a_clip():
    sim = simulator()
    still = smooth_clips(2, 1).expand(2, 5, -1, -1, -1).contiguous()  # 5 identical frames
    out = sim(still, torch.tensor([2, 5]))
    assert torch.equal(out[:, :1].expand_as(out), out)
    clips, nets = smooth_clips(3), torch.tensor([6, 0, 6])
    out = sim(clips, nets)
    for b, k in enumerate(nets.tolist()):
        assert torch.equal(out[b], sim.apply_net(clips[b], k))


def test_extend_appends_a_fraction_with_the_open_space_label():
    sim, clips = simulator(), smooth_clips(4)
    labels = torch.tensor([0, 1, -1, 2])
    x, y = sim.extend(clips, labels, step_generator(3, 0, 0))
    assert sim.count(4) == 2 and x.shape == (6, *clips.shape[1:])
    assert torch.equal(x[:4], clips) and torch.equal(y[:4], labels)
    assert y[4:].tolist() == [OPEN_SPACE_LABEL] * 2
    assert simulator().count(1) == 1 and OpenSpaceSimulator(fraction=1.0).count(5) == 5


def test_frozen_and_convertible_to_channels_last():
    sim, clips, nets = simulator(), smooth_clips(2), torch.tensor([0, 1])
    before = sim(clips, nets)
    assert list(sim.parameters()) == [] and sim.state_dict() == {}
    assert not any(b.requires_grad for b in sim.buffers())
    sim.to(memory_format=torch.channels_last)
    assert torch.allclose(sim(clips, nets), before, atol=1e-5)
    with pytest.raises(ValueError, match="fraction"):
        OpenSpaceSimulator(fraction=0.0)


def test_the_optimizer_never_sees_the_simulator(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "model:\n  backbone: resnet10\n  fusion: mean\n  num_frames: 4\n  embedding_dim: 8\n"
        "data:\n  num_frames: 4\n"
        "loss:\n  arcface_weight: 0.5\n  open_space_weight: 0.5\n"
    )
    recipe = load_recipe(path)
    model = build_model(recipe.model, 3)
    loss = AttributionLoss(recipe.loss, ["a", "b", "c"], recipe.model.embedding_dim)
    task = AttributionTask(model, loss, build_open_space(recipe))
    assert isinstance(task.open_space, OpenSpaceSimulator)
    optimizer = build_optimizer(task, recipe)
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    expected = {id(p) for p in [*model.parameters(), *loss.parameters()]}
    assert optimised == expected and id(loss.arcface.W) in optimised
    assert not optimised & {id(b) for b in task.open_space.buffers()}
    assert not any(key.startswith("open_space") for key in task.state_dict())
    off = load_recipe(path, ["loss.open_space_weight=0"])
    assert build_open_space(off) is None


# ----------------------------------------------------------------------------- recipe keys


@pytest.mark.parametrize(
    ("sets", "pattern"),
    [
        (["data.classes=[a,real]", "data.outlier_classes=[real]", "loss.outlier_weight=0.5"],
         r"\['real'\] also in data.classes"),
        (["data.outlier_classes=[real]"], r"need loss.outlier_weight > 0"),
        (["loss.outlier_weight=0.5"], r"outlier_weight > 0 needs outlier videos"),
        (["data.outlier_classes=[real,real]", "loss.outlier_weight=0.5"], r"repeats a label"),
        (["data.outlier_classes=[real]", "loss.outlier_weight=0.5",
          "loss.arcface_class_margins={real: 40}"], r"no ArcFace centre"),
        (["loss.outlier_weight=-1"], r"loss.outlier_weight .* must be >= 0"),
        (["loss.open_space_fraction=0"], r"loss.open_space_fraction .* must be > 0"),
        (["loss.open_space_fraction=1.5"], r"loss.open_space_fraction .* \[0, 1\]"),
        (["loss.open_space_nets=0"], r"loss.open_space_nets .* must be > 0"),
        (["loss.ce_weight=0", "loss.triplet_weight=1", "train.m_per_class=2",
          "model.embedding_dim=8", "loss.open_space_weight=0.5"], r"need a class head"),
        (["loss.outlier_weigth=0.5"], r"unknown key 'loss.outlier_weigth'.*'loss.outlier_weight'"),
        (["data.outlier_clases=[real]"], r"did you mean 'data.outlier_classes'"),
    ],
)  # fmt: skip
def test_bad_open_space_keys_are_config_errors(tmp_path, sets, pattern):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match=pattern):
        load_recipe(path, sets)


def test_defaults_leave_both_terms_off(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\n")
    recipe = load_recipe(path)
    assert recipe.data.outlier_classes == []
    assert recipe.loss.outlier_weight == 0.0 and recipe.loss.open_space_weight == 0.0
    assert recipe.loss.open_space_fraction == 0.25 and recipe.loss.open_space_nets == 8
    both = load_recipe(path, ["data.outlier_classes=[real]", "loss.outlier_weight=0.5"])
    assert both.data.outlier_classes == ["real"]


# ----------------------------------------------------------------------------- sampling


def test_m_per_class_sampler_treats_the_outlier_label_as_one_more_class():
    labels = np.array([0] * 6 + [1] * 6 + [-1] * 6)
    sampler = MPerClassSampler(labels, 2, batch_size=6, length_before_new_iter=len(labels))
    order = list(sampler)
    assert len(order) == len(labels)
    for start in range(0, len(order), 6):
        counts = np.unique(labels[order[start : start + 6]], return_counts=True)
        assert counts[0].tolist() == [-1, 0, 1] and counts[1].tolist() == [2, 2, 2]
