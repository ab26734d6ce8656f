"""The built-in demo dataset: toy face-swap "deepfakes" from five toy generators.

No download needed. Procedural talking heads (one ``source_id`` per source sequence) go
through every toy generator, so the content of a video says nothing about its class: only
the generator's fingerprint does. Each output frame is colour-corrected to its source
frame (per-channel mean and std matched, as face-swap tools do when blending), so global
colour and brightness statistics carry no class information either. Every clip is then
encoded with H.264 at DFDM's three qualities (crf 0, 10, 23).

Layout::

    out_dir/manifest.csv                      path,label,quality,source_id,split,instance
    out_dir/demo.json                         the parameters the set was made with
    out_dir/<quality>/<class>/<source>.mp4    e.g. crf23/dfaker/src007.mp4

The generators are small convolutional autoencoders with fixed, seeded random weights (no
training), initialised near the identity so that the output resembles the input. Each
frame of size S is resized to the generator's input resolution, encoded by a stride-2
conv initialised as space-to-depth (plus residual 3x3 convs), decoded by an
architecture-specific upsampler and resized back to S where the output resolution is not
S. They mirror the axes along which DFDM's five Faceswap models differ (Table 2 of Jia,
Li, Lyu, ICIP 2022: encoder, decoder, intermediate layers, input/output resolution):

============  ==========================  =============================================
class         DFDM trait (Table 2)        toy architecture and its fingerprint
============  ==========================  =============================================
faceswap      baseline: in 64, out 64;    input S/2; encoder 4 convs; conv +
              enc 4Conv+1Ups, dec 3Ups    pixel-shuffle decoder (Faceswap's own
                                          upscale block); output S/2, resized to S.
                                          Periodic sub-pixel pattern, moderate blur.
lightweight   shallower encoder           input S/2; encoder 3 convs; nearest
              (3Conv+1Ups)                upsampling + conv; output S/2 resized to S.
                                          Blockiness, strong blur.
iae           intermediate layers;        input S/2; encoder 4 convs + 2 intermediate
              shared encoder/decoder      1x1 layers; transposed conv (kernel 3,
                                          stride 2) decoder. Checkerboard.
dfaker        decoder: in 64, out 128,    input S/2; two bilinear + conv upsamplings
              4Ups+3Residual+1Conv        and 3 residual blocks; output S (twice the
                                          input). Smooth, no periodic pattern.
dfl           input resolution 128        input S; encoder 4 convs; pixel-shuffle
              (DFL-H128)                  decoder; output S. Sharp, period-2 pattern.
============  ==========================  =============================================

A sixth generator, ``unseen`` (not among the default classes), is a U-Net-ish network
(input 3S/4, a skip connection, bicubic + conv upsampling), for open-set tests: render it
with ``generate_demo(..., generators=(*DEMO_CLASSES, "unseen"))``. ``real`` renders the
un-swapped source itself (no generator; encoded like the fakes): a video that a good
unknown verdict never attributes to a generator.

Instances. By default each architecture has one set of weights (one *instance*, as if each
tool had been trained once). ``instances=N`` gives every architecture N instances (the same
layers, other seeded random weights, as N trainings of one tool would differ); source i is
rendered by instance ``i mod N`` of every architecture, the manifest's ``instance`` column
names it (``i0`` ...), and the splits keep every instance in one split (the cross-instance
protocol: test videos come from instances no training video came from).

In the real DFDM models every decoder upsamples with conv + pixel shuffle; the toy
varies the upsampler to make the fingerprints distinct at 64x64. ``seed`` drives the
sources and the split only; generator weights are fixed per architecture, so demo sets
made with different seeds share their generators (a model trained on one set can
attribute videos of another).

Command line: ``python -m attribnet.data.synthetic data/demo [--sources 24 ...]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from attribnet.atomic import write_json
from attribnet.data.codec import DFDM_CRFS, write_video
from attribnet.data.manifest import (
    DEFAULT_SPLIT,
    ManifestRow,
    assign_splits,
    read_manifest,
    write_manifest,
)
from attribnet.errors import DataError

log = logging.getLogger(__name__)

DEMO_CLASSES = ("faceswap", "lightweight", "iae", "dfaker", "dfl")
UNSEEN_CLASS = "unseen"
REAL_CLASS = "real"
INSTANCE_SEED_STRIDE = 7919
DEMO_FORMAT = 2
FPS = 25


@dataclass(frozen=True)
class ToyArchitecture:
    """One toy generator's architecture; see the module docstring for the five classes.

    ``input_scale`` is the input resolution as a fraction of the frame size S. The output
    resolution is the input resolution times ``2 ** (upsamplings - 1)``: the encoder
    halves it once and every upsampling doubles it.
    """

    name: str
    input_scale: float
    encoder_convs: int
    upsampler: str
    upsamplings: int = 1
    intermediate_layers: int = 0
    residual_blocks: int = 0
    skip: bool = False
    weight_seed: int = 0
    strength: float = 0.05


ARCHITECTURES: dict[str, ToyArchitecture] = {
    a.name: a
    for a in (
        ToyArchitecture("faceswap", 0.5, 4, "pixel_shuffle", weight_seed=1001),
        ToyArchitecture("lightweight", 0.5, 3, "nearest", weight_seed=1002),
        ToyArchitecture("iae", 0.5, 4, "transposed", intermediate_layers=2, weight_seed=1003),
        ToyArchitecture(
            "dfaker", 0.5, 4, "bilinear", upsamplings=2, residual_blocks=3, weight_seed=1004
        ),
        ToyArchitecture("dfl", 1.0, 4, "pixel_shuffle", weight_seed=1005),
        ToyArchitecture(UNSEEN_CLASS, 0.75, 3, "bicubic", skip=True, weight_seed=1006),
    )
}


# ------------------------------------------------------------------------- generators


class _ResidualConv(nn.Module):
    """x + conv(leaky_relu(x)): a random residual perturbation of its input."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(F.leaky_relu(x, 0.2))


class _ResidualBlock(nn.Module):
    """x + conv(leaky_relu(conv(x))), Dfaker's decoder block."""

    def __init__(self, channels: int, hidden: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class _Upsampler(nn.Module):
    """Doubles the resolution with one of the upsampler types, ``in_ch`` -> 3 channels.

    With ``in_ch == 12`` the input is a space-to-depth latent (colour c, sub-pixel (a, b)
    in channel 4c + 2a + b) that pixel shuffle and transposed conv can invert exactly;
    the interpolating upsamplers average the four sub-pixels instead.
    """

    def __init__(self, kind: str, in_ch: int):
        super().__init__()
        self.kind = kind
        if kind == "pixel_shuffle":
            self.conv = nn.Conv2d(in_ch, 12, 3, padding=1)
        elif kind == "transposed":
            self.conv = nn.ConvTranspose2d(in_ch, 3, 3, stride=2, padding=1, output_padding=1)
        elif kind in ("nearest", "bilinear", "bicubic"):
            self.conv = nn.Conv2d(in_ch, 3, 3, padding=1)
        else:
            raise ValueError(f"unknown upsampler {kind!r}")

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "pixel_shuffle":
            return F.pixel_shuffle(self.conv(x), 2)
        if self.kind == "transposed":
            return self.conv(x)
        x = F.interpolate(x, scale_factor=2, mode=self.kind)
        return self.conv(x)


class ToyGenerator(nn.Module):
    """A toy face-swap autoencoder with fixed random near-identity weights.

    ``forward`` maps frames (T, 3, S, S) in [0, 1] to frames of the same shape, colour
    corrected to the input frame by frame.
    """

    def __init__(self, arch: ToyArchitecture):
        super().__init__()
        self.arch = arch
        # the layers' default init draws from torch's global RNG; the weights come from
        # the generator below, so leave the global RNG as it was (demo generation must not
        # change a model seeded before it)
        with torch.random.fork_rng(devices=[]):
            self.down = nn.Conv2d(3, 12, 2, stride=2)
            self.encoder = nn.Sequential(
                *(_ResidualConv(12, 3) for _ in range(arch.encoder_convs - 1))
            )
            self.intermediate = nn.Sequential(
                *(_ResidualConv(12, 1) for _ in range(arch.intermediate_layers))
            )
            ups = [_Upsampler(arch.upsampler, 12 if i == 0 else 3) for i in range(arch.upsamplings)]
            self.decoder = nn.Sequential(
                *ups, *(_ResidualBlock(3) for _ in range(arch.residual_blocks))
            )
            self.skip = nn.Conv2d(3, 3, 1) if arch.skip else None
            self.final = nn.Conv2d(3, 3, 3, padding=1)
        _init_near_identity(self, torch.Generator().manual_seed(arch.weight_seed), arch.strength)
        self.requires_grad_(False)

    def forward(self, frames_tchw: Tensor) -> Tensor:
        size = frames_tchw.shape[-1]
        x = _resize(frames_tchw, round(size * self.arch.input_scale))
        y = self.decoder(self.intermediate(self.encoder(self.down(x))))
        if self.skip is not None:
            y = 0.5 * (y + self.skip(x))
        y = _resize(self.final(y), size)
        return match_colour(y, frames_tchw)


def _resize(x: Tensor, size: int) -> Tensor:
    if x.shape[-1] == size:
        return x
    mode = "area" if size < x.shape[-1] else "bilinear"
    return F.interpolate(x, size=(size, size), mode=mode)


def _init_near_identity(model: ToyGenerator, gen: torch.Generator, strength: float) -> None:
    """Random weights of scale ``strength / sqrt(fan_in)`` on top of the identity map."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            weight = module.weight
            in_channels = weight.shape[0 if isinstance(module, nn.ConvTranspose2d) else 1]
            fan_in = in_channels * weight.shape[2] * weight.shape[3]
            weight.data = torch.randn(weight.shape, generator=gen) * strength / fan_in**0.5
            module.bias.data = torch.randn(module.bias.shape, generator=gen) * 0.004
    model.down.weight.data += _space_to_depth_kernel()
    model.final.weight.data[:, :, 1, 1] += torch.eye(3)
    if model.skip is not None:
        model.skip.weight.data[:, :, 0, 0] += torch.eye(3)
    _init_first_upsampler(model.decoder[0])
    for up in list(model.decoder)[1 : model.arch.upsamplings]:
        up.conv.weight.data[:, :, 1, 1] += torch.eye(3)


def _space_to_depth_kernel() -> Tensor:
    """(12, 3, 2, 2) kernel: output channel 4c + 2a + b = pixel (a, b) of colour c."""
    kernel = torch.zeros(12, 3, 2, 2)
    for c in range(3):
        for a in range(2):
            for b in range(2):
                kernel[4 * c + 2 * a + b, c, a, b] = 1.0
    return kernel


def _init_first_upsampler(up: _Upsampler) -> None:
    """Add the (near-)inverse of space-to-depth to the first upsampler's weights."""
    weight = up.conv.weight.data
    for c in range(3):
        for a in range(2):
            for b in range(2):
                ch = 4 * c + 2 * a + b
                if up.kind == "pixel_shuffle":
                    weight[ch, ch, 1, 1] += 1.0
                elif up.kind == "transposed":
                    weight[ch, c, 1 + a, 1 + b] += 1.0
                else:
                    weight[c, ch, 1, 1] += 0.25


def match_colour(frames_tchw: Tensor, reference_tchw: Tensor) -> Tensor:
    """Give each frame and channel the reference's mean and std; clip to [0, 1]."""
    dims = (-2, -1)
    mean, std = frames_tchw.mean(dims, keepdim=True), frames_tchw.std(dims, keepdim=True)
    ref_mean = reference_tchw.mean(dims, keepdim=True)
    ref_std = reference_tchw.std(dims, keepdim=True)
    out = (frames_tchw - mean) / std.clamp_min(1e-6) * ref_std + ref_mean
    return out.clamp(0.0, 1.0)


def build_generator(name: str, instance: int = 0) -> ToyGenerator:
    """The toy generator of class ``name`` (one of ``ARCHITECTURES``), in eval mode;
    ``instance`` k > 0 draws other weights for the same layers."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown toy generator {name!r}; choose from {sorted(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    if instance:
        arch = replace(arch, weight_seed=arch.weight_seed + INSTANCE_SEED_STRIDE * instance)
    return ToyGenerator(arch).eval()


def render_fake(generator: ToyGenerator, frames_thwc: np.ndarray) -> np.ndarray:
    """Run uint8 frames (T, H, W, 3) through ``generator``; uint8 frames of the same shape."""
    x = torch.from_numpy(frames_thwc).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        y = generator(x)
    return (y * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# ---------------------------------------------------------------------------- sources


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


# ---------------------------------------------------------------------------- dataset


def quality_tag(crf: int) -> str:
    """Manifest quality tag of an H.264 crf, e.g. ``crf23``."""
    return f"crf{int(crf)}"


def _parameters(
    num_sources: int,
    num_frames: int,
    size: int,
    seed: int,
    qualities: Sequence[int],
    generators: Sequence[str],
    instances: int = 1,
) -> dict[str, object]:
    """Check the parameters and return them as stored in ``demo.json``."""
    if num_sources < 1 or num_frames < 1 or size < 8 or size % 8:
        raise ValueError(
            f"need num_sources >= 1, num_frames >= 1 and size a multiple of 8, got "
            f"{num_sources}, {num_frames}, {size}"
        )
    if not qualities or not generators:
        raise ValueError("need at least one quality and one generator")
    if len(set(qualities)) < len(qualities) or len(set(generators)) < len(generators):
        raise ValueError(f"duplicate qualities or generators: {qualities}, {generators}")
    for name in generators:
        if name not in ARCHITECTURES and name != REAL_CLASS:
            raise ValueError(
                f"unknown toy generator {name!r}; choose from {sorted(ARCHITECTURES)} or "
                f"{REAL_CLASS!r}"
            )
    if not 1 <= instances <= num_sources:
        raise ValueError(f"need 1 <= instances <= num_sources, got {instances}")
    params: dict[str, object] = {
        "format": DEMO_FORMAT,
        "num_sources": num_sources,
        "num_frames": num_frames,
        "size": size,
        "seed": seed,
        "qualities": [int(q) for q in qualities],
        "generators": list(generators),
    }
    if instances > 1:  # one instance: the parameters (and demo sets) made before instances
        params["instances"] = instances
    return params


def _is_complete(out_dir: Path, params: dict[str, object]) -> bool:
    """Whether ``out_dir`` holds a manifest, made with ``params``, whose videos all exist."""
    meta, manifest = out_dir / "demo.json", out_dir / "manifest.csv"
    if not (meta.is_file() and manifest.is_file()):
        return False
    try:
        if json.loads(meta.read_text()) != params:
            return False
        return all(Path(row.path).is_file() for row in read_manifest(manifest))
    except (json.JSONDecodeError, DataError):
        return False


def generate_demo(
    out_dir: str | os.PathLike[str],
    *,
    num_sources: int = 24,
    num_frames: int = 20,
    size: int = 64,
    seed: int = 0,
    qualities: Sequence[int] = DFDM_CRFS,
    generators: Sequence[str] = DEMO_CLASSES,
    instances: int = 1,
) -> Path:
    """Write the demo dataset into ``out_dir``; return the manifest path.

    Returns at once when ``out_dir`` already holds a finished set made with the same
    parameters. Otherwise every video is (re)written and the manifest comes last, so an
    interrupted run leaves no manifest and is redone by the next call. Add ``"unseen"``
    to ``generators`` to render the held-out sixth architecture.
    """
    out_dir = Path(out_dir)
    params = _parameters(num_sources, num_frames, size, seed, qualities, generators, instances)
    manifest = out_dir / "manifest.csv"
    if _is_complete(out_dir, params):
        log.info("demo dataset already complete: %s", manifest)
        return manifest
    manifest.unlink(missing_ok=True)
    started = time.perf_counter()
    rows = _write_videos(out_dir, params)
    write_json(out_dir / "demo.json", params)
    write_manifest(rows, manifest)
    log.info(
        "demo dataset: %d videos in %s (%.1f s)", len(rows), out_dir, time.perf_counter() - started
    )
    return manifest


def _write_videos(out_dir: Path, params: dict[str, object]) -> list[ManifestRow]:
    """Render every source through every generator (source i through instance i mod N of
    each) and encode it at every quality."""
    source_ids = [f"src{i:03d}" for i in range(int(params["num_sources"]))]
    n = int(params.get("instances", 1))
    generators = {
        (name, k): None if name == REAL_CLASS else build_generator(name, k)
        for name in params["generators"]
        for k in range(n)
    }
    seeds = np.random.SeedSequence(int(params["seed"])).spawn(len(source_ids))
    rows = []
    for i in tqdm(range(len(source_ids)), desc="demo", disable=None):
        source = draw_source(np.random.default_rng(seeds[i]), int(params["num_frames"]))
        real = source.render(int(params["num_frames"]), int(params["size"]))
        for name in params["generators"]:
            generator = generators[(name, i % n)]
            fake = real if generator is None else render_fake(generator, real)
            for crf in params["qualities"]:
                path = out_dir / quality_tag(crf) / name / f"{source_ids[i]}.mp4"
                write_video(path, fake, crf=crf, fps=FPS)
                instance = f"i{i % n}" if n > 1 else ""
                rows.append(
                    ManifestRow(str(path), name, quality_tag(crf), source_ids[i], "", instance)
                )
    group_by = "instance" if n > 1 else "source_id"
    return assign_splits(rows, DEFAULT_SPLIT, seed=int(params["seed"]), group_by=group_by)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: generate the demo dataset into a folder."""
    from attribnet.logs import setup_logging

    parser = argparse.ArgumentParser(
        prog="python -m attribnet.data.synthetic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", help="folder to write the videos and manifest.csv into")
    parser.add_argument("--sources", type=int, default=24, help="source sequences")
    parser.add_argument("--frames", type=int, default=20, help="frames per video")
    parser.add_argument("--size", type=int, default=64, help="frame size in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sources and split")
    parser.add_argument(
        "--qualities", type=int, nargs="+", default=list(DFDM_CRFS), help="H.264 crf values"
    )
    parser.add_argument(
        "--generators",
        nargs="+",
        default=list(DEMO_CLASSES),
        choices=[*sorted(ARCHITECTURES), REAL_CLASS],
        help=f"toy generators to render (default: the five classes; '{UNSEEN_CLASS}' is held "
        f"out; '{REAL_CLASS}' writes the un-swapped sources)",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="instances (weight draws) per architecture; > 1 splits by instance",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        manifest = generate_demo(
            args.out_dir,
            num_sources=args.sources,
            num_frames=args.frames,
            size=args.size,
            seed=args.seed,
            qualities=args.qualities,
            generators=args.generators,
            instances=args.instances,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
