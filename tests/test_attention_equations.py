"""Eq. 1-3 of Yan et al. (IPMI 2019) checked on small hand-built tensors."""

from __future__ import annotations

import math

import pytest
import torch

from attnmel.models import AttentionBlock, attnmel_cnn


def _set(conv: torch.nn.Conv2d, weight: list, bias: list | None = None) -> None:
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight, dtype=torch.float32).view_as(conv.weight))
        if bias is not None:
            conv.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_eq1_to_3_by_hand():
    """F = [1, -2] on a 1x2 grid, G a 1x1 map of 3; W_f = 2, W_g = 1, W = 0.5, bias -1.

    W_f F + up(W_g G) = [5, -1]; ReLU -> [5, 0]; R = [1.5, -1]; A = sigmoid(R);
    pooled = mean(a_i f_i) = (sigmoid(1.5) * 1 + sigmoid(-1) * -2) / 2.
    """
    block = AttentionBlock(1, 1, inter_channels=1)
    _set(block.W_f, [2.0])
    _set(block.W_g, [1.0])
    _set(block.W, [0.5], [-1.0])
    f = torch.tensor([1.0, -2.0]).view(1, 1, 1, 2)
    g = torch.tensor([3.0]).view(1, 1, 1, 1)
    with torch.no_grad():
        r = block.response(f, g)
        pooled, a = block(f, g)
    assert r.flatten().tolist() == pytest.approx([1.5, -1.0])
    assert a.flatten().tolist() == pytest.approx([_sigmoid(1.5), _sigmoid(-1.0)])
    assert pooled.item() == pytest.approx((_sigmoid(1.5) * 1 - 2 * _sigmoid(-1.0)) / 2)
    # Not the "divide by the sum of a" variant:
    assert pooled.item() != pytest.approx(
        (_sigmoid(1.5) - 2 * _sigmoid(-1.0)) / (_sigmoid(1.5) + _sigmoid(-1.0))
    )


def test_global_map_is_upsampled_bilinearly_without_aligned_corners():
    """A 2x2 G = [[0, 1], [2, 3]] becomes the 4x4 grid of F; with W_f = 0 and W = 1, R = up(G)."""
    block = AttentionBlock(1, 1, inter_channels=1)
    _set(block.W_f, [0.0])
    _set(block.W_g, [1.0])
    _set(block.W, [1.0], [0.0])
    f = torch.zeros(1, 1, 4, 4)
    g = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)
    # align_corners=False: output pixel centres sample the input at -0.25, 0.25, 0.75, 1.25 (clamped),
    # so a row [a, b] becomes [a, 0.75a + 0.25b, 0.25a + 0.75b, b].
    expected = [
        [0.0, 0.25, 0.75, 1.0],
        [0.5, 0.75, 1.25, 1.5],
        [1.5, 1.75, 2.25, 2.5],
        [2.0, 2.25, 2.75, 3.0],
    ]
    with torch.no_grad():
        r = block.response(f, g)
    assert torch.allclose(r[0, 0], torch.tensor(expected))


def test_multichannel_response_matches_explicit_sums():
    """Eq. 1 with 2-channel F and G, 2 filters: R_i = sum_k w_k relu((W_f f_i)_k + (W_g g)_k) + b."""
    block = AttentionBlock(2, 2, inter_channels=2)
    wf = [[1.0, -1.0], [0.5, 2.0]]
    wg = [[0.0, 1.0], [-1.0, 0.0]]
    w, b = [1.0, -2.0], 0.25
    _set(block.W_f, wf)
    _set(block.W_g, wg)
    _set(block.W, w, [b])
    f = torch.tensor([[[1.0, 2.0]], [[3.0, -1.0]]]).view(1, 2, 1, 2)  # f_1 = (1, 3), f_2 = (2, -1)
    g = torch.tensor([2.0, -4.0]).view(1, 2, 1, 1)
    g_proj = [sum(wg[k][c] * [2.0, -4.0][c] for c in range(2)) for k in range(2)]  # (-4, -2)
    expected = []
    for fi in ([1.0, 3.0], [2.0, -1.0]):
        hidden = [max(0.0, sum(wf[k][c] * fi[c] for c in range(2)) + g_proj[k]) for k in range(2)]
        expected.append(sum(w[k] * hidden[k] for k in range(2)) + b)
    with torch.no_grad():
        r = block.response(f, g)
        pooled, a = block(f, g)
    assert r.flatten().tolist() == pytest.approx(expected)
    a_vals = [_sigmoid(v) for v in expected]
    assert pooled[0].tolist() == pytest.approx(
        [(a_vals[0] * 1 + a_vals[1] * 2) / 2, (a_vals[0] * 3 + a_vals[1] * -1) / 2]
    )


def test_softmax_variant_sums_to_one_and_pools_by_weighted_sum():
    torch.manual_seed(0)
    block = AttentionBlock(8, 16, inter_channels=4, normalize="softmax")
    f, g = torch.randn(3, 8, 4, 6), torch.randn(3, 16, 2, 3)
    with torch.no_grad():
        pooled, a = block(f, g)
        r = block.response(f, g)
    assert a.shape == (3, 1, 4, 6)
    assert torch.allclose(a.sum(dim=(1, 2, 3)), torch.ones(3))
    assert torch.allclose(a.flatten(1), torch.softmax(r.flatten(1), dim=1))
    assert torch.allclose(pooled, (a * f).sum(dim=(2, 3)), atol=1e-6)


def test_sigmoid_variant_pools_by_mean():
    torch.manual_seed(1)
    block = AttentionBlock(8, 16, inter_channels=4)
    f, g = torch.randn(2, 8, 4, 4), torch.randn(2, 16, 1, 1)
    with torch.no_grad():
        pooled, a = block(f, g)
    assert torch.allclose(a, torch.sigmoid(block.response(f, g)))
    assert torch.allclose(pooled, (a * f).mean(dim=(2, 3)), atol=1e-6)
    assert not torch.allclose(a.sum(dim=(1, 2, 3)), torch.ones(2))


def test_model_wires_pool5_as_guide_and_concatenates_g_g3_g4():
    torch.manual_seed(2)
    model = attnmel_cnn().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pool3, pool4, pool5 = model.features(x)
        g3, a3 = model.attn3(pool3, pool5)
        g4, a4 = model.attn4(pool4, pool5)
        out = model(x)
        logits = model.classifier(torch.cat([pool5.mean((2, 3)), g3, g4], dim=1))
    assert torch.equal(out.attn3, a3) and torch.equal(out.attn4, a4)
    assert torch.allclose(out.logits, logits, atol=1e-6)
