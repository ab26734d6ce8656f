"""H.264 variants made once (data.augment.h264_cache): a drawn variant is that clip encoded
at that crf, the draws are the augmentation's, and making them is resumable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from attribnet.config import load_recipe
from attribnet.data.augment import ClipAugment, CompressionAugment
from attribnet.data.cache import FaceCache
from attribnet.data.clips import ClipDataset, select_entries
from attribnet.data.codec import h264_roundtrip
from attribnet.data.h264_variants import H264Variants
from attribnet.data.manifest import ManifestRow
from attribnet.errors import ConfigError
from attribnet.training.data import prepare_data
from tests.builders import REPO, tiny_overrides
from tests.data.test_clips import CLASSES, RAW, SIZE, coded_video

CRFS = (0, 23)


@pytest.fixture
def cache(tmp_path: Path) -> FaceCache:
    """Six training videos of 12 frames, two per class."""
    cache = FaceCache(tmp_path / "cache", settings={"size": SIZE})
    for video, label in enumerate(CLASSES * 2):
        row = ManifestRow(f"/data/{label}/{video}.mp4", label, "crf0", str(video), "train")
        cache.add(row, coded_video(video, 12, seed=video))
    return cache


def dataset(cache: FaceCache, cached: bool, **kwargs) -> ClipDataset:
    options = {
        "num_frames": 4,
        "compression": CompressionAugment(h264_p=0.5, crf_choices=CRFS, jpeg_p=0.5),
        "spatial": ClipAugment(24, hflip=0.5, crop_scale=(0.5, 1.0)),
        "seed": 3,
        "variants": H264Variants(cache, CRFS) if cached else None,
    }
    options.update(kwargs)
    return ClipDataset(cache, select_entries(cache, split="train"), CLASSES, **options)


def test_a_drawn_variant_is_that_clip_encoded_at_that_crf(cache: FaceCache) -> None:
    always = CompressionAugment(h264_p=1.0, crf_choices=CRFS)
    data = dataset(cache, True, compression=always, spatial=None, normalize=RAW)
    drawn = set()
    for epoch in range(3):
        data.set_epoch(epoch)
        for i in range(len(data)):
            sample_rng, compression_rng, _ = data.item_rngs(i)
            crf = always.draw(compression_rng).crf
            video = np.array(cache.load(data.entries[i]))
            expected = h264_roundtrip(video, crf)[data.frame_indices(i, sample_rng)]
            assert torch.equal(data[i]["clip"], RAW(expected))
            drawn.add(crf)
    assert drawn == set(CRFS)


def test_the_same_draws_as_encoding_each_clip_and_reproducible(cache: FaceCache) -> None:
    encoded, cached = dataset(cache, False), dataset(cache, True)
    same = 0
    for epoch in range(4):
        encoded.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(cached)):
            if cached.compression.draw(cached.item_rngs(i)[1]).crf is None:
                assert torch.equal(cached[i]["clip"], encoded[i]["clip"])  # JPEG, crop, flip
                same += 1
    assert 0 < same < 4 * len(cached)

    def epoch_clips(epoch: int, workers: int) -> torch.Tensor:
        fresh = dataset(cache, True)
        fresh.set_epoch(epoch)
        return torch.cat([b["clip"] for b in DataLoader(fresh, num_workers=workers)])

    assert torch.equal(epoch_clips(1, 2), epoch_clips(1, 0))
    assert not torch.equal(epoch_clips(1, 0), epoch_clips(2, 0))


def test_made_once_resumable_and_renewed_for_a_new_crop(cache: FaceCache) -> None:
    variants = H264Variants(cache, CRFS)
    entries = select_entries(cache, split="train")
    assert variants.make(entries, progress=False) == len(entries) * len(CRFS)
    assert variants.make(entries, progress=False) == 0
    lost = variants.path(entries[0], 23)
    kept = variants.path(entries[1], 0)
    before = kept.stat().st_mtime_ns
    lost.unlink()
    assert variants.make(entries, progress=False) == 1 and lost.exists()
    assert kept.stat().st_mtime_ns == before
    recropped = replace(entries[0], stamp=(1, 2))  # its video changed and was cropped again
    assert variants.path(recropped, 23) != lost
    assert variants.make([recropped], progress=False) == len(CRFS)
    assert not lost.exists() and variants.path(recropped, 23).exists()


def test_training_data_makes_the_variants_before_training(tmp_path: Path) -> None:
    from attribnet.data.synthetic import generate_demo

    manifest = generate_demo(tmp_path / "demo", num_sources=6, num_frames=8, size=32,
                             qualities=(0,))  # fmt: skip
    cached = {"data.augment.h264_p": 0.5, "data.augment.h264_cache": True,
              "data.augment.h264_crf": [10, 23]}  # fmt: skip
    sets = tiny_overrides(manifest, tmp_path, **cached)
    data = prepare_data(load_recipe(REPO / "recipes/demo.yaml", sets))
    variants = data.train.variants
    assert variants is not None and variants.crfs == (10, 23)
    assert all(variants.path(e, c).exists() for e in data.train.entries for c in (10, 23))
    assert data.val is not None and data.val.variants is None


def test_a_recipe_caching_h264_needs_h264_augmentation(tmp_path: Path) -> None:
    sets = ["data.augment.h264_cache=true", "data.augment.h264_p=0.0"]
    with pytest.raises(ConfigError, match="h264_cache in .*needs data.augment.h264_p > 0"):
        load_recipe(REPO / "recipes/demo.yaml", sets)
