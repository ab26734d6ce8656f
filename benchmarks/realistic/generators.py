"""The five DFDM face-swap autoencoders (Table 2 of Jia, Li, Lyu, ICIP 2022), small.

DFDM made its fakes with five models of the faceswap project (deepfakes/faceswap,
``plugins/train/model/*.py``). Each is a shared-encoder autoencoder trained on two
identities A and B: a face of A is encoded and decoded by B's decoder to swap it. This
module rebuilds their layer structure in PyTorch with every width divided by
``width_div`` (8 by default) so that they train on a CPU. What stays as in faceswap:

============  ==================================================================
class         structure (faceswap plugin; widths before division)
============  ==================================================================
faceswap      ``original.py``: input S. Encoder 4 conv blocks (128, 256, 512, 1024)
              -> Dense(1024) -> Dense(S/16 * S/16 * 1024) -> 1 upscale (512).
              Decoder per identity: 3 upscales (256, 128, 64) -> 5x5 conv, sigmoid.
              Output S.
lightweight   ``lightweight.py``: the same with a shallower encoder: 3 conv blocks
              (128, 256, 512) -> Dense(512) -> Dense(S/16 * S/16 * 512) -> 1
              upscale (256). Decoder 3 upscales (512, 256, 128) -> conv. Output S.
iae           ``iae.py``: encoder 4 conv blocks, flattened; three intermediate
              networks (Dense(1024) -> Dense(S/16 * S/16 * 512)): inter_a, inter_b
              and inter_both; ONE shared decoder on concat(inter_x, inter_both):
              4 upscales (512, 256, 128, 64) -> conv. Output S.
dfaker        ``dfaker.py``: faceswap's encoder on an input of S; decoder 4 upscales
              (512, 256, 128, 64), the first three each followed by a residual block,
              -> conv: output 2S. A learned mask (its own 4-upscale branch).
dfl           ``dfl_h128.py``: input 2S (128 in DFL-H128). Encoder 4 conv blocks ->
              Dense(512) -> Dense(S/8 * S/8 * 512) -> 1 upscale (512); decoder 3
              upscales (512, 256, 128) -> conv. Output 2S.
============  ==================================================================

Blocks as in faceswap's ``lib/model/nn_blocks.py``: a conv block is a 5x5 stride-2
convolution + LeakyReLU(0.1); an upscale block is a 3x3 convolution to 4x the channels +
LeakyReLU(0.1) + pixel shuffle (x2); a residual block is conv3x3 -> LeakyReLU(0.2) ->
conv3x3 (initialised small) -> + input -> LeakyReLU(0.2); the output is a 5x5 conv with a
sigmoid. ``S`` is ``size`` (64 in faceswap; a multiple of 16).

:data:`SYNTHETIC` are eight more architectures that no tool ships, for pre-training on many
decoders ("model synthesis", Yang et al. 2023): lightweight's encoder, and a decoder of 3
(output S) or 4 (output 2S) upscales whose upsampling is a pixel shuffle, a transposed
convolution (4x4, stride 2), or a nearest or bilinear resize followed by a 3x3 convolution.

Every model maps faces in [0, 1], (B, 3, in, in), through ``forward(x, side)`` where
``side`` 0 decodes as identity A and 1 as identity B, to ``(face, mask)``: the face
(B, 3, out, out) in [0, 1] and a mask (B, 1, out, out) in [0, 1] or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

GENERATORS = ("faceswap", "lightweight", "iae", "dfaker", "dfl")
UPSAMPLING = ("shuffle", "transpose", "nearest", "bilinear")


@dataclass(frozen=True)
class Spec:
    """One architecture at faceswap's widths (divided by ``width_div`` when built)."""

    name: str
    plugin: str
    input_scale: int  # input = input_scale * S
    output_scale: int  # output = output_scale * S
    encoder: tuple[int, ...]  # conv-block widths
    dense: int  # bottleneck Dense width (intermediate Dense width for IAE)
    reshape: int  # channels of the Dense reshape
    encoder_upscale: int  # width of the encoder's final upscale (0: none)
    decoder: tuple[int, ...]  # upscale widths of the decoder
    residual: bool = False  # a residual block after every decoder upscale but the last
    mask: bool = False  # a learned mask branch
    intermediate: bool = False  # IAE: per-identity + shared intermediate layers
    upsample: str = "shuffle"  # how an upscale block doubles the size (UPSAMPLING)


SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec("faceswap", "original.py", 1, 1, (128, 256, 512, 1024), 1024, 1024, 512,
             (256, 128, 64)),
        Spec("lightweight", "lightweight.py", 1, 1, (128, 256, 512), 512, 512, 256,
             (512, 256, 128)),
        Spec("iae", "iae.py", 1, 1, (128, 256, 512, 1024), 1024, 512, 0,
             (512, 256, 128, 64), intermediate=True),
        Spec("dfaker", "dfaker.py", 1, 2, (128, 256, 512, 1024), 1024, 1024, 512,
             (512, 256, 128, 64), residual=True, mask=True),
        Spec("dfl", "dfl_h128.py", 2, 2, (128, 256, 512, 1024), 512, 512, 512,
             (512, 256, 128)),
    )
}  # fmt: skip
_SYNTHETIC_SPECS = [
    Spec(f"syn_{up}{depth}", "synthetic", 1, 1 if depth == 3 else 2, (128, 256, 512), 512, 512,
         256, (256, 128, 64, 32)[:depth], upsample=up)
    for up in UPSAMPLING
    for depth in (3, 4)
]  # fmt: skip
SYNTHETIC = tuple(s.name for s in _SYNTHETIC_SPECS)
SPECS.update((s.name, s) for s in _SYNTHETIC_SPECS)
ARCHITECTURES = GENERATORS + SYNTHETIC  # every name build_generator takes, in a fixed order


def _w(channels: int, div: int) -> int:
    return max(channels // div, 4)


class ConvBlock(nn.Sequential):
    """5x5 stride-2 convolution + LeakyReLU(0.1) (faceswap's Conv2DBlock)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 5, stride=2, padding=2), nn.LeakyReLU(0.1))


class UpscaleBlock(nn.Sequential):
    """x2 upscale: 3x3 convolution to 4x channels + LeakyReLU + pixel shuffle (faceswap's
    UpscaleBlock); for the synthetic architectures also a transposed convolution, or a
    nearest / bilinear resize then a 3x3 convolution, each + LeakyReLU."""

    def __init__(self, cin: int, cout: int, slope: float = 0.1, mode: str = "shuffle"):
        act = nn.LeakyReLU(slope)
        if mode == "shuffle":
            layers = [nn.Conv2d(cin, cout * 4, 3, padding=1), act, nn.PixelShuffle(2)]
        elif mode == "transpose":
            layers = [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), act]
        elif mode in ("nearest", "bilinear"):
            layers = [nn.Upsample(scale_factor=2, mode=mode), nn.Conv2d(cin, cout, 3, padding=1),
                      act]  # fmt: skip
        else:
            raise ValueError(f"unknown upsampling {mode!r}; choose from {UPSAMPLING}")
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """dfaker's residual block: conv -> LeakyReLU(0.2) -> conv -> + x -> LeakyReLU(0.2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():  # faceswap: VarianceScaling(scale=0.2) on the second conv
            self.conv2.weight.mul_(0.2**0.5)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class Encoder(nn.Module):
    """Conv blocks -> flatten -> [Dense -> Dense -> reshape -> upscale] (none for IAE)."""

    def __init__(self, spec: Spec, in_size: int, div: int, dense: bool = True):
        super().__init__()
        widths = [3, *(_w(c, div) for c in spec.encoder)]
        self.convs = nn.Sequential(*(ConvBlock(a, b) for a, b in pairwise(widths)))
        side = in_size // 2 ** len(spec.encoder)
        self.flat_features = widths[-1] * side * side
        self.bottleneck: nn.Module | None = None
        if dense:
            self.grid = in_size // 16
            self.channels = _w(spec.reshape, div)
            self.bottleneck = nn.Sequential(
                nn.Linear(self.flat_features, _w(spec.dense, div)),
                nn.Linear(_w(spec.dense, div), self.grid * self.grid * self.channels),
            )
            self.upscale = UpscaleBlock(
                self.channels, _w(spec.encoder_upscale, div), mode=spec.upsample
            )
            self.out_channels = _w(spec.encoder_upscale, div)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x).flatten(1)
        if self.bottleneck is None:
            return x
        x = self.bottleneck(x).view(-1, self.channels, self.grid, self.grid)
        return self.upscale(x)


class Decoder(nn.Module):
    """Upscale blocks (each but the last followed by a residual block for dfaker) -> 5x5
    conv + sigmoid; dfaker also has a mask branch of plain upscales -> 5x5 conv + sigmoid."""

    def __init__(self, spec: Spec, cin: int, div: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = cin
        for i, width in enumerate(spec.decoder):
            w = _w(width, div)
            last = i == len(spec.decoder) - 1
            slope = 0.2 if spec.residual else 0.1
            layers.append(UpscaleBlock(c, w, slope=slope, mode=spec.upsample))
            if spec.residual and not last:
                layers.append(ResidualBlock(w))
            c = w
        self.body = nn.Sequential(*layers)
        self.face = nn.Conv2d(c, 3, 5, padding=2)
        self.mask: nn.Module | None = None
        if spec.mask:
            widths = [cin, *(_w(w, div) for w in spec.decoder)]
            self.mask = nn.Sequential(
                *(UpscaleBlock(a, b) for a, b in pairwise(widths)),
                nn.Conv2d(widths[-1], 1, 5, padding=2),
            )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        face = torch.sigmoid(self.face(self.body(x)))
        mask = torch.sigmoid(self.mask(x)) if self.mask is not None else None
        return face, mask


class Intermediate(nn.Module):
    """IAE's intermediate network: Dense -> Dense -> reshape to (C, S/16, S/16)."""

    def __init__(self, features: int, spec: Spec, in_size: int, div: int):
        super().__init__()
        self.grid, self.channels = in_size // 16, _w(spec.reshape, div)
        self.net = nn.Sequential(
            nn.Linear(features, _w(spec.dense, div)),
            nn.Linear(_w(spec.dense, div), self.grid * self.grid * self.channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(-1, self.channels, self.grid, self.grid)


class FaceSwapAutoencoder(nn.Module):
    """A shared encoder and one decoder per identity (IAE: per-identity intermediates and
    one shared decoder). ``forward(x, side)``: side 0 = identity A, 1 = identity B."""

    def __init__(self, name: str, size: int = 64, width_div: int = 8):
        super().__init__()
        if name not in SPECS:
            raise ValueError(f"unknown generator {name!r}; choose from {ARCHITECTURES}")
        if size < 16 or size % 16:
            raise ValueError(f"size must be a multiple of 16, got {size}")
        if width_div < 1:
            raise ValueError(f"width_div must be >= 1, got {width_div}")
        spec = SPECS[name]
        self.name, self.spec, self.size, self.width_div = name, spec, size, width_div
        self.input_size = spec.input_scale * size
        self.output_size = spec.output_scale * size
        self.encoder = Encoder(spec, self.input_size, width_div, dense=not spec.intermediate)
        if spec.intermediate:
            feats = self.encoder.flat_features
            self.inter = nn.ModuleList(
                Intermediate(feats, spec, self.input_size, width_div) for _ in range(3)
            )  # inter_a, inter_b, inter_both
            self.decoders = nn.ModuleList([Decoder(spec, 2 * self.inter[0].channels, width_div)])
        else:
            self.inter = None
            cin = self.encoder.out_channels
            self.decoders = nn.ModuleList(Decoder(spec, cin, width_div) for _ in range(2))

    @property
    def has_mask(self) -> bool:
        return self.spec.mask

    def forward(self, x: Tensor, side: int) -> tuple[Tensor, Tensor | None]:
        if side not in (0, 1):
            raise ValueError(f"side must be 0 (identity A) or 1 (identity B), got {side}")
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            raise ValueError(
                f"{self.name} takes {self.input_size}x{self.input_size} faces, got "
                f"{tuple(x.shape[-2:])}"
            )
        z = self.encoder(x)
        if self.inter is not None:
            z = torch.cat([self.inter[side](z), self.inter[2](z)], dim=1)
            return self.decoders[0](z)
        return self.decoders[side](z)


def build_generator(name: str, size: int = 64, width_div: int = 8) -> FaceSwapAutoencoder:
    """One of :data:`GENERATORS` (or :data:`SYNTHETIC`) with base face size ``size`` (S)
    and widths / ``width_div``."""
    return FaceSwapAutoencoder(name, size=size, width_div=width_div)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
