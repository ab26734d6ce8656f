"""The realistic benchmark's face-swap generators (benchmarks/realistic/generators.py):
shapes of the five DFDM architectures at a 64 px base size, and that the two identities
decode differently from one shared encoding; the synthetic architectures for pre-training
differ from each other in their upsampling. CPU, tiny widths; needs no footage."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from tests.builders import REPO

PATH = REPO / "benchmarks" / "realistic" / "generators.py"


def _load():
    spec = importlib.util.spec_from_file_location("realistic_generators", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while executing it
    spec.loader.exec_module(module)
    return module


gen = _load()

# (input size, output size, has a learned mask) at S = 64: DFDM's Table 2
EXPECTED = {
    "faceswap": (64, 64, False),
    "lightweight": (64, 64, False),
    "iae": (64, 64, False),
    "dfaker": (64, 128, True),
    "dfl": (128, 128, False),
}


def test_all_five_dfdm_architectures():
    assert set(gen.GENERATORS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_shapes_and_swap(name):
    torch.manual_seed(0)
    model = gen.build_generator(name, size=64, width_div=32).eval()
    size_in, size_out, has_mask = EXPECTED[name]
    assert (model.input_size, model.output_size, model.has_mask) == EXPECTED[name]
    x = torch.rand(2, 3, size_in, size_in)
    with torch.no_grad():
        face_a, mask_a = model(x, 0)
        face_b, mask_b = model(x, 1)
    assert face_a.shape == face_b.shape == (2, 3, size_out, size_out)
    assert float(face_a.min()) >= 0.0 and float(face_a.max()) <= 1.0
    if has_mask:
        assert mask_a.shape == (2, 1, size_out, size_out)
    else:
        assert mask_a is None and mask_b is None
    # one shared encoding, two identities: the decoders (IAE: intermediates) differ
    assert not torch.allclose(face_a, face_b)


def test_shared_encoder_and_per_identity_parts():
    torch.manual_seed(0)
    model = gen.build_generator("faceswap", size=64, width_div=32)
    assert len(model.decoders) == 2
    iae = gen.build_generator("iae", size=64, width_div=32)
    assert len(iae.decoders) == 1 and len(iae.inter) == 3  # inter_a, inter_b, inter_both
    # the encoder's gradient flows from both sides' reconstructions
    x = torch.rand(1, 3, 64, 64)
    (model(x, 0)[0].mean() + model(x, 1)[0].mean()).backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is not None for d in model.decoders for p in d.parameters())


def test_lightweight_has_the_shallower_encoder():
    light = gen.build_generator("lightweight", size=64, width_div=32)
    swap = gen.build_generator("faceswap", size=64, width_div=32)
    assert len(light.encoder.convs) == 3 and len(swap.encoder.convs) == 4


@pytest.mark.parametrize("name", gen.SYNTHETIC)
def test_synthetic_architectures_upsample_as_named(name):
    model = gen.build_generator(name, size=32, width_div=32).eval()
    depth, up = int(name[-1]), name.removeprefix("syn_")[:-1]
    assert (model.input_size, model.output_size) == (32, 32 if depth == 3 else 64)
    with torch.no_grad():
        face, mask = model(torch.rand(1, 3, 32, 32), 1)
    assert face.shape == (1, 3, model.output_size, model.output_size) and mask is None
    kinds = {type(m) for m in model.decoders[0].modules()}
    wanted = {"shuffle": torch.nn.PixelShuffle, "transpose": torch.nn.ConvTranspose2d}
    assert wanted.get(up, torch.nn.Upsample) in kinds
    assert all(k not in kinds for u, k in wanted.items() if u != up)
    resizes = [m.mode for m in model.decoders[0].modules() if isinstance(m, torch.nn.Upsample)]
    assert resizes == ([up] * depth if up in ("nearest", "bilinear") else [])
    assert not set(gen.SYNTHETIC) & set(gen.GENERATORS)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown generator"):
        gen.build_generator("nope")
    with pytest.raises(ValueError, match="multiple of 16"):
        gen.build_generator("faceswap", size=40)
    model = gen.build_generator("faceswap", size=64, width_div=32)
    with pytest.raises(ValueError, match="side"):
        model(torch.rand(1, 3, 64, 64), 2)
    with pytest.raises(ValueError, match="64x64"):
        model(torch.rand(1, 3, 32, 32), 0)


@pytest.fixture(scope="module")
def build_dataset():
    """benchmarks/realistic/build_dataset.py (imported with benchmarks/ on the path)."""
    sys.path.insert(0, str(PATH.parent.parent))
    try:
        from realistic import build_dataset
    finally:
        sys.path.remove(str(PATH.parent.parent))
    return build_dataset


def test_pairs_are_distinct_and_disjoint_first(build_dataset):
    choose_pairs = build_dataset.choose_pairs
    ids = [f"id{i}" for i in range(9)]
    pairs = choose_pairs(ids, 4, seed=0)
    flat = [i for p in pairs for i in p]
    assert len(set(flat)) == 8  # four disjoint pairs out of nine identities
    more = choose_pairs(ids, 20, seed=0)
    assert more[:4] == pairs and len({frozenset(p) for p in more}) == 20
    assert choose_pairs(ids, 4, seed=1) != pairs
    with pytest.raises(ValueError, match="make 1 to 36 pairs"):
        choose_pairs(ids, 37, seed=0)


def test_a_build_grows_by_replicas_but_not_under_other_settings(build_dataset):
    same_trainings = build_dataset.same_trainings
    one = {"format": 2, "pairs": 36, "seed": 0}  # a build from before --replicas and --real
    assert same_trainings(one, {**one, "replicas": 2, "real": False})
    assert same_trainings({**one, "replicas": 2, "real": True}, {**one, "replicas": 1})
    assert not same_trainings(one, {**one, "seed": 1})


def test_a_build_may_keep_to_some_identities(build_dataset, tmp_path):
    people = [build_dataset.Identity(f"id{i}", None) for i in range(4)]
    kept = build_dataset.select_identities(people, ["id3", "id1"], tmp_path)
    assert sorted(kept) == ["id1", "id3"] and kept["id1"] is people[1]
    assert len(build_dataset.select_identities(people, None, tmp_path)) == 4
    with pytest.raises(SystemExit, match="id7: no such video in"):
        build_dataset.select_identities(people, ["id1", "id7"], tmp_path)
    args = build_dataset.build_parser().parse_args(
        ["--faces", "f", "--out", "o", "--identities", "id1", "id3", "--generators", "syn_nearest4"]
    )
    settings = build_dataset.settings_of(args, tmp_path)
    assert settings["identities"] == ["id1", "id3"] and settings["generators"] == ["syn_nearest4"]
    plain = build_dataset.settings_of(build_dataset.build_parser().parse_args(["--faces", "f",
                                      "--out", "o"]), tmp_path)  # fmt: skip
    assert "identities" not in plain  # builds made before the option keep their record
