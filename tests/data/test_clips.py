"""ClipDataset on a tiny face cache whose pixel values encode video and frame numbers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from attribnet.config import load_recipe
from attribnet.data.augment import ClipAugment, CompressionAugment, Normalize
from attribnet.data.cache import FaceCache
from attribnet.data.clips import ClipDataset, select_entries
from attribnet.data.manifest import ManifestRow
from attribnet.data.sampling import clip_indices, sample_indices
from attribnet.data.synthetic import generate_demo
from attribnet.errors import DataError
from attribnet.training.data import prepare_data
from tests.builders import REPO, tiny_overrides

CLASSES = ["dfl", "iae", "liae"]
SIZE = 32
RAW = Normalize(mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255))
"""Normalisation that leaves pixel values as they are (0..255 floats)."""


def coded_video(video: int, num_frames: int, seed: int) -> np.ndarray:
    """uint8 (N, SIZE, SIZE, 3): red = frame number, green = video number, blue = texture."""
    frames = np.zeros((num_frames, SIZE, SIZE, 3), np.uint8)
    frames[..., 0] = np.arange(num_frames, dtype=np.uint8)[:, None, None]
    frames[..., 1] = video
    texture = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    frames[..., 2] = texture
    return frames


def frames_of(clip: torch.Tensor) -> list[int]:
    """Frame numbers of a RAW-normalised (T, 3, H, W) clip read from the red channel."""
    return [int(v) for v in clip[:, 0].mean(dim=(1, 2)).round().tolist()]


@pytest.fixture
def cache(tmp_path: Path) -> FaceCache:
    """Six videos: two per class, 20 frames (the last of each class has 3, too few for T=4)."""
    cache = FaceCache(tmp_path / "cache", settings={"size": SIZE})
    video = 0
    for label in CLASSES:
        for j, (quality, split) in enumerate([("crf0", "train"), ("crf23", "val")]):
            row = ManifestRow(f"/data/{quality}/{label}/{j}.mp4", label, quality, str(j), split)
            length = 3 if (label == "liae" and j == 1) else 20
            cache.add(row, coded_video(video, length, seed=video))
            video += 1
    return cache


def train_dataset(cache: FaceCache, **kwargs) -> ClipDataset:
    options = {
        "num_frames": 4,
        "spatial": ClipAugment(24, hflip=0.5, crop_scale=(0.5, 1.0), color_jitter=0.2),
        "compression": CompressionAugment(h264_p=0.5, crf_choices=(10, 23), jpeg_p=0.5),
        "seed": 7,
    }
    options.update(kwargs)
    return ClipDataset(cache, select_entries(cache, split="train"), CLASSES, **options)


def test_loader_yields_finite_batches(cache: FaceCache) -> None:
    dataset = train_dataset(cache)
    batches = list(DataLoader(dataset, batch_size=2, num_workers=0))
    assert len(batches) == 2
    batch = batches[0]
    assert batch["clip"].shape == (2, 4, 3, 24, 24)
    assert batch["clip"].dtype == torch.float32
    assert torch.isfinite(batch["clip"]).all()
    assert batch["label"].dtype == torch.int64
    labels = torch.cat([b["label"] for b in batches])
    assert labels.tolist() == [0, 1, 2]
    assert torch.cat([b["index"] for b in batches]).tolist() == [0, 1, 2]


def test_items_repeat_within_an_epoch_and_change_between_epochs(cache: FaceCache) -> None:
    dataset = train_dataset(cache)
    dataset.set_epoch(3)
    first = dataset[1]["clip"]
    torch.testing.assert_close(dataset[1]["clip"], first, rtol=0, atol=0)
    other = train_dataset(cache)
    other.set_epoch(3)
    torch.testing.assert_close(other[1]["clip"], first, rtol=0, atol=0)
    dataset.set_epoch(4)
    assert not torch.equal(dataset[1]["clip"], first)
    assert not torch.equal(train_dataset(cache, seed=8)[1]["clip"], train_dataset(cache)[1]["clip"])


def test_worker_count_does_not_change_items(cache: FaceCache) -> None:
    def epoch_clips(num_workers: int) -> torch.Tensor:
        dataset = train_dataset(cache)
        dataset.set_epoch(2)
        loader = DataLoader(dataset, batch_size=1, num_workers=num_workers)
        return torch.cat([b["clip"] for b in loader])

    torch.testing.assert_close(epoch_clips(2), epoch_clips(0), rtol=0, atol=0)


def test_periodic_sampling_reads_the_right_frames(cache: FaceCache) -> None:
    dataset = ClipDataset(cache, cache.entries, CLASSES, num_frames=4, normalize=RAW)
    item = dataset[0]
    assert item["clip"].shape == (4, 3, SIZE, SIZE)
    assert frames_of(item["clip"]) == [2, 7, 12, 17]
    np.testing.assert_array_equal(dataset.frame_indices(0), [2, 7, 12, 17])
    video = cache.load(dataset.entries[3])
    expected = torch.from_numpy(np.array(video[[2, 7, 12, 17]])).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(dataset[3]["clip"], expected, rtol=0, atol=1e-3)


def test_random_segment_is_consecutive_and_varies(cache: FaceCache) -> None:
    dataset = ClipDataset(
        cache, cache.entries, CLASSES, num_frames=4, sampling="random_segment", normalize=RAW
    )
    starts = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        frames = frames_of(dataset[0]["clip"])
        assert frames == list(range(frames[0], frames[0] + 4))
        starts.add(frames[0])
    assert len(starts) > 1


def test_clips_per_video_covers_the_video(cache: FaceCache) -> None:
    entries = select_entries(cache, split="train")
    dataset = ClipDataset(cache, entries, CLASSES, num_frames=4, normalize=RAW, clips_per_video=2)
    assert len(dataset) == 6
    assert frames_of(dataset[0]["clip"]) == [1, 6, 11, 16]  # training's stride 20 / 4
    assert frames_of(dataset[1]["clip"]) == [3, 8, 13, 18]  # shifted by half a stride
    assert dataset.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert dataset.video_indices.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(clip_indices(5, 4, 3), [[0, 1, 2, 3], [0, 1, 3, 4], [1, 2, 3, 4]])
    np.testing.assert_array_equal(clip_indices(20, 4, 1)[0], sample_indices(20, 4, "periodic"))


def test_short_videos_are_dropped_with_a_warning(
    cache: FaceCache, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="attribnet.data.clips"):
        dataset = ClipDataset(cache, cache.entries, CLASSES, num_frames=4, normalize=RAW)
    assert len(dataset) == 5
    assert [e.row.path for e, _ in dataset.excluded] == ["/data/crf23/liae/1.mp4"]
    assert "dropping 1 short video" in caplog.text and "liae/1.mp4" in caplog.text
    assert len(ClipDataset(cache, cache.entries, CLASSES, num_frames=3)) == 6
    short = select_entries(cache, split="val", labels="liae")
    with pytest.raises(DataError, match="frames a clip needs"):
        ClipDataset(cache, short, CLASSES, num_frames=4)


def test_resize_to_image_size_without_augmentation(cache: FaceCache) -> None:
    dataset = ClipDataset(cache, cache.entries[:1], CLASSES, num_frames=2, image_size=16)
    assert dataset[0]["clip"].shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="differs"):
        ClipDataset(cache, cache.entries, CLASSES, spatial=ClipAugment(24), image_size=16)


def test_resize_then_centre_crop(cache: FaceCache) -> None:
    """data.resize: frames resized to 40 x 40, then the centre 24 x 24 (also frames that
    already have the output size); an augmentation must carry the same resize and then
    augments that crop."""
    entry = cache.entries[0]
    read = ClipDataset(cache, [entry], CLASSES, num_frames=2).frame_indices(0)
    resized = ClipAugment(40, hflip=0.0, crop_scale=None)(np.array(cache.load(entry)[read]))
    expected = resized[:, 8:32, 8:32]

    def frames(**kwargs) -> np.ndarray:
        dataset = ClipDataset(cache, [entry], CLASSES, num_frames=2, normalize=RAW, **kwargs)
        return dataset[0]["clip"].permute(0, 2, 3, 1).numpy()

    np.testing.assert_array_equal(frames(image_size=24, resize=40), expected)
    flip = ClipAugment(24, hflip=1.0, crop_scale=None, resize=40)
    np.testing.assert_array_equal(frames(spatial=flip, resize=40), expected[:, :, ::-1])
    same_size = frames(image_size=SIZE, resize=40)
    assert same_size.shape == (2, SIZE, SIZE, 3)
    assert not np.array_equal(same_size, frames(image_size=SIZE))
    with pytest.raises(ValueError, match="resize"):
        ClipDataset(cache, [entry], CLASSES, spatial=ClipAugment(24), image_size=24, resize=40)


def test_select_entries_filters(cache: FaceCache) -> None:
    assert len(select_entries(cache)) == 6
    assert len(select_entries(cache, split="val")) == 3
    assert len(select_entries(cache, qualities=["crf0"])) == 3
    assert [e.row.label for e in select_entries(cache, labels=["iae", "liae"], split="train")] == [
        "iae",
        "liae",
    ]
    assert select_entries(cache, split="test") == []


def test_labels_follow_class_names_and_unknown_labels_fail(cache: FaceCache) -> None:
    reordered = ["liae", "iae", "dfl"]
    dataset = ClipDataset(cache, select_entries(cache, split="train"), reordered, num_frames=4)
    assert dataset.labels.dtype == np.int64
    assert dataset.labels.tolist() == [2, 1, 0]
    assert [dataset[i]["label"] for i in range(3)] == [2, 1, 0]
    with pytest.raises(DataError, match="not in class_names"):
        ClipDataset(cache, cache.entries, ["dfl", "iae"], num_frames=4)


@pytest.mark.slow
def test_faces_cached_at_cache_size_and_cropped_on_their_own_grid(tmp_path: Path) -> None:
    """data.cache_size 32 = the frames' side (detector none): the cache keeps the video's
    pixels; training crops random 24 px windows of them, validation the centre one."""
    manifest = generate_demo(tmp_path / "demo", num_sources=6, num_frames=8, size=32,
                             qualities=(0,))  # fmt: skip
    sets = tiny_overrides(manifest, tmp_path, **{
        "data.image_size": 24, "data.cache_size": 32, "data.resize": 32,
        "data.augment.random_crop": True, "data.augment.hflip": 0.0,
        "data.augment.crop_scale": [1.0, 1.0], "data.augment.h264_p": 0.0,
        "data.mean": [0, 0, 0], "data.std": [1 / 255] * 3,
    })  # fmt: skip
    data = prepare_data(load_recipe(REPO / "recipes/demo.yaml", sets))
    cache = FaceCache(manifest.parent / "cache")
    assert cache.settings["size"] == 32

    def window(dataset: ClipDataset, index: int, epoch: int) -> tuple[int, int] | None:
        """The one place every frame of the item's clip sits in a cached frame, unresampled."""
        dataset.set_epoch(epoch)
        video = np.array(cache.load(dataset.entries[index]))
        clip = dataset[index]["clip"].round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for y in range(9):
            for x in range(9):
                windows = video[:, y : y + 24, x : x + 24]
                if all(any(np.array_equal(f, w) for w in windows) for f in clip):
                    return y, x
        return None

    assert {window(data.val, i, 0) for i in range(len(data.val))} == {(4, 4)}
    places = {window(data.train, 0, epoch) for epoch in range(8)}
    assert None not in places and len(places) > 3
