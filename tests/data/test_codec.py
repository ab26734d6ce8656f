"""H.264 and JPEG round trips of attribnet.data.codec on a small textured clip."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from attribnet.data.codec import (
    decode_all,
    h264_roundtrip,
    jpeg_roundtrip,
    psnr,
    write_video,
)
from attribnet.errors import VideoError


def textured_clip(t: int = 10, h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): moving smooth colour waves plus Gaussian noise (sigma 12)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = []
    for i in range(t):
        waves = np.stack(
            [
                128 + 80 * np.sin((x + 2 * i) / 9.0),
                128 + 80 * np.cos((y - i) / 7.0),
                128 + 60 * np.sin((x + y + 3 * i) / 13.0),
            ],
            axis=-1,
        )
        frames.append(waves + rng.normal(0, 12, (h, w, 3)))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return textured_clip()


def test_crf0_yuv444_is_near_lossless_and_crf23_is_lossy(clip: np.ndarray) -> None:
    lossless = psnr(clip, h264_roundtrip(clip, 0, pix_fmt="yuv444p"))
    lossy = psnr(clip, h264_roundtrip(clip, 23, pix_fmt="yuv444p"))
    assert lossless > 45.0
    assert lossy < 40.0
    assert lossy < lossless - 10.0


def test_crf23_changes_pixels_with_default_yuv420(clip: np.ndarray) -> None:
    out = h264_roundtrip(clip, 23)
    assert (out != clip).mean() > 0.5
    assert psnr(clip, out) < psnr(clip, h264_roundtrip(clip, 0, pix_fmt="yuv444p")) - 10.0


def test_jpeg_quality_orders_psnr(clip: np.ndarray) -> None:
    low, high = psnr(clip, jpeg_roundtrip(clip, 30)), psnr(clip, jpeg_roundtrip(clip, 95))
    assert low < high
    assert np.isfinite(high)


@pytest.mark.parametrize("shape", [(3, 64, 64), (2, 33, 47), (1, 17, 16)])
def test_roundtrips_keep_shape_and_dtype(shape: tuple[int, int, int]) -> None:
    frames = textured_clip(*shape)
    for out in (h264_roundtrip(frames, 10), jpeg_roundtrip(frames, 80)):
        assert out.shape == frames.shape
        assert out.dtype == np.uint8


def test_odd_size_copies_the_dropped_edge_back() -> None:
    frames = textured_clip(2, 33, 47)
    out = h264_roundtrip(frames, 23)
    np.testing.assert_array_equal(out[:, 32, :], frames[:, 32, :])
    np.testing.assert_array_equal(out[:, :, 46], frames[:, :, 46])
    assert psnr(frames[:, :32, :46], out[:, :32, :46]) < 60.0


def test_write_video_then_decode_all(tmp_path: Path) -> None:
    frames = textured_clip(7, 32, 48)
    path = tmp_path / "sub" / "clip.mp4"
    write_video(path, frames, crf=10)
    decoded = decode_all(path)
    assert decoded.shape == frames.shape
    assert decoded.dtype == np.uint8
    assert psnr(frames, decoded) > 20.0
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]


def test_psnr_of_identical_arrays_is_infinite() -> None:
    frames = textured_clip(1, 8, 8)
    assert psnr(frames, frames) == float("inf")


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((0, 16, 16, 3), np.uint8),
        np.zeros((2, 16, 16, 3), np.float32),
        np.zeros((2, 16, 16), np.uint8),
    ],
)
def test_bad_frames_are_rejected(frames: np.ndarray) -> None:
    with pytest.raises(ValueError):
        h264_roundtrip(frames, 23)
    with pytest.raises(ValueError):
        jpeg_roundtrip(frames, 90)


def test_decode_all_rejects_non_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(VideoError):
        decode_all(path)


def _roundtrip_in_child(clip: np.ndarray, done) -> None:
    done.put(h264_roundtrip(clip, 23).shape)


def test_a_forked_child_still_converts_pixels(clip: np.ndarray) -> None:
    """A DataLoader worker is a fork of a process that has encoded and decoded (the clip
    cache, a query): with swscale's thread pool in the parent, the child's next pixel
    conversion hung for ever (PyAV 18.1.1, FFmpeg 8.1.3)."""
    h264_roundtrip(clip, 23)  # an encode and a decode in this process
    fork = multiprocessing.get_context("fork")
    done = fork.Queue()
    child = fork.Process(target=_roundtrip_in_child, args=(clip, done))
    child.start()
    child.join(timeout=60)
    hung = child.is_alive()
    if hung:
        child.kill()
        child.join()
    assert not hung, "the forked child did not finish a 10-frame H.264 round trip in 60 s"
    assert child.exitcode == 0 and done.get(timeout=5) == clip.shape
