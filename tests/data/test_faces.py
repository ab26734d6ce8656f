"""The face check: videos without a face are refused whatever the detector, in
preprocessing (training, index building) and in queries alike, and demo faces pass."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from attribnet.cli.index import main as index_main
from attribnet.data import preprocess as prep
from attribnet.data.codec import write_video
from attribnet.data.face_check import FaceCheck
from attribnet.data.manifest import ManifestRow, read_manifest
from attribnet.data.sources import preprocess_rows, preprocess_settings
from attribnet.data.video import open_clip_source
from attribnet.errors import NoFaceError, VideoError
from attribnet.query import Attributor
from tests.builders import tiny_recipe, write_checkpoint

FRAMES, H, W = 12, 48, 64  # 4:3 frames: the none detector pads them to a square
NOISE = "no face: frames are blank or noise in 8 of 8 sampled frames (8 noise)"
BLANK = "no face: frames are blank or noise in 8 of 8 sampled frames (8 blank)"


def _noise(seed: int = 0, size: tuple[int, int] = (H, W)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (FRAMES, *size, 3), dtype=np.uint8)


def _solid(colour: tuple[int, int, int] = (200, 150, 120)) -> np.ndarray:
    return np.full((FRAMES, H, W, 3), colour, np.uint8)  # a skin tone, at that


@pytest.fixture(scope="module")
def demo_rows(tiny_demo: Path) -> list[ManifestRow]:
    return read_manifest(tiny_demo)


@pytest.fixture(scope="module")
def bad_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ManifestRow]:
    """A noise video and a solid-colour one, H.264 crf 23."""
    folder = tmp_path_factory.mktemp("no_face")
    rows = {}
    for name, frames in (("noise", _noise()), ("solid", _solid())):
        write_video(folder / f"{name}.mp4", frames, crf=23)
        rows[name] = ManifestRow(str(folder / f"{name}.mp4"), "x", "crf23", name, "test")
    return rows


# --- the check on crops ----------------------------------------------------------------


def test_noise_blank_and_padded_crops_are_no_faces():
    check = FaceCheck()
    small_noise = _noise(size=(32, 32))
    upscaled = np.stack(
        [cv2.resize(f, (128, 128), interpolation=cv2.INTER_LINEAR) for f in small_noise]
    )
    padded = np.zeros((FRAMES, 64, 64, 3), np.uint8)
    padded[:, 16:48] = _solid()[:, :32, :64]  # a solid frame letterboxed in black
    assert set(check.verdicts(_noise(size=(64, 64)))) == {"noise"}
    assert set(check.verdicts(upscaled)) == {"noise"}  # noise at 32 px, cropped at 128
    assert set(check.verdicts(_solid())) == {"blank"}
    assert set(check.verdicts(padded)) == {"blank"}
    assert set(check.verdicts(np.zeros((FRAMES, 32, 32, 3), np.uint8))) == {"blank"}
    with pytest.raises(NoFaceError, match=r"^no face: frames are blank or noise in 8 of 8"):
        check.check(_noise())


@pytest.mark.slow
def test_a_video_fails_when_most_checked_crops_show_no_face(demo_rows):
    check = FaceCheck(frames=4)
    with open_clip_source(demo_rows[0].path) as source:
        faces = source.get_frames(np.arange(8))
    assert set(check.verdicts(faces)) == {"face"}
    half = np.concatenate([faces[:4], _noise(size=faces.shape[1:3])[:4]])
    check.check(half)  # crops 0, 2 of 4 checked are faces: half is enough
    most = np.concatenate([faces[:2], _noise(size=faces.shape[1:3])[:6]])
    with pytest.raises(NoFaceError) as err:
        check.check(most)
    assert str(err.value) == "no face: frames are blank or noise in 3 of 4 sampled frames (3 noise)"
    sky = np.zeros((8, *faces.shape[1:3], 3), np.uint8)
    sky[..., 2] = np.linspace(60, 250, faces.shape[2], dtype=np.uint8)  # structure, no skin
    with pytest.raises(NoFaceError, match=r"^no face found in 4 of 4 sampled frames$"):
        check.check(sky)


# --- in preprocessing, whatever the detector -------------------------------------------


@pytest.mark.parametrize("detector", ["none", "centre", "haar"])
def test_noise_and_solid_colour_videos_are_refused_with_the_reason(bad_rows, tmp_path, detector):
    rows = list(bad_rows.values())
    cache, report = prep.run_preprocess(
        rows, tmp_path / "cache", detector=detector, size=32, max_frames=16, progress=False
    )
    assert cache.entries == [] and report["done"] == 0 and report["failed"] == {}
    skipped = {Path(p).stem: reason for p, reason in report["skipped"].items()}
    assert sorted(skipped) == ["noise", "solid"]
    if detector == "haar":  # the detector refuses them (before the check)
        assert all(r.startswith("no face: ") for r in skipped.values())
    else:
        assert skipped == {"noise": NOISE, "solid": BLANK}
    on_disk = [json.loads(line) for line in (tmp_path / "cache/skipped.jsonl").open()]
    assert {Path(r["path"]).stem: r["reason"] for r in on_disk} == skipped


@pytest.mark.slow
@pytest.mark.parametrize("detector", ["none", "centre"])
def test_the_demo_videos_pass(demo_rows, tmp_path, detector):
    _, report = prep.run_preprocess(
        demo_rows, tmp_path / "cache", detector=detector, size=32, max_frames=16, progress=False
    )
    assert report["done"] == len(demo_rows) == 60 and report["skipped"] == {}


def test_the_check_can_be_turned_off(bad_rows, tmp_path):
    cache, report = prep.run_preprocess(
        list(bad_rows.values()), tmp_path / "cache", detector="none", size=32,
        progress=False, face_check=False,
    )  # fmt: skip
    assert report["done"] == 2 and cache.settings["face_check"] is False


def test_training_and_queries_preprocess_with_the_recipes_face_check(bad_rows, tmp_path):
    recipe = tiny_recipe(tmp_path / "cache", num_frames=4, size=32, embedding_dim=8)
    assert preprocess_settings(recipe)["face_check"] is False  # textures in tests
    checked = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, face_check=True))
    assert preprocess_settings(checked) == {
        "detector": "none", "size": 32, "margin": 0.3, "max_frames": 16, "face_check": True
    }  # fmt: skip
    cache = preprocess_rows([bad_rows["noise"]], tmp_path / "checked", checked)
    assert cache.skipped == {bad_rows["noise"].path: NOISE}
    assert len(preprocess_rows([bad_rows["noise"]], tmp_path / "unchecked", recipe).entries) == 1


# --- in queries -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_query_of_a_noise_video_fails_with_the_reason(tiny_demo, demo_rows, bad_rows, tmp_path):
    """An index of the demo built with the face check; a query of noise is refused."""
    recipe = tiny_recipe(tmp_path / "cache", tiny_demo, num_frames=4, size=32, embedding_dim=8)
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, face_check=True))
    names = sorted({r.label for r in demo_rows})
    checkpoint = write_checkpoint(tmp_path / "run/best.pt", recipe, names, seed=0)
    argv = ["build", "--checkpoint", str(checkpoint), "--manifest", str(tiny_demo)]
    assert index_main([*argv, "--out", str(tmp_path / "index")]) == 0
    attributor = Attributor.load(tmp_path / "index")
    demo_video = demo_rows[-1].path
    noise, ok = attributor.attribute([bad_rows["noise"].path, demo_video])
    assert noise.to_dict()["status"] == "failed" and noise.reason == NOISE
    assert ok.ok and ok.verdict
    with pytest.raises(VideoError, match=re.escape(f"solid.mp4: {BLANK}")):
        attributor.attribute(bad_rows["solid"].path)
