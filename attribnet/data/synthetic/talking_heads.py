"""The demo set's source sequences: procedural talking heads whose skin tone, lighting,
size, background and motion are drawn at random (one ``source_id`` per sequence)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

FPS = 25


@dataclass(frozen=True)
class FaceSource:
    """Parameters of one procedural talking head; ``render`` draws its frames.

    Geometry is in normalised image coordinates ([-1, 1] across the frame), so a source
    renders at any size. Colours are RGB in [0, 1].
    """

    background: tuple[np.ndarray, np.ndarray]
    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    centre: tuple[float, float]
    radii: tuple[float, float]
    light: np.ndarray
    ambient: float
    gain: np.ndarray
    motion: np.ndarray
    talk: tuple[float, float]
    blinks: tuple[int, ...]
    texture_seed: int
    noise: float

    def render(self, num_frames: int, size: int) -> np.ndarray:
        """uint8 frames (T, size, size, 3)."""
        rng = np.random.default_rng(self.texture_seed)
        texture = _smooth_noise(rng, size, scale=max(size // 12, 2))
        frames = [self._frame(t, size, texture) for t in range(num_frames)]
        video = np.stack(frames) * self.gain
        video += rng.normal(0.0, self.noise, video.shape)
        return (np.clip(video, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    def _frame(self, t: int, size: int, texture: np.ndarray) -> np.ndarray:
        amp, freq, phase = self.motion[:, 0], self.motion[:, 1], self.motion[:, 2]
        dx, dy, angle = amp * np.sin(2 * np.pi * freq * t / FPS + phase)
        u, v = _face_coordinates(size, self.centre[0] + dx, self.centre[1] + dy, angle)
        a, b = self.radii
        x, y = u / a, v / b
        px = 2.0 / size
        top, bottom = self.background
        ramp = np.linspace(0.0, 1.0, size)[:, None, None]
        image = (1 - ramp) * top + ramp * bottom + 0.04 * texture[..., None]
        image = _paint(image, _ellipse(u, v + 0.15 * b, 1.08 * a, 1.05 * b, px), self.hair)
        image = _paint(image, _ellipse(u, v, a, b, px) * (y > -0.55), self._skin(x, y, texture))
        return self._features(image, x, y, t, px / min(a, b))

    def _skin(self, x: np.ndarray, y: np.ndarray, texture: np.ndarray) -> np.ndarray:
        normal_z = np.sqrt(np.clip(1.0 - x**2 - y**2, 0.0, 1.0))
        lambert = np.clip(self.light[0] * x + self.light[1] * y + self.light[2] * normal_z, 0, 1)
        shade = self.ambient + (1.0 - self.ambient) * lambert + 0.05 * texture
        return shade[..., None] * self.skin

    def _features(
        self, image: np.ndarray, x: np.ndarray, y: np.ndarray, t: int, px: float
    ) -> np.ndarray:
        """Eyebrows, eyes (closed on blink frames), nose shadow and a talking mouth."""
        blink = 0.1 if t in self.blinks else 1.0
        mouth = 0.15 + 0.85 * abs(np.sin(2 * np.pi * self.talk[0] * t / FPS + self.talk[1]))
        for side in (-1.0, 1.0):
            ex = x - 0.4 * side
            image = _paint(image, _ellipse(ex, y + 0.5, 0.22, 0.045, px), self.hair * 0.8)
            image = _paint(image, _ellipse(ex, y + 0.35, 0.2, 0.1 * blink, px), np.full(3, 0.92))
            image = _paint(image, _ellipse(ex, y + 0.35, 0.09, 0.09 * blink, px), self.iris)
            image = _paint(image, _ellipse(ex, y + 0.35, 0.04, 0.04 * blink, px), np.zeros(3))
        image = _paint(image, _ellipse(x, y - 0.1, 0.08, 0.16, px), self.skin * 0.7 * self.ambient)
        image = _paint(image, _ellipse(x, y - 0.5, 0.36, 0.04 + 0.14 * mouth, px), self.lips)
        return _paint(image, _ellipse(x, y - 0.5, 0.28, 0.14 * mouth, px), self.lips * 0.3)


def _face_coordinates(
    size: int, cx: float, cy: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates rotated by ``angle`` about the head centre (cx, cy)."""
    grid = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    v, u = np.meshgrid(grid - cy, grid - cx, indexing="ij")
    cos, sin = np.cos(angle), np.sin(angle)
    return cos * u + sin * v, -sin * u + cos * v


def _ellipse(u: np.ndarray, v: np.ndarray, a: float, b: float, px: float) -> np.ndarray:
    """Soft mask (about one pixel of anti-aliasing) of the ellipse (u/a)^2 + (v/b)^2 <= 1."""
    if b <= 0:
        return np.zeros_like(u)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return np.clip((1.0 - r) * min(a, b) / px + 0.5, 0.0, 1.0)


def _paint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return image * (1.0 - mask[..., None]) + mask[..., None] * colour


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise (size, size): coarse noise upsampled bilinearly."""
    coarse = torch.from_numpy(rng.normal(0.0, 1.0, (1, 1, scale + 1, scale + 1)))
    fine = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)
    return fine[0, 0].numpy()


def draw_source(rng: np.random.Generator, num_frames: int) -> FaceSource:
    """Random talking-head parameters: skin tone, lighting, size, background, motion vary."""
    skin = np.array([1.0, rng.uniform(0.62, 0.82), rng.uniform(0.45, 0.68)])
    skin *= rng.uniform(0.35, 0.95)
    a = rng.uniform(0.38, 0.55)
    light = rng.normal(0.0, 0.5, 3) + np.array([0.0, -0.3, 1.0])
    tint = rng.uniform(-0.12, 0.12)
    return FaceSource(
        background=(rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)),
        skin=skin,
        hair=rng.uniform(0.02, 0.5) * np.array([1.0, rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.8)]),
        iris=rng.uniform(0.1, 0.6, 3),
        lips=skin * np.array([1.0, 0.55, 0.6]),
        centre=(rng.uniform(-0.08, 0.08), rng.uniform(-0.02, 0.1)),
        radii=(a, a * rng.uniform(1.2, 1.4)),
        light=light / np.linalg.norm(light),
        ambient=rng.uniform(0.35, 0.7),
        gain=rng.uniform(0.7, 1.25) * np.array([1.0 + tint, 1.0, 1.0 - tint]),
        motion=np.column_stack(
            [rng.uniform(0.01, 0.05, 3) * [1, 1, 2], rng.uniform(0.3, 1.2, 3), rng.uniform(0, 6, 3)]
        ),
        talk=(rng.uniform(1.5, 4.0), rng.uniform(0.0, np.pi)),
        blinks=_blink_frames(rng, num_frames),
        texture_seed=int(rng.integers(2**31)),
        noise=rng.uniform(0.002, 0.01),
    )


def _blink_frames(rng: np.random.Generator, num_frames: int) -> tuple[int, ...]:
    """Frames with closed eyes: blinks of two frames at random times (at least one)."""
    starts = [int(rng.integers(0, max(num_frames - 1, 1)))]
    starts += [t for t in range(num_frames) if rng.random() < 0.04]
    return tuple(sorted({s + d for s in starts for d in (0, 1)}))
