"""Face tracking and cropping, detectors, and the resumable preprocess job and CLI."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from attribnet.cli import preprocess as preprocess_cli
from attribnet.data import faces
from attribnet.data import preprocess as prep
from attribnet.data.cache import FaceCache
from attribnet.data.codec import write_video
from attribnet.data.faces import (
    FullFrameDetector,
    HaarDetector,
    build_detector,
    crop_faces,
    crop_square,
    track_face,
)
from attribnet.data.manifest import ManifestRow, read_manifest, write_manifest
from attribnet.errors import ConfigError, DataError, NoFaceError

SIZE, MAX_FRAMES = 32, 8
# the job's mechanics (resume, locks, skips) on texture videos, which show no face
JOB = {"detector": "none", "size": SIZE, "max_frames": MAX_FRAMES, "progress": False,
       "face_check": False}  # fmt: skip

# --- tracking and cropping with a scripted detector -----------------------------------

N, FH, FW = 30, 120, 160
BIG, SMALL = 40.0, 16.0


def _big_centre(t: int) -> tuple[float, float]:
    return 40.0 + 2.4 * t, 60.0


def _box(cx: float, cy: float, side: float) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


class ScriptedDetector:
    """Returns fixed boxes per frame; the frame index is read from pixel (0, 0)."""

    name = "scripted"

    def __init__(self, boxes: dict[int, list[list[float]]]):
        self.boxes = boxes
        self.calls: list[int] = []

    def detect(self, frame_hwc: np.ndarray) -> np.ndarray:
        t = int(frame_hwc[0, 0, 0])
        self.calls.append(t)
        return np.array(self.boxes.get(t, []), np.float32).reshape(-1, 4)


def _scene(jitter: float = 0.0, gap: range = range(12, 17)) -> tuple[np.ndarray, ScriptedDetector]:
    """A white big face moving right, a small face in a corner (listed first), the big
    face undetected in ``gap``, and a larger face far away from frame 20 on."""
    frames = np.zeros((N, FH, FW, 3), np.uint8)
    boxes: dict[int, list[list[float]]] = {}
    for t in range(N):
        cx, cy = _big_centre(t)
        x0, y0, x1, y1 = (int(round(v)) for v in _box(cx, cy, BIG))
        frames[t, y0:y1, x0:x1] = 255
        frames[t, 0, 0, 0] = t
        boxes[t] = [_box(150, 10, SMALL)]
        if t not in gap:
            dx = jitter * (-1) ** t
            boxes[t].append(_box(cx + dx, cy - dx, BIG))
        if t >= 20:
            boxes[t].insert(0, _box(140, 100, 1.5 * BIG))
    return frames, ScriptedDetector(boxes)


def test_track_follows_large_face_through_gap():
    frames, det = _scene()
    track = track_face(frames, det, smooth=1)
    truth = np.array([_big_centre(t) for t in range(N)])
    np.testing.assert_allclose(track[:, :2], truth, atol=1e-4)  # gap filled by interpolation
    np.testing.assert_allclose(track[:, 2], BIG, atol=1e-4)
    crops = crop_faces(frames, det, size=SIZE, margin=0.0, smooth=1)
    assert crops.shape == (N, SIZE, SIZE, 3) and crops.dtype == np.uint8
    assert (crops[:, SIZE // 2, SIZE // 2] == 255).all()  # the big face, in every frame


def test_track_is_smoothed_without_lag():
    frames, det = _scene(jitter=4.0, gap=range(0))
    truth = np.array([_big_centre(t)[0] for t in range(N)])
    raw = track_face(frames, det, smooth=1)[:, 0] - truth
    smooth = track_face(frames, det, smooth=5)[:, 0] - truth
    assert np.abs(raw).max() == pytest.approx(4.0)
    assert np.abs(smooth[2:-2]).max() < 1.0  # alternating +-4 px jitter averaged out
    frames, det = _scene()
    steady = track_face(frames, det, smooth=9)
    np.testing.assert_allclose(steady[:, 0], truth, atol=1e-4)  # linear motion: no lag


def test_detect_every_k_frames():
    frames, det = _scene(gap=range(0))
    track = track_face(frames, det, detect_every=4, smooth=1)
    assert det.calls == [0, 4, 8, 12, 16, 20, 24, 28, 29]
    truth = np.array([_big_centre(t) for t in range(N)])
    np.testing.assert_allclose(track[:, :2], truth, atol=1e-4)


def test_too_few_faces_is_no_face_error():
    frames, _ = _scene()
    det = ScriptedDetector({t: [_box(*_big_centre(t), BIG)] for t in range(21, 30)})
    with pytest.raises(NoFaceError, match="found in 9 of 30"):
        crop_faces(frames, det, min_face_fraction=0.5)
    with pytest.raises(NoFaceError, match="found in 0 of 30"):
        crop_faces(frames, ScriptedDetector({}), min_face_fraction=0.0)
    crops = crop_faces(frames, det, size=SIZE, margin=0.0, min_face_fraction=0.25, smooth=1)
    assert crops.shape[0] == N and (crops[21:, SIZE // 2, SIZE // 2] == 255).all()
    held = track_face(frames, det, min_face_fraction=0.25, smooth=1)
    np.testing.assert_allclose(held[:21, 0], _big_centre(21)[0])  # first box held before


def test_full_frame_detector_crops_whole_frame():
    rng = np.random.default_rng(2)
    square = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    crops = crop_faces(square, FullFrameDetector(), size=SIZE, margin=0.3)
    expected = np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for f in square])
    np.testing.assert_array_equal(crops, expected)  # margin capped at the frame
    wide = rng.integers(1, 255, (2, 40, 80, 3), dtype=np.uint8)
    crops = crop_faces(wide, FullFrameDetector(), size=40)
    assert crops.shape == (2, 40, 40, 3)
    assert (crops[:, :10] == 0).all() and (crops[:, 10:30] > 0).all()  # letterboxed


def test_centre_detector_crops_the_central_face_box():
    frames = np.random.default_rng(4).integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)
    crops = crop_faces(frames, build_detector("centre"), size=64, margin=0.0)
    np.testing.assert_array_equal(crops, frames[:, 16:80, 16:80])  # the central 2/3, as is
    wider = crop_faces(frames, faces.CentreDetector(0.5), size=48, margin=0.0)
    np.testing.assert_array_equal(wider, frames[:, 24:72, 24:72])
    with pytest.raises(ConfigError, match="fraction"):
        faces.CentreDetector(1.5)


def test_crop_square_shifts_inside_the_frame():
    frame = np.random.default_rng(3).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_square(frame, 5, 5, 20, 20), frame[:20, :20])
    np.testing.assert_array_equal(crop_square(frame, 98, 50, 20, 20), frame[40:60, 80:])


# --- detectors ------------------------------------------------------------------------


def test_haar_missing_cascade_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(DataError, match=r"opencv-python-headless<5"):
        HaarDetector(cascade_path=tmp_path / "nope.xml")
    monkeypatch.setattr(faces, "default_cascade_path", lambda: tmp_path / "cv2data" / "x.xml")
    with pytest.raises(DataError, match="OpenCV 5.x wheels ship no cascade"):
        build_detector("haar")
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(DataError, match="bad.xml"):
        HaarDetector(cascade_path=bad)


def test_unknown_detector_name():
    with pytest.raises(ConfigError, match="unknown face detector 'mtcnn'"):
        build_detector("mtcnn")


def _portrait() -> np.ndarray:
    """Grace Hopper's portrait from matplotlib's sample data (RGB), about 180 x 154."""
    cbook = pytest.importorskip("matplotlib.cbook")
    try:
        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    except (OSError, ValueError):
        pytest.skip("matplotlib sample data not installed")
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)


def _portrait_frames(n: int = 12) -> np.ndarray:
    face = _portrait()
    frames = np.full((n, 200, 176, 3), 90, np.uint8)
    for t in range(n):
        frames[t, 10 : 10 + face.shape[0], 2 * t : 2 * t + face.shape[1]] = face
    return frames


def test_haar_finds_a_real_face():
    frame = _portrait_frames(1)[0]
    boxes = HaarDetector().detect(frame)
    assert boxes.shape[1] == 4 and len(boxes) >= 1
    x0, y0, x1, y1 = boxes[0]
    assert 30 < x0 < x1 < 150 and 20 < y0 < y1 < 130  # the face, not the uniform/jacket
    assert len(HaarDetector().detect(np.full((120, 160, 3), 128, np.uint8))) == 0


# --- the preprocess job ---------------------------------------------------------------


def _moving(n: int, seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (w, h))
    return np.stack([np.roll(base, 2 * t, axis=1) for t in range(n)])


def _manifest(tmp_path: Path, videos: dict[str, np.ndarray | bytes]) -> list[ManifestRow]:
    """Write the videos (frames, or raw bytes for a corrupt file) and a CSV manifest."""
    folder = tmp_path / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, content) in enumerate(videos.items()):
        path = folder / f"{name}.mp4"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            write_video(path, content, crf=10)
        rows.append(ManifestRow(str(path), f"gen{i % 2}", "crf10", name, "train"))
    manifest = tmp_path / "manifest.csv"
    write_manifest(rows, manifest)
    return read_manifest(manifest)


@pytest.fixture
def four_videos(tmp_path: Path) -> list[ManifestRow]:
    return _manifest(
        tmp_path,
        {
            "good": _moving(20, 0),
            "short": _moving(3, 1),
            "corrupt": b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500,
            "grey": np.full((12, 48, 64, 3), 128, np.uint8),
        },
    )


def _by_name(cache: FaceCache) -> dict[str, np.ndarray]:
    return {Path(e.row.path).stem: np.asarray(cache.load(e)) for e in cache.entries}


def test_preprocess_detector_none(tmp_path: Path, four_videos: list[ManifestRow]):
    out = tmp_path / "cache"
    cache = prep.preprocess(four_videos, out, **JOB)
    clips = _by_name(cache)
    assert sorted(clips) == ["good", "grey", "short"]
    assert clips["good"].shape == (MAX_FRAMES, SIZE, SIZE, 3)
    assert clips["short"].shape == (3, SIZE, SIZE, 3)  # all frames of a short video
    assert clips["good"].dtype == np.uint8
    report = json.loads((out / "report.json").read_text())
    assert report["done"] == 3 and report["videos"] == 4 and report["failed"] == {}
    ((path, reason),) = report["skipped"].items()
    assert path.endswith("corrupt.mp4") and "cannot open as video" in reason
    assert cache.settings == {
        "size": SIZE, "margin": 0.3, "detector": "none", "max_frames": 8, "face_check": False
    }  # fmt: skip


def test_preprocess_haar(tmp_path: Path, four_videos: list[ManifestRow]):
    rows = _manifest(tmp_path / "more", {"portrait": _portrait_frames()})
    rows += [r for r in four_videos if Path(r.path).stem in ("corrupt", "grey")]
    out = tmp_path / "cache"
    cache = prep.preprocess(
        rows, out, detector="haar", size=SIZE, max_frames=MAX_FRAMES, progress=False
    )
    clips = _by_name(cache)
    assert list(clips) == ["portrait"] and clips["portrait"].shape == (8, SIZE, SIZE, 3)
    assert clips["portrait"].std() > 20  # a face, not the flat background
    skipped = {
        Path(p).stem: r for p, r in json.loads((out / "report.json").read_text())["skipped"].items()
    }
    assert set(skipped) == {"corrupt", "grey"}
    assert skipped["grey"].startswith("no face")


class _CountingOpen:
    """Wraps open_clip_source: records which videos are decoded; "killed" at call n."""

    def __init__(self, open_source: Callable[..., Any], kill_at: int | None = None):
        self.open_source = open_source
        self.kill_at = kill_at
        self.names: list[str] = []

    def __call__(self, path: str, **kwargs: Any) -> Any:
        self.names.append(Path(path).stem)
        if len(self.names) == self.kill_at:
            raise KeyboardInterrupt
        return self.open_source(path, **kwargs)


def test_resume_after_kill(tmp_path: Path, four_videos: list[ManifestRow], monkeypatch):
    settings = JOB
    original = prep.open_clip_source

    def run(out: str, kill_at: int | None = None) -> tuple[list[str], FaceCache | None]:
        counting = _CountingOpen(original, kill_at)
        monkeypatch.setattr(prep, "open_clip_source", counting)
        try:
            return counting.names, prep.preprocess(four_videos, tmp_path / out, **settings)
        except KeyboardInterrupt:
            return counting.names, None

    assert run("resumed", kill_at=3) == (["good", "short", "corrupt"], None)
    names, cache = run("resumed")
    assert names == ["corrupt", "grey"]  # finished videos are not decoded again
    names, whole = run("whole")
    assert names == ["good", "short", "corrupt", "grey"]
    got, want = _by_name(cache), _by_name(whole)
    assert list(got) == list(want) == ["good", "short", "grey"]
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert cache.skipped == whole.skipped and len(whole.skipped) == 1
    assert run("whole")[0] == []  # a finished cache decodes nothing


def test_a_rewritten_video_is_cropped_again(tmp_path: Path, four_videos: list[ManifestRow]):
    settings = JOB
    good = next(r for r in four_videos if Path(r.path).stem == "good")
    first = _by_name(prep.preprocess([good], tmp_path / "cache", **settings))["good"]
    write_video(good.path, _moving(20, 1)[:, ::-1].copy(), crf=10)  # same path, new content

    stale = FaceCache(tmp_path / "cache")
    assert stale.entries == [] and stale.entry_for(good.path) is None
    assert not stale.done(good.path)
    again = _by_name(prep.preprocess([good], tmp_path / "cache", **settings))["good"]
    assert not np.array_equal(again, first)
    reopened = FaceCache(tmp_path / "cache")
    assert len(reopened.entries) == 1 and reopened.done(good.path)
    np.testing.assert_array_equal(np.asarray(reopened.load(reopened.entries[0])), again)


def test_a_skipped_video_is_tried_again_once_its_file_changes(
    tmp_path: Path, four_videos: list[ManifestRow], monkeypatch
):
    settings = JOB
    corrupt = next(r for r in four_videos if Path(r.path).stem == "corrupt")
    assert list(prep.preprocess([corrupt], tmp_path / "cache", **settings).skipped) == [
        corrupt.path
    ]
    counting = _CountingOpen(prep.open_clip_source)
    monkeypatch.setattr(prep, "open_clip_source", counting)
    prep.preprocess([corrupt], tmp_path / "cache", **settings)
    assert counting.names == []  # the same file: still skipped
    write_video(corrupt.path, _moving(10, 2), crf=10)  # the file is fixed
    cache = prep.preprocess([corrupt], tmp_path / "cache", **settings)
    assert counting.names == ["corrupt"]
    assert cache.skipped == {} and cache.entry_for(corrupt.path) is not None
    report = json.loads((tmp_path / "cache" / "report.json").read_text())
    assert report["done"] == 1 and report["skipped"] == {}
    assert FaceCache(tmp_path / "cache").done(corrupt.path)


def test_a_skip_record_without_size_and_mtime_is_tried_again(tmp_path: Path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"broken")
    FaceCache(tmp_path / "cache", {"size": SIZE})
    (tmp_path / "cache" / "skipped.jsonl").write_text(
        json.dumps({"path": str(video), "reason": "cannot open as video"}) + "\n"
    )
    assert not FaceCache(tmp_path / "cache").done(str(video))


def test_two_preprocess_runs_on_one_cache_do_the_work_once(
    tmp_path: Path, four_videos: list[ManifestRow], monkeypatch, caplog
):
    """The second run waits for the first (named in the log), then finds nothing to do."""
    settings = JOB
    counting = _CountingOpen(prep.open_clip_source)

    def slow_open(path: str, **kwargs: Any) -> Any:
        time.sleep(0.1)
        return counting(path, **kwargs)

    monkeypatch.setattr(prep, "open_clip_source", slow_open)
    monkeypatch.setattr(prep, "LOCK_POLL_S", 0.02)
    reports: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(prep.run_preprocess(four_videos, tmp_path / "cache", **settings)[1])
        except BaseException as exc:
            errors.append(exc)

    first, second = threading.Thread(target=run), threading.Thread(target=run)
    with caplog.at_level(logging.INFO):
        first.start()
        while not counting.names and first.is_alive():
            time.sleep(0.01)
        second.start()
        first.join()
        second.join()
    assert errors == []
    assert sorted(counting.names) == ["corrupt", "good", "grey", "short"]  # each once
    assert [r["this_run"]["done"] for r in reports] == [3, 0]
    assert all(r["done"] == 3 and len(r["skipped"]) == 1 for r in reports)
    assert f"is in use by pid {os.getpid()}" in caplog.text and "waiting" in caplog.text
    assert not (tmp_path / "cache" / prep.LOCK_NAME).exists()


def test_cli_interrupt_exits_130(tmp_path: Path, four_videos, monkeypatch, capsys):
    monkeypatch.setattr(prep, "open_clip_source", _CountingOpen(prep.open_clip_source, 1))
    argv = [str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "c"), "--detector", "none"]
    assert preprocess_cli.main(argv) == 130
    assert "resume" in capsys.readouterr().err
    assert not (tmp_path / "c" / prep.LOCK_NAME).exists()  # Ctrl-C releases the cache lock


def test_cli_end_to_end(tmp_path: Path, four_videos: list[ManifestRow], capsys):
    out = tmp_path / "cli_cache"
    argv = [
        str(tmp_path / "manifest.csv"),
        "--out",
        str(out),
        "--detector",
        "none",
        "--size",
        str(SIZE),
        "--max-frames",
        "4",
        "--no-face-check",
        "--backend",
        "pyav",
    ]
    assert preprocess_cli.main(argv) == 0
    cache = FaceCache(out)
    assert len(cache.entries) == 3 and len(cache.skipped) == 1
    assert {int(a.shape[0]) for a in _by_name(cache).values()} == {4, 3}
    assert (out / "report.json").is_file()
    assert preprocess_cli.main(argv[:-2] + ["--size", "64"]) == 2  # other settings, same cache
    assert "made with" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["missing.csv", "--out", "c"],
        ["missing.csv"],
        ["m.csv", "--out", "c", "--size", "abc"],
        ["m.csv", "--out", "c", "--detector", "mtcnn"],
        ["m.csv", "--out", "c", "--max-frames", "-1"],
    ],
)
def test_cli_user_errors_are_one_line(tmp_path: Path, monkeypatch, capsys, args: list[str]):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.csv").write_text("path,label\nv.mp4,a\n")
    assert preprocess_cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err


def test_cli_missing_manifest_names_it(tmp_path: Path, capsys):
    assert preprocess_cli.main([str(tmp_path / "nope.csv"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "nope.csv" in err and err.count("\n") == 1


def test_frame_indices():
    assert prep.frame_indices(5, 8).tolist() == [0, 1, 2, 3, 4]
    assert prep.frame_indices(100, 0).tolist() == list(range(100))
    idx = prep.frame_indices(100, 8)
    assert len(idx) == 8 and idx[0] >= 0 and idx[-1] < 100 and (np.diff(idx) > 0).all()


# --- the face check in the cache ----------------------------------------------------------


def _noise_video(n: int = 12) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (n, 48, 64, 3), dtype=np.uint8)


def test_a_cache_made_before_the_face_check_is_checked_once(tmp_path: Path, caplog):
    """Its cached crops are checked: a noise video becomes a skipped one with the reason
    (its clip deleted), a face stays, and meta.json records the check."""
    rows = _manifest(tmp_path, {"portrait": _portrait_frames(), "noise": _noise_video()})
    out = tmp_path / "cache"
    prep.preprocess(rows, out, **JOB)
    meta = json.loads((out / "meta.json").read_text())
    del meta["face_check"]  # as caches made before the check
    (out / "meta.json").write_text(json.dumps(meta))
    noise_key = FaceCache(out).entry_for(rows[1].path).key
    with caplog.at_level(logging.WARNING):
        cache = prep.preprocess(rows, out, **{**JOB, "face_check": True})
    assert "made before the face check: checked its 2 videos, 1 have no face" in caplog.text
    assert list(_by_name(cache)) == ["portrait"]
    reason = "no face: frames are blank or noise in 8 of 8 sampled frames (8 noise)"
    assert cache.skipped == {rows[1].path: reason}
    assert not (out / "clips" / f"{noise_key}.npy").exists()
    reopened = FaceCache(out)
    assert reopened.settings["face_check"] is True and reopened.skipped == cache.skipped
    assert [e.row.path for e in reopened.entries] == [rows[0].path]
    report = json.loads((out / "report.json").read_text())
    assert report["done"] == 1 and report["skipped"] == {rows[1].path: reason}
    with pytest.raises(DataError, match="made with"):  # checked: not for an unchecked run
        prep.preprocess(rows, out, **JOB)


def test_partial_files_of_a_killed_run_are_removed(tmp_path: Path, caplog):
    rows = _manifest(tmp_path, {"portrait": _portrait_frames()})
    out = tmp_path / "cache"
    prep.preprocess(rows, out, **JOB)
    partials = [out / "clips" / ".0123abcd.npy.k1ll3d_x.npy", out / ".index.jsonl.zz11aa22.jsonl"]
    for path in partials:
        path.write_bytes(b"half")
    keep = out / "clips" / "notes.txt"
    keep.write_text("not ours")
    with caplog.at_level(logging.WARNING):
        cache = prep.preprocess(rows, out, **JOB)
    assert not any(p.exists() for p in partials) and keep.exists()
    assert len(cache.entries) == 1
    assert "removed 1 partial file(s) left in" in caplog.text and ".k1ll3d_x.npy" in caplog.text


def test_cli_refuses_no_face_videos_unless_told_not_to_check(tmp_path: Path, capsys):
    _manifest(tmp_path, {"noise": _noise_video(), "grey": np.full((12, 48, 64, 3), 90, np.uint8)})
    argv = [str(tmp_path / "manifest.csv"), "--detector", "none", "--size", str(SIZE)]
    assert preprocess_cli.main([*argv, "--out", str(tmp_path / "checked")]) == 0
    skipped = FaceCache(tmp_path / "checked").skipped
    assert sorted(reason.split(" (")[-1] for reason in skipped.values()) == ["8 blank)", "8 noise)"]
    assert preprocess_cli.main([*argv, "--out", str(tmp_path / "all"), "--no-face-check"]) == 0
    assert len(FaceCache(tmp_path / "all").entries) == 2
