"""Open-space simulation: clips re-synthesised by random generator-like nets, as examples
of "a generator none of the known ones".

After POSE (Yang et al., "Progressive Open Space Expansion for Open-Set Model Attribution",
CVPR 2023): a pool of small augmentation nets re-synthesises known samples so that the
content stays and the generator trace changes; training pushes the class scores of these
clips toward uniform. POSE *trains* its nets progressively (close to the input, away from
the known traces and from each other). This is the simpler fixed-random version: the nets
are randomly initialised near the identity and never trained (buffers, no gradients, in no
optimizer). The pool is re-drawn each epoch from ``(train.seed, epoch)``
(:meth:`OpenSpaceSimulator.redraw`, :func:`pool_seed`): over a run the model meets
``num_nets x epochs`` different traces instead of memorising ``num_nets`` of them as extra
classes (a cheap stand-in for POSE's expansion), and an exact resume needs nothing in the
checkpoint.

One net, applied to every frame of its clips (normalised (N, 3, H, W))::

    avg-pool /2 -> + s * conv3x3(leaky_relu(conv3x3(.)))           (random residual trace)
    -> x2 upsampler: nearest | bilinear | transposed conv 4x4/2 (bilinear + noise)
                     | conv to 12 channels + pixel shuffle (nearest + noise)
    -> conv3x3 near the identity
    -> blended into the input through a soft ellipse (the face region a swap replaces)
    -> re-quantised to 8 bits (when mean/std are given), as every real frame is

Convolutions pad by replication, so borders carry no extra trace. Randomness comes only
from the ``torch.Generator`` passed in (CPU), never from the global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

OPEN_SPACE_LABEL = -2
UPSAMPLERS = ("nearest", "bilinear", "transposed", "pixel_shuffle")
_POOL_TAG, _STEP_TAG = 7001, 7002


def pool_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's pool of nets."""
    return _seed([seed, _POOL_TAG, epoch])


def step_generator(seed: int, epoch: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator for one training step's draws (which clips, which nets)."""
    return torch.Generator().manual_seed(_seed([seed, _STEP_TAG, epoch, step, rank]))


def _seed(keys: Sequence[int]) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0])


class OpenSpaceSimulator(nn.Module):
    """A pool of ``num_nets`` frozen random generator-like nets (see the module docstring).

    ``forward(clips, nets)``: (B, T, 3, H, W) -> (B, T, 3, H, W), clip b re-synthesised by
    net ``nets[b]`` (all its frames by the same net); same dtype and device. ``extend``
    appends ``fraction`` of a batch's clips, simulated, with :data:`OPEN_SPACE_LABEL`.
    ``mean``/``std`` (the loader's normalisation, [0, 1] scale) enable re-quantisation.
    """

    def __init__(
        self,
        num_nets: int = 8,
        fraction: float = 0.25,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        width: int = 16,
        seed: int = 0,
    ):
        super().__init__()
        if num_nets < 1 or width < 1:
            raise ValueError(f"num_nets and width must be >= 1, got {num_nets}, {width}")
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.num_nets, self.fraction, self.width = num_nets, fraction, width
        # conv weights of all nets stacked along dim 0 (4-d, so that .to(channels_last) works)
        self._kernels = {
            "encode": (width, 3, 3, 3),
            "decode": (3, width, 3, 3),
            "transposed": (3, 3, 4, 4),  # conv_transpose2d's (in, out, kh, kw)
            "shuffle": (12, 3, 3, 3),
            "post": (3, 3, 3, 3),
        }
        for name, shape in self._kernels.items():
            empty = torch.zeros(num_nets * shape[0], *shape[1:])
            self.register_buffer(name, empty, persistent=False)
        # per-net scalars stay on the CPU (plain lists): reading them costs no device sync
        self.kind: list[str] = []
        self.residual_scale: list[float] = []
        self.ellipse: list[list[float]] = []
        self.quantise = mean is not None
        if mean is not None and std is not None:
            for name, value in (("mean255", mean), ("std255", std)):
                scaled = 255.0 * torch.tensor(value, dtype=torch.float32).view(3, 1, 1)
                self.register_buffer(name, scaled, persistent=False)
        self.redraw(seed)

    def extra_repr(self) -> str:
        return f"num_nets={self.num_nets}, fraction={self.fraction}, width={self.width}"

    @torch.no_grad()
    def redraw(self, seed: int) -> None:
        """Draw a new pool of nets from ``seed`` (on the CPU, so any device gets the same)."""
        g = torch.Generator().manual_seed(seed)
        m = self.num_nets

        def uniform(lo: float, hi: float, *shape: int) -> Tensor:
            return lo + (hi - lo) * torch.rand(shape, generator=g)

        strength = uniform(0.02, 0.08, m)
        per_net = strength.view(m, 1, 1, 1, 1)
        kinds = torch.randperm(m, generator=g) % len(UPSAMPLERS)  # every upsampler in turn
        self.kind = [UPSAMPLERS[i] for i in kinds.tolist()]
        self.residual_scale = uniform(0.05, 0.25, m).tolist()
        self.ellipse = torch.stack(
            [
                uniform(-0.1, 0.1, m),  # centre x, y in [-1, 1] image coordinates
                uniform(-0.1, 0.1, m),
                uniform(0.6, 1.0, m),  # radii x, y
                uniform(0.6, 1.0, m),
                uniform(0.1, 0.3, m),  # feather
            ],
            dim=1,
        ).tolist()
        drawn = {
            "encode": torch.randn(m, self.width, 3, 3, 3, generator=g) * math.sqrt(2 / 27),
            "decode": torch.randn(m, 3, self.width, 3, 3, generator=g) / math.sqrt(9 * self.width),
            "transposed": _bilinear_kernel() + per_net * torch.randn(m, 3, 3, 4, 4, generator=g),
            "shuffle": _nearest_shuffle() + per_net * torch.randn(m, 12, 3, 3, 3, generator=g),
            "post": _identity(3) + 0.5 * per_net * torch.randn(m, 3, 3, 3, 3, generator=g),
        }
        for name, value in drawn.items():
            buffer = getattr(self, name)
            buffer.copy_(value.reshape(buffer.shape))

    def count(self, batch_size: int) -> int:
        """How many simulated clips a batch of ``batch_size`` gets: ``fraction`` of it, >= 1."""
        return min(batch_size, max(1, round(self.fraction * batch_size)))

    @torch.no_grad()
    def extend(
        self, clips_btchw: Tensor, labels: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """(B, T, 3, H, W), (B,) -> (B + n, ...), (B + n,): n = :meth:`count` (B) clips of the
        batch (any label) drawn without replacement, each re-synthesised by a net drawn from
        the pool, appended with label :data:`OPEN_SPACE_LABEL`."""
        b = len(labels)
        n = self.count(b)
        rows = torch.randperm(b, generator=generator)[:n].to(clips_btchw.device)
        nets = torch.randint(self.num_nets, (n,), generator=generator).to(clips_btchw.device)
        simulated = self(clips_btchw[rows], nets)
        extra = torch.full((n,), OPEN_SPACE_LABEL, dtype=labels.dtype, device=labels.device)
        return torch.cat([clips_btchw, simulated]), torch.cat([labels, extra])

    @torch.no_grad()
    def forward(self, clips_btchw: Tensor, nets: Tensor) -> Tensor:
        """(B, T, 3, H, W), (B,) net ids -> (B, T, 3, H, W) simulated clips."""
        if clips_btchw.dim() != 5 or clips_btchw.shape[2] != 3:
            raise ValueError(f"expected clips (B, T, 3, H, W), got {tuple(clips_btchw.shape)}")
        if clips_btchw.shape[-1] < 2 or clips_btchw.shape[-2] < 2:
            raise ValueError(f"frames must be at least 2x2, got {tuple(clips_btchw.shape[-2:])}")
        out = torch.empty_like(clips_btchw)
        for k in torch.unique(nets).tolist():
            rows = (nets == k).nonzero().squeeze(1)
            frames = clips_btchw[rows].flatten(0, 1)
            out[rows] = self.apply_net(frames, int(k)).view_as(clips_btchw[rows])
        return out

    def apply_net(self, frames_nchw: Tensor, k: int) -> Tensor:
        """(N, 3, H, W) -> (N, 3, H, W): every frame through net ``k`` of the pool."""
        h, w = frames_nchw.shape[-2:]
        dtype = frames_nchw.dtype

        def weight(name: str) -> Tensor:
            rows = self._kernels[name][0]
            return getattr(self, name)[k * rows : (k + 1) * rows].to(dtype)

        low = F.avg_pool2d(frames_nchw, 2)
        trace = _conv(F.leaky_relu(_conv(low, weight("encode")), 0.2), weight("decode"))
        low = low + self.residual_scale[k] * trace
        up = self._upsample(low, self.kind[k], weight)
        if up.shape[-2:] != (h, w):
            up = F.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)
        out = _conv(up, weight("post"))
        mask = self._mask(k, h, w, frames_nchw)
        out = mask * out + (1 - mask) * frames_nchw
        return self._requantise(out) if self.quantise else out

    def _upsample(self, x: Tensor, kind: str, weight: Callable[[str], Tensor]) -> Tensor:
        if kind in ("nearest", "bilinear"):
            extra = {} if kind == "nearest" else {"align_corners": False}
            return F.interpolate(x, scale_factor=2, mode=kind, **extra)
        if kind == "transposed":
            padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
            return F.conv_transpose2d(padded, weight("transposed"), stride=2, padding=3)
        return F.pixel_shuffle(_conv(x, weight("shuffle")), 2)

    def _mask(self, k: int, h: int, w: int, like: Tensor) -> Tensor:
        """(1, 1, H, W) soft ellipse: ~1 inside, 0.5 on the border, ~0 far outside."""
        cx, cy, rx, ry, feather = self.ellipse[k]
        ys = torch.linspace(-1, 1, h, device=like.device, dtype=like.dtype).view(h, 1)
        xs = torch.linspace(-1, 1, w, device=like.device, dtype=like.dtype).view(1, w)
        r = (((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2).sqrt()
        return torch.sigmoid((1 - r) / feather).view(1, 1, h, w)

    def _requantise(self, frames_nchw: Tensor) -> Tensor:
        """Back to 8-bit pixels and normalised again, as the loader makes every frame."""
        mean, std = self.mean255.to(frames_nchw.dtype), self.std255.to(frames_nchw.dtype)
        pixels = (frames_nchw * std + mean).round().clamp(0, 255)
        return (pixels - mean) / std


def _conv(x: Tensor, weight: Tensor) -> Tensor:
    """3x3 convolution with replicated borders, size kept."""
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight)


def _identity(channels: int) -> Tensor:
    """(channels, channels, 3, 3): the 3x3 convolution that returns its input."""
    kernel = torch.zeros(channels, channels, 3, 3)
    kernel[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
    return kernel


def _bilinear_kernel() -> Tensor:
    """(3, 3, 4, 4): transposed conv (stride 2, per channel) that upsamples bilinearly."""
    k1 = torch.tensor([0.25, 0.75, 0.75, 0.25])
    kernel = torch.zeros(3, 3, 4, 4)
    kernel[torch.arange(3), torch.arange(3)] = torch.outer(k1, k1)
    return kernel


def _nearest_shuffle() -> Tensor:
    """(12, 3, 3, 3): conv whose pixel shuffle by 2 is nearest upsampling (channel c -> the
    four sub-pixel outputs 4c .. 4c + 3)."""
    return _identity(3).repeat_interleave(4, dim=0)
