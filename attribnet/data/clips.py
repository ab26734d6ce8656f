"""The clip dataset: T frames of a cached face video, augmented, as a float tensor.

Per item: sample frame indices -> read them from the memory-mapped cache (a copy) ->
compression augmentation (or the frames of an H.264 variant made once) -> spatial
augmentation (or a plain resize) -> normalisation.

Every random draw of an item comes from a generator seeded by (seed, epoch, index), so an
item is the same whatever the number of DataLoader workers and changes between epochs
(call :meth:`ClipDataset.set_epoch` before each epoch).

Outlier exposure: videos whose label is in ``outlier_labels`` (none of the known
generators) get :data:`OUTLIER_LABEL` (-1) instead of a class id; training uses them only.

Pretext task (``pretext``, :mod:`attribnet.data.pretext`): an item's label is a
transformation class drawn from its own generator (:meth:`ClipDataset.pretext_rng`), not
its video's label, and its frames go through that transformation at the output size,
before normalisation.

Short videos: a video with fewer frames than a clip needs is dropped when the dataset is
built, with one warning naming the dropped videos; :attr:`ClipDataset.excluded` lists them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from attribnet.data.augment import ClipAugment, CompressionAugment, Normalize
from attribnet.data.cache import CacheEntry, FaceCache
from attribnet.data.h264_variants import H264Variants
from attribnet.data.pretext import TransformationPretext
from attribnet.data.sampling import MODES, clip_indices, sample_indices
from attribnet.errors import DataError

log = logging.getLogger(__name__)

OUTLIER_LABEL = -1


def select_entries(
    cache: FaceCache,
    split: str | None = None,
    qualities: str | Iterable[str] | None = None,
    labels: str | Iterable[str] | None = None,
) -> list[CacheEntry]:
    """The cache's entries (in cache order) whose row matches every filter given.

    ``None`` means no filter; ``qualities`` and ``labels`` take one value or several.
    """

    def wanted(values: str | Iterable[str] | None) -> set[str] | None:
        if values is None:
            return None
        return {values} if isinstance(values, str) else set(values)

    quality_set, label_set = wanted(qualities), wanted(labels)
    return [
        e
        for e in cache.entries
        if (split is None or e.row.split == split)
        and (quality_set is None or e.row.quality in quality_set)
        and (label_set is None or e.row.label in label_set)
    ]


class ClipDataset(Dataset):
    """Clips of T frames from cached face videos, labelled with generator ids.

    Items are dicts ``{"clip": float32 (T, 3, H, W), "label": int, "index": int}``; the
    label is the row's position in ``class_names``, or :data:`OUTLIER_LABEL` for a row whose
    label is in ``outlier_labels``. With ``clips_per_video = k > 1`` (periodic
    sampling only) each video gives k items, the phase-shifted periodic clips of
    :func:`attribnet.data.sampling.clip_indices` (training's frame stride, interleaved),
    for evaluation over the whole video.

    Frames come out ``spatial.size`` when ``spatial`` is given, else ``image_size`` (frames
    of another size are resized), else the cache's size. ``resize`` > 0 (``data.resize``):
    without ``spatial``, frames are resized to ``resize`` x ``resize`` and centre-cropped to
    ``image_size``; a ``spatial`` augmentation must carry the same ``resize`` (it then
    augments that crop). ``normalize`` defaults to ImageNet statistics.

    ``variants`` (``data.augment.h264_cache``): a clip whose compression draw says H.264 at
    crf c reads its frames from the cached video's variant at crf c
    (:class:`~attribnet.data.h264_variants.H264Variants`) instead of re-encoding them; the
    draws are the same, and JPEG still follows.

    ``pretext``: items are labelled with a transformation class instead (``class_names``
    must be the pretext's names; the videos' labels are not read).

    Raises DataError when a label is in neither ``class_names`` nor ``outlier_labels``, or
    no video is long enough; ValueError for inconsistent arguments (a label in both).
    """

    def __init__(
        self,
        cache: FaceCache,
        entries: Sequence[CacheEntry],
        class_names: Sequence[str],
        num_frames: int = 10,
        sampling: str = "periodic",
        spatial: ClipAugment | None = None,
        compression: CompressionAugment | None = None,
        normalize: Normalize | None = None,
        image_size: int | None = None,
        seed: int = 0,
        clips_per_video: int = 1,
        outlier_labels: Sequence[str] = (),
        resize: int = 0,
        variants: H264Variants | None = None,
        pretext: TransformationPretext | None = None,
    ):
        _check_arguments(num_frames, sampling, seed, clips_per_video)
        if pretext is not None and (list(class_names) != pretext.names or outlier_labels):
            raise ValueError("a pretext task's class_names are its names, with no outliers")
        self.pretext = pretext
        both = sorted(set(outlier_labels) & set(class_names))
        if both:
            raise ValueError(f"labels {both} are both class names and outlier labels")
        self.cache = cache
        self.class_names = list(class_names)
        self.num_frames, self.sampling = num_frames, sampling
        self.clips_per_video, self.seed = clips_per_video, seed
        self.compression = compression if compression is not None and compression.active else None
        self.variants = variants if self.compression is not None else None
        self.spatial = spatial
        self._resize = _resize_for(spatial, image_size, resize)
        self.normalize = normalize if normalize is not None else Normalize()
        self.epoch = 0
        self.entries, self.excluded = self._usable(entries)
        self.outlier_labels = list(outlier_labels)
        self._label_of = {name: i for i, name in enumerate(self.class_names)}
        self._label_of.update({name: OUTLIER_LABEL for name in self.outlier_labels})
        self._check_labels()
        # the generator trainings of the videos (manifest column instance), for the
        # instance adversary; -1 where a row names none
        self.instance_names = sorted({e.row.instance for e in self.entries if e.row.instance})
        self._instance_of = {name: i for i, name in enumerate(self.instance_names)}

    def _usable(
        self, entries: Sequence[CacheEntry]
    ) -> tuple[list[CacheEntry], list[tuple[CacheEntry, str]]]:
        needed = 1 if self.sampling == "all" else self.num_frames
        kept = [e for e in entries if e.num_frames >= needed]
        excluded = [
            (e, f"{e.num_frames} frames, fewer than {needed}")
            for e in entries
            if e.num_frames < needed
        ]
        if excluded:
            shown = ", ".join(f"{e.row.path} ({why})" for e, why in excluded[:5])
            more = f" and {len(excluded) - 5} more" if len(excluded) > 5 else ""
            log.warning("dropping %d short video(s): %s%s", len(excluded), shown, more)
        if entries and not kept:
            raise DataError(f"none of {len(entries)} videos has the {needed} frames a clip needs")
        return kept, excluded

    def _check_labels(self) -> None:
        if self.pretext is not None:
            return
        stray = sorted({e.row.label for e in self.entries} - set(self._label_of))
        if stray:
            outliers = f" or outlier_labels {self.outlier_labels}" if self.outlier_labels else ""
            raise DataError(f"labels {stray} are not in class_names {self.class_names}{outliers}")

    def __len__(self) -> int:
        return len(self.entries) * self.clips_per_video

    def __repr__(self) -> str:
        return (
            f"ClipDataset({len(self.entries)} videos x {self.clips_per_video} clips, "
            f"T={self.num_frames}, sampling={self.sampling!r}, spatial={self.spatial}, "
            f"compression={self.compression}, {self.normalize})"
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the items use (call before each epoch)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    @property
    def labels(self) -> np.ndarray:
        """(len(self),) int64 generator id of every item (for MPerClassSampler etc.);
        :data:`OUTLIER_LABEL` for outlier videos; with a pretext task, this epoch's draws."""
        if self.pretext is not None:
            draws = [self.pretext.draw(self.pretext_rng(i)) for i in range(len(self))]
            return np.array(draws, dtype=np.int64)
        per_video = np.array([self._label_of[e.row.label] for e in self.entries], dtype=np.int64)
        return np.repeat(per_video, self.clips_per_video)

    @property
    def instances(self) -> np.ndarray:
        """(len(self),) int64 id in ``instance_names`` of every item's generator training;
        -1 where its manifest row names none."""
        per_video = [self._instance_of.get(e.row.instance, -1) for e in self.entries]
        return np.repeat(np.array(per_video, dtype=np.int64), self.clips_per_video)

    @property
    def video_indices(self) -> np.ndarray:
        """(len(self),) int64 position in ``self.entries`` of every item's video."""
        return np.repeat(np.arange(len(self.entries), dtype=np.int64), self.clips_per_video)

    def item_rngs(self, index: int) -> list[np.random.Generator]:
        """Independent generators (sampling, compression, spatial) of an item this epoch."""
        children = np.random.SeedSequence([self.seed, self.epoch, index]).spawn(3)
        return [np.random.default_rng(s) for s in children]

    def pretext_rng(self, index: int) -> np.random.Generator:
        """The pretext draws of an item this epoch: a fourth child of the item's seed, so
        the three of :meth:`item_rngs` stay as they are."""
        return np.random.default_rng(
            np.random.SeedSequence([self.seed, self.epoch, index], spawn_key=(3,))
        )

    def frame_indices(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """The frames (increasing ints) that item ``index`` reads from its video."""
        entry = self.entries[index // self.clips_per_video]
        if self.clips_per_video == 1:
            return sample_indices(entry.num_frames, self.num_frames, self.sampling, rng)
        clips = clip_indices(entry.num_frames, self.num_frames, self.clips_per_video)
        return clips[index % self.clips_per_video]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} items")
        entry = self.entries[index // self.clips_per_video]
        sample_rng, compression_rng, spatial_rng = self.item_rngs(index)
        indices = self.frame_indices(index, sample_rng)
        if self.compression is None:
            frames = self._read(entry, indices)
        elif self.variants is None:
            frames = self.compression(self._read(entry, indices), compression_rng)
        else:
            draw = self.compression.draw(compression_rng)
            frames = self._read(entry, indices, draw.crf)
            frames = self.compression.apply(frames, draw, h264=False)
        if self.spatial is not None:
            frames = self.spatial(frames, spatial_rng)
        elif self._resize is not None and self._resize.changes(frames):
            frames = self._resize(frames, spatial_rng)
        if self.pretext is None:
            label = self._label_of[entry.row.label]
        else:
            pretext_rng = self.pretext_rng(index)
            label = self.pretext.draw(pretext_rng)
            frames = self.pretext(frames, label, pretext_rng)
        return {
            "clip": self.normalize(frames),
            "label": label,
            "instance": self._instance_of.get(entry.row.instance, -1),
            "index": index,
        }

    def _read(self, entry: CacheEntry, indices: np.ndarray, crf: int | None = None) -> np.ndarray:
        """uint8 (T, S, S, 3): a copy of the chosen frames of the cached video, or of its
        H.264 variant at ``crf``."""
        if crf is None:
            video = self.cache.load(entry)
        else:
            assert self.variants is not None
            video = self.variants.load(entry, crf)
        if len(video) < entry.num_frames:
            raise DataError(
                f"cache file of {entry.row.path} holds {len(video)} frames, its index says "
                f"{entry.num_frames}; delete the cache entry and re-run preprocess"
            )
        return np.array(video[indices])


def _check_arguments(num_frames: int, sampling: str, seed: int, clips_per_video: int) -> None:
    if sampling not in MODES:
        raise ValueError(f"unknown sampling mode {sampling!r}; use one of {MODES}")
    if num_frames < 1 or clips_per_video < 1:
        raise ValueError(
            f"num_frames and clips_per_video must be >= 1, got {num_frames}, {clips_per_video}"
        )
    if clips_per_video > 1 and sampling != "periodic":
        raise ValueError(f"clips_per_video > 1 needs periodic sampling, got {sampling!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def _resize_for(
    spatial: ClipAugment | None, image_size: int | None, resize: int = 0
) -> ClipAugment | None:
    """A deterministic resize to ``image_size`` (after a resize to ``resize`` and a centre
    crop, when ``resize`` > 0) when no spatial augmentation is given."""
    if spatial is not None:
        if image_size is not None and spatial.size != (image_size, image_size):
            raise ValueError(f"image_size {image_size} differs from spatial.size {spatial.size}")
        if spatial.resize != resize:
            raise ValueError(f"resize {resize} differs from spatial.resize {spatial.resize}")
        return None
    if image_size is None:
        if resize:
            raise ValueError(f"resize {resize} needs an image_size to centre-crop to")
        return None
    return ClipAugment(image_size, hflip=0.0, crop_scale=None, resize=resize)
