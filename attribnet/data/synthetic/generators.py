"""The toy generators, one per class.

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
with ``generate_demo(..., generators=(*DEMO_CLASSES, "unseen"))``.

In the real DFDM models every decoder upsamples with conv + pixel shuffle; the toy
varies the upsampler to make the fingerprints distinct at 64x64. ``seed`` drives the
sources and the split only; generator weights are fixed per architecture, so demo sets
made with different seeds share their generators (a model trained on one set can
attribute videos of another).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEMO_CLASSES = ("faceswap", "lightweight", "iae", "dfaker", "dfl")
UNSEEN_CLASS = "unseen"
INSTANCE_SEED_STRIDE = 7919


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
