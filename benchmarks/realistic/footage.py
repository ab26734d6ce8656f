"""Real footage: each identity's video cut into segments of tracked, head-centred frames.

A segment is ``length`` consecutive frames; ``segments`` of them are spread evenly over the
video without overlap. The face is followed with attribnet's Haar detector and tracker
(:func:`attribnet.data.faces.track_face`, per segment), and every frame is cropped to a
square of ``context`` times the tracked face box around it (:func:`crop_square`),
resized to ``frame_px``. So in every output frame the face box is the centred square of
side ``frame_px / context`` (:func:`face_region`): that is where a generator's face goes.

Crops are kept in ``<work>/footage/<id>.npy`` (uint8, segments x length x frame_px^2 x 3)
with the settings in a sidecar, so a re-run does not decode and detect again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from attribnet.data.faces import FaceDetector, HaarDetector, crop_square, track_face
from attribnet.data.video import open_clip_source
from attribnet.files.atomic import atomic_path, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FootageSettings:
    segments: int = 6
    length: int = 32
    frame_px: int = 192
    context: float = 1.5
    detect_every: int = 2


@dataclass
class Identity:
    """One person's footage: ``frames`` uint8 (segments, length, P, P, 3)."""

    id: str
    frames: np.ndarray

    def segment_id(self, k: int) -> str:
        return f"{self.id}_seg{k}"


def face_region(frame_px: int, context: float) -> tuple[int, int]:
    """(offset, side) of the face box inside a ``frame_px`` context frame."""
    side = int(round(frame_px / context))
    return (frame_px - side) // 2, side


def list_videos(faces_dir: Path) -> list[tuple[str, Path]]:
    """(id, path) of the footage folder's videos, sorted by id; ids from manifest.json
    when it names them, else file stems."""
    manifest = faces_dir / "manifest.json"
    if manifest.is_file():
        records = json.loads(manifest.read_text())
        videos = [(str(r["id"]), faces_dir / str(r["file"])) for r in records]
    else:
        videos = [(p.stem, p) for p in faces_dir.glob("*.mp4")]
    videos = sorted((i, p) for i, p in videos if p.is_file())
    if not videos:
        raise FileNotFoundError(f"no .mp4 videos in {faces_dir}")
    return videos


def segment_starts(num_frames: int, segments: int, length: int) -> list[int]:
    """First frame of each of ``segments`` non-overlapping runs of ``length`` frames,
    spread evenly over ``num_frames``."""
    if segments * length > num_frames:
        raise ValueError(
            f"{segments} segments of {length} frames need {segments * length} frames, the "
            f"video has {num_frames}"
        )
    return [int(s) for s in np.round(np.linspace(0, num_frames - length, segments))]


def crop_video(path: Path, settings: FootageSettings, detector: FaceDetector) -> np.ndarray:
    """(segments, length, P, P, 3) uint8 head-centred crops of one video. Where the
    context square leaves the frame, the frame is padded black (letterboxed)."""
    s = settings
    with open_clip_source(path, backend="pyav", timeout_s=None) as source:
        starts = segment_starts(len(source), s.segments, s.length)
        index = np.concatenate([np.arange(a, a + s.length) for a in starts])
        frames = source.get_frames(index)
    frames = frames.reshape(s.segments, s.length, *frames.shape[1:])
    out = np.empty((s.segments, s.length, s.frame_px, s.frame_px, 3), np.uint8)
    for k, segment in enumerate(frames):
        track = track_face(segment, detector, detect_every=s.detect_every)
        pad = int(np.ceil(track[:, 2].max() * s.context / 2))
        for t, (frame, (cx, cy, side)) in enumerate(zip(segment, track, strict=True)):
            padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            out[k, t] = crop_square(padded, cx + pad, cy + pad, side * s.context, s.frame_px)
    return out


def load_identities(faces_dir: Path, work_dir: Path, settings: FootageSettings) -> list[Identity]:
    """Every identity's cropped footage, from ``work_dir/footage`` when already made with
    these settings, else decoded, tracked and cropped now."""
    detector = HaarDetector()
    folder = work_dir / "footage"
    identities = []
    for vid, path in list_videos(faces_dir):
        npy, meta = folder / f"{vid}.npy", folder / f"{vid}.json"
        wanted = {"source": str(path.resolve()), **asdict(settings)}
        if npy.is_file() and meta.is_file() and json.loads(meta.read_text()) == wanted:
            frames = np.load(npy)
        else:
            log.info("cropping %s", path.name)
            frames = crop_video(path, settings, detector)
            with atomic_path(npy) as tmp:
                np.save(tmp, frames)
            write_json(meta, wanted)
        identities.append(Identity(vid, frames))
    return identities
