"""Lossy re-encoding of frames: H.264 through PyAV (libx264) and JPEG through OpenCV.

DFDM's three qualities are H.264 at crf 0 (no loss), 10 (HQ) and 23 (LQ); the same
encoder serves to write videos and to re-encode clips in memory for augmentation.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import av
import cv2
import numpy as np

from attribnet.errors import VideoError
from attribnet.files.atomic import atomic_path

DFDM_CRFS = (0, 10, 23)

# Every pixel-format conversion here runs on one thread. PyAV's default (threads=0:
# swscale's own thread pool) leaves a process whose forked children hang in their next
# conversion, single-threaded or not (PyAV 18.1.1 with FFmpeg 8.1.3; 18.1.0 with 8.1.2 did
# not): a DataLoader worker is such a child, and the tests hung in CI on it.
_SWS_THREADS = 1


def to_video_frame(frame_hwc: np.ndarray, pix_fmt: str = "yuv420p") -> av.VideoFrame:
    """An RGB uint8 (H, W, 3) frame as a PyAV frame in ``pix_fmt``, ready to encode."""
    rgb = av.VideoFrame.from_ndarray(frame_hwc, format="rgb24")
    return rgb.reformat(format=pix_fmt, threads=_SWS_THREADS)


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded PyAV frame as RGB uint8 (H, W, 3)."""
    return frame.to_ndarray(format="rgb24", threads=_SWS_THREADS)


def _even(frames_thwc: np.ndarray) -> np.ndarray:
    """Crop one row/column if needed: yuv420p needs even width and height."""
    _, h, w, _ = frames_thwc.shape
    return frames_thwc[:, : h - h % 2, : w - w % 2]


def _check_frames(frames_thwc: np.ndarray) -> None:
    if frames_thwc.ndim != 4 or frames_thwc.shape[-1] != 3 or frames_thwc.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 frames of shape (T, H, W, 3), got {frames_thwc.dtype} "
            f"{tuple(frames_thwc.shape)}"
        )
    if len(frames_thwc) == 0:
        raise ValueError("cannot encode zero frames")


def encode_h264(
    frames_thwc: np.ndarray,
    out: str | os.PathLike[str] | io.BytesIO,
    crf: int = 23,
    fps: int = 25,
    preset: str = "veryfast",
    pix_fmt: str = "yuv420p",
) -> None:
    """Encode RGB uint8 frames (T, H, W, 3) as H.264 (libx264) mp4 into ``out``.

    crf 0 is lossless in libx264's YUV space; with the default ``yuv420p`` (what DFDM and
    most distributed video use) the RGB->YUV 4:2:0 conversion still halves colour
    resolution, ``yuv444p`` keeps it. Odd widths/heights lose their last row/column.
    """
    _check_frames(frames_thwc)
    frames_thwc = _even(frames_thwc)
    _, h, w, _ = frames_thwc.shape
    container = av.open(out, mode="w", format="mp4")
    try:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        # mbtree=0: with x264's macroblock-tree rate control the same frames gave a
        # different bitstream about 1 call in 20 inside a training process (crf 10 and 23,
        # one thread or many), which broke bit-exact resume; without it 0 in 276 differed.
        # One thread: a loader worker should not spawn x264's per-core thread pool.
        stream.options = {
            "crf": str(int(crf)),
            "preset": preset,
            "threads": "1",
            "x264-params": "mbtree=0",
        }
        for frame in frames_thwc:
            # convert to the stream's pixel format before encoding: left to the encoder,
            # the RGB->YUV conversion made crf>0 output differ between processes
            for packet in stream.encode(to_video_frame(frame, pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()


def write_video(
    path: str | os.PathLike[str], frames_thwc: np.ndarray, crf: int = 23, fps: int = 25
) -> None:
    """Write frames to an H.264 mp4 at ``path`` atomically."""
    with atomic_path(Path(path)) as tmp:
        encode_h264(frames_thwc, tmp, crf=crf, fps=fps)


def decode_all(source: str | os.PathLike[str] | io.BytesIO) -> np.ndarray:
    """Decode every frame of a video with PyAV into RGB uint8 (T, H, W, 3)."""
    try:
        with av.open(source) as container:
            frames = [to_rgb(f) for f in container.decode(video=0)]
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise VideoError(f"cannot decode video: {exc}") from exc
    if not frames:
        raise VideoError("video has no frames")
    return np.stack(frames)


def h264_roundtrip(
    frames_thwc: np.ndarray, crf: int, preset: str = "veryfast", pix_fmt: str = "yuv420p"
) -> np.ndarray:
    """Re-encode frames with H.264 at ``crf`` in memory and decode them back.

    Output has the input's shape (an odd last row/column is copied back from the input).
    """
    _check_frames(frames_thwc)
    buffer = io.BytesIO()
    encode_h264(frames_thwc, buffer, crf=crf, preset=preset, pix_fmt=pix_fmt)
    buffer.seek(0)
    decoded = decode_all(buffer)
    out = frames_thwc.copy()
    out[:, : decoded.shape[1], : decoded.shape[2]] = decoded[: len(out)]
    return out


def jpeg_roundtrip(frames_thwc: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-compress each frame at ``quality`` (1..100) and decode it back."""
    _check_frames(frames_thwc)
    out = np.empty_like(frames_thwc)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for i, frame in enumerate(frames_thwc):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise VideoError("JPEG encoding failed")
        out[i] = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 arrays (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
