"""SAM, TAM and eq. 5 fusion against hand computations of the paper's equations."""

from __future__ import annotations

import pytest
import torch

from attribnet.models.attention import (
    ChannelAttention,
    FrameScorer,
    MeanFusion,
    SpatialAttention,
    TemporalAttention,
    weighted_mean,
)


def test_sam_matches_hand_computation():
    torch.manual_seed(0)
    sam = SpatialAttention()
    y = torch.randn(2, 6, 5, 4)
    w = sam.conv.weight.detach()  # (1, 2, 7, 7)
    mean_c, max_c = y.mean(1), y.amax(1)  # (N, H, W)
    expected_map = torch.zeros(2, 5, 4)
    for n in range(2):
        for i in range(5):
            for j in range(4):
                acc = 0.0
                for c, plane in enumerate((mean_c[n], max_c[n])):
                    for di in range(7):
                        for dj in range(7):
                            ii, jj = i + di - 3, j + dj - 3
                            if 0 <= ii < 5 and 0 <= jj < 4:
                                acc += float(w[0, c, di, dj]) * float(plane[ii, jj])
                expected_map[n, i, j] = torch.sigmoid(torch.tensor(acc))
    assert torch.allclose(sam.attention_map(y)[:, 0], expected_map, atol=1e-5)
    assert torch.allclose(sam(y), y * expected_map[:, None], atol=1e-5)
    assert sam.conv.bias is None and sam.conv.in_channels == 2


def test_tam_matches_hand_computation():
    torch.manual_seed(1)
    t, c = 10, 7
    tam = TemporalAttention(t)
    f = torch.randn(3, t, c)
    w1, w2 = tam.fc1.weight.detach(), tam.fc2.weight.detach()  # (5, 10), (10, 5)
    assert tam.fc1.bias is None and tam.fc2.bias is None
    assert w1.shape == (5, 10) and w2.shape == (10, 5)
    fused, m = tam(f)
    for b in range(3):
        s = [sum(float(f[b, i, k]) for k in range(c)) / c for i in range(t)]
        hidden = [max(0.0, sum(float(w1[h, i]) * s[i] for i in range(t))) for h in range(5)]
        logits = [sum(float(w2[i, h]) * hidden[h] for h in range(5)) for i in range(t)]
        m_ref = torch.sigmoid(torch.tensor(logits))
        assert torch.allclose(m[b], m_ref, atol=1e-5)
        fused_ref = sum(m_ref[i] * f[b, i] for i in range(t)) / m_ref.sum()
        assert torch.allclose(fused[b], fused_ref, atol=1e-5)


def test_tam_rejects_other_clip_lengths():
    with pytest.raises(ValueError, match="T=10"):
        TemporalAttention(10)(torch.randn(2, 8, 4))


def test_weighted_mean_is_eq5():
    f = torch.tensor([[[1.0, 0.0], [3.0, 4.0]]])
    m = torch.tensor([[1.0, 3.0]])
    assert torch.allclose(weighted_mean(f, m), torch.tensor([[2.5, 3.0]]))


def test_mean_fusion_and_scorer_are_t_agnostic():
    f = torch.randn(2, 5, 32)
    fused, w = MeanFusion()(f)
    assert torch.allclose(fused, f.mean(1)) and torch.all(w == 1)
    scorer = FrameScorer(32)
    for t in (3, 7):
        fused, w = scorer(torch.randn(2, t, 32))
        assert fused.shape == (2, 32) and w.shape == (2, t)
        assert torch.all((w > 0) & (w < 1))


def test_channel_attention_gates_each_channel():
    torch.manual_seed(2)
    ca = ChannelAttention(32, reduction=16)
    x = torch.randn(2, 32, 4, 4)
    gate = ca(x) / x
    # one gate per (sample, channel), constant over space, in (0, 1)
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-5)
    assert torch.all((gate > 0) & (gate < 1))
