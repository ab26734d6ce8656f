"""Input filters (SRM, Bayar) and the spectral branch: the properties each one promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attribnet.data.augment import IMAGENET_MEAN, IMAGENET_STD
from attribnet.models.input_filters import BayarConv, MedianResidual, SRMFilter, srm_kernels
from attribnet.models.spectral import LOG_EPS, RadialSpectrum, SpectralBranch

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def normalise(rgb_nchw: torch.Tensor) -> torch.Tensor:
    """Grey levels (0..255) -> the data pipeline's ImageNet-normalised input."""
    return (rgb_nchw / 255 - MEAN) / STD


def flat_image(n: int = 2, size: int = 24) -> torch.Tensor:
    """A different constant per channel and frame, normalised."""
    levels = torch.tensor([[30.0, 140.0, 250.0], [200.0, 90.0, 10.0]])[:n]
    return normalise(levels.view(n, 3, 1, 1).expand(n, 3, size, size).clone())


def test_srm_kernels_are_zhou_et_al_trio():
    kernels = srm_kernels()
    assert kernels.shape == (3, 1, 5, 5)
    assert torch.allclose(kernels.sum(dim=(1, 2, 3)), torch.zeros(3), atol=1e-6)
    assert kernels[0, 0, 2, 2] == -1 and kernels[1, 0, 2, 2] == -1 and kernels[2, 0, 2, 2] == -1
    assert kernels[1, 0, 0, 0] * 12 == -1 and kernels[2, 0, 2, 1] * 2 == 1


@pytest.mark.parametrize(
    ("make", "tolerance"), [(SRMFilter, 1e-5), (MedianResidual, 1e-4)], ids=["srm", "median"]
)
def test_fixed_residuals_have_no_weights_and_kill_a_flat_image(make, tolerance):
    fixed = make()
    assert not list(fixed.parameters())
    assert fixed.state_dict() == {}  # constants live in code, not in checkpoints
    out = fixed(flat_image())
    assert out.shape == (2, 3, 24, 24)
    assert out.abs().max() < tolerance  # borders included: reflection padding


def test_srm_measures_residuals_in_grey_levels_and_truncates():
    base = torch.full((1, 3, 16, 16), 128.0)
    bump = base.clone()
    bump[..., 8, 8] += 1.0  # one grey level in every channel
    out = SRMFilter()(normalise(bump)) - SRMFilter()(normalise(base))
    # centre taps: KB -4/4, KV -12/12, second order -2/2, times 1 level, / truncation 3
    assert torch.allclose(out[0, :, 8, 8], torch.full((3,), -1 / 3), atol=1e-4)
    bump[..., 8, 8] += 100.0
    assert torch.allclose(SRMFilter()(normalise(bump))[0, :, 8, 8], torch.full((3,), -1.0))
    untruncated = SRMFilter(truncation=None)(normalise(bump))
    assert untruncated[0, 0, 8, 8].item() == pytest.approx(-101.0, abs=1e-2)


def test_bayar_constraint_holds_after_an_optimizer_step():
    torch.manual_seed(0)
    bayar = BayarConv()
    before = bayar.effective_weight().detach().clone()
    optimizer = torch.optim.SGD(bayar.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        optimizer.zero_grad()
        (bayar(torch.randn(2, 3, 16, 16)) * torch.randn(2, 3, 16, 16)).sum().backward()
        optimizer.step()
    weight = bayar.effective_weight()
    assert not torch.allclose(weight, before)
    assert torch.equal(weight[:, :, 2, 2], torch.full((3, 3), -1.0))
    off_centre = weight.sum(dim=(2, 3)) - weight[:, :, 2, 2]
    assert torch.allclose(off_centre, torch.ones(3, 3), atol=1e-5)
    assert bayar(flat_image()).abs().max() < 1e-4  # every 2-D kernel sums to 0
    assert [n for n, _ in bayar.named_parameters()] == ["free"]


def test_median_residual_keeps_colour_and_measures_grey_levels():
    base = torch.full((1, 3, 16, 16), 128.0)
    bump = base.clone()
    bump[0, 0, 8, 8] += 1.0  # one grey level, red only
    out = MedianResidual()(normalise(bump))
    # the 3x3 median ignores one outlier: the residual is the bump, / truncation 3, in red
    assert out[0, 0, 8, 8].item() == pytest.approx(1 / 3, abs=1e-4)
    out[0, 0, 8, 8] = 0
    assert out.abs().max() < 1e-4  # nowhere else, no other channel
    bump[0, 0, 8, 8] += 100.0
    assert MedianResidual()(normalise(bump))[0, 0, 8, 8].item() == pytest.approx(1.0)
    untruncated = MedianResidual(truncation=None)(normalise(bump))
    assert untruncated[0, 0, 8, 8].item() == pytest.approx(101.0, abs=1e-2)


def test_median_residual_leaves_a_straight_edge_alone():
    # content, not noise: a vertical step edge is its own 3x3 median, so nothing passes
    step = torch.full((1, 3, 16, 16), 40.0)
    step[..., 8:] = 200.0
    assert MedianResidual()(normalise(step)).abs().max() < 1e-4
    assert SRMFilter()(normalise(step)).abs().max() > 0.5  # where SRM answers at full scale


@pytest.mark.parametrize(
    "make", [SRMFilter, BayarConv, MedianResidual], ids=["srm", "bayar", "median"]
)
def test_filters_run_in_float32_under_autocast(make):
    torch.manual_seed(0)
    module = make()
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, module(x))


def numpy_radial_profile(grey_hw: np.ndarray, bins: int) -> np.ndarray:
    """The spectral branch's profile of one grey frame, written plainly in float64."""
    h, w = grey_hw.shape
    z = (grey_hw - grey_hw.mean()) / grey_hw.std()
    spectrum = np.fft.fft2(z * np.outer(np.hanning(h), np.hanning(w)), norm="ortho")
    log_amp = np.log(np.abs(spectrum) + LOG_EPS)
    sums, counts = np.zeros(bins), np.zeros(bins)
    for ky in range(h):
        for kx in range(w):
            fy, fx = np.fft.fftfreq(h)[ky], np.fft.fftfreq(w)[kx]
            r = 2 * np.hypot(fy, fx)
            if r <= 1:
                b = min(int(r * bins), bins - 1)
                sums[b] += log_amp[ky, kx]
                counts[b] += 1
    return sums / counts


@pytest.mark.parametrize(("h", "w", "bins"), [(32, 32, 16), (33, 40, 16), (64, 48, 24)])
def test_radial_profile_matches_a_plain_numpy_implementation(h, w, bins):
    rng = np.random.default_rng(h * w)
    frames = torch.from_numpy(rng.normal(size=(2, 3, h, w))).float()
    ours = RadialSpectrum(bins)(frames).numpy()
    luma = np.array([0.299, 0.587, 0.114])
    for i in range(2):
        grey = np.einsum("c,chw->hw", luma, frames[i].double().numpy())
        # float32 FFT rounding, amplified by the log where |F| is near 0 (slope up to 1/1e-3)
        np.testing.assert_allclose(ours[i], numpy_radial_profile(grey, bins), atol=1e-4)


def test_radial_profile_peaks_in_the_bin_of_a_periodic_pattern():
    # 17 cycles per 64 pixels along x and along y: r = 2 * 17/64 = 0.531; 12 along both
    # (diagonal): r = 2 * sqrt(2) * 12/64 = 0.530. Bin 8 of 16 holds 0.5 <= r < 0.5625.
    torch.manual_seed(0)
    x = torch.arange(64, dtype=torch.float32)
    wave = torch.cos(2 * torch.pi * 17 * x / 64)
    diagonal = torch.cos(2 * torch.pi * 12 * (x.view(1, 64) + x.view(64, 1)) / 64)
    pattern = wave.view(1, 64) + wave.view(64, 1) + diagonal
    profile = RadialSpectrum(16)((pattern + 0.1 * torch.randn(3, 64, 64)).unsqueeze(0))[0]
    assert profile.argmax().item() == 8
    assert profile[8] > profile[[7, 9]].max() + 0.3


def test_radial_profile_ignores_offset_and_gain():
    torch.manual_seed(0)
    frames = torch.randn(2, 3, 32, 32)
    spectrum = RadialSpectrum(16)
    assert torch.allclose(spectrum(frames), spectrum(3.0 * frames - 1.5), atol=1e-4)


def test_radial_profile_is_the_spectrum_baselines_feature():
    baseline = pytest.importorskip("attribnet.baselines.spectrum")
    rng = np.random.default_rng(0)
    frames_thwc = rng.integers(0, 256, size=(5, 48, 56, 3), dtype=np.uint8)
    # with equal stds the normalised channels' luma is the uint8 luma up to offset and gain
    clip = (torch.from_numpy(frames_thwc).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    ours = RadialSpectrum(16)(clip).mean(dim=0).numpy()
    np.testing.assert_allclose(ours, baseline.spectrum_features(frames_thwc, 16), atol=1e-4)


def test_frames_too_small_for_the_bins_are_a_clear_error():
    with pytest.raises(ValueError, match=r"too small for 32 radial bins.*spectral_bins <= 16"):
        RadialSpectrum(32)(torch.randn(1, 3, 32, 32))


def test_spectral_branch_weights_frames_like_the_fusion():
    torch.manual_seed(0)
    branch = SpectralBranch(8, bins=8).eval()
    clips = torch.randn(2, 3, 3, 16, 16)
    one_hot = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    weighted = branch(clips, one_hot)
    assert weighted.shape == (2, 8)
    assert torch.allclose(weighted[0], branch(clips[:1, 1:2], torch.ones(1, 1))[0], atol=1e-6)
    assert torch.allclose(weighted[1], branch(clips[1:, 2:3], torch.ones(1, 1))[0], atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(branch(clips, one_hot)).all()
