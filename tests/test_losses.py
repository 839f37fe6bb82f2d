"""Focal loss, the Dice attention regulariser (Eq. 4) and the combined loss (Eq. 5) against hand values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnmel.losses import AttnMelLoss, LossParts, dice_attention_loss, focal_loss
from attnmel.models import AttnMelOutput


def _focal(p_t: float, gamma: float = 2.0) -> float:
    return -((1 - p_t) ** gamma) * math.log(p_t)


def test_focal_loss_hand_values():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    target = torch.tensor([0, 1, 1])
    p = [0.5, 1 / (1 + math.e**2), math.e**3 / (1 + math.e**3)]
    expected = sum(_focal(v) for v in p) / 3
    assert focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert focal_loss(logits[:1], target[:1]).item() == pytest.approx(0.25 * math.log(2), rel=1e-6)


def test_focal_loss_gamma_zero_is_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(6, 3), torch.randint(0, 3, (6,))
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target))


def test_focal_loss_alpha():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    target = torch.tensor([0, 1])
    p0, p1 = 0.5, 1 / (1 + math.e**2)
    assert focal_loss(logits, target, alpha=0.25).item() == pytest.approx(
        (0.75 * _focal(p0) + 0.25 * _focal(p1)) / 2, rel=1e-6
    )
    assert focal_loss(logits, target, alpha=[2.0, 3.0]).item() == pytest.approx(
        (2 * _focal(p0) + 3 * _focal(p1)) / 2, rel=1e-6
    )
    with pytest.raises(ValueError, match="alpha"):
        focal_loss(logits, target, alpha=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="alpha"):
        focal_loss(torch.zeros(2, 3), target, alpha=0.25)


@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_focal_loss_is_stable_for_huge_logits(gamma):
    logits = torch.tensor([[1e4, -1e4], [1e4, -1e4], [3e38, -3e38]], requires_grad=True)
    target = torch.tensor([1, 0, 0])
    loss = focal_loss(logits, target, gamma=gamma)
    # Wrong with certainty: (1 - 0)^gamma * 2e4; right with certainty: 0.
    assert loss.item() == pytest.approx(2e4 / 3, rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_focal_loss_shape_errors():
    with pytest.raises(ValueError, match="target"):
        focal_loss(torch.zeros(2, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), gamma=-1.0)


def test_dice_hand_value():
    attn = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).view(1, 1, 2, 2)
    roi = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    # sum(a r) = 1.5, sum(a) = 2, sum(r) = 2: Dice = 3 / 4
    assert dice_attention_loss(attn, roi).item() == pytest.approx(0.25)


def test_dice_pools_masks_to_attention_grid_by_adaptive_average():
    attn = torch.ones(1, 1, 2, 2)
    roi = torch.zeros(1, 1, 4, 4)
    roi[0, 0, 0, 0] = 1.0  # one pixel of the top-left 2x2 cell -> 0.25 there
    roi[0, 0, 2:, 2:] = 1.0  # the whole bottom-right cell -> 1
    # pooled r = [[0.25, 0], [0, 1]]: sum(a r) = 1.25, sum(a) = 4, sum(r) = 1.25
    assert dice_attention_loss(attn, roi).item() == pytest.approx(1 - 2.5 / 5.25)


def test_dice_is_one_tensor_over_the_batch():
    attn = torch.tensor([[[[1.0, 0.0]]], [[[0.5, 0.5]]]])  # (2, 1, 1, 2)
    roi = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]]])  # second image has an empty mask
    batch = 1 - 2 * 1.0 / (2.0 + 1.0)
    per_image_mean = ((1 - 2 * 1.0 / 2.0) + (1 - 0.0)) / 2
    loss = dice_attention_loss(attn, roi).item()
    assert loss == pytest.approx(batch)
    assert loss != pytest.approx(per_image_mean)


def test_dice_all_masks_empty_is_one_with_zero_gradient():
    attn = torch.rand(3, 1, 4, 4, requires_grad=True)
    loss = dice_attention_loss(attn, torch.zeros(3, 1, 32, 32))
    assert loss.item() == 1.0
    loss.backward()
    assert torch.equal(attn.grad, torch.zeros_like(attn))


def test_dice_zero_attention_and_empty_masks_is_zero_and_finite():
    attn = torch.zeros(2, 1, 4, 4, requires_grad=True)
    loss = dice_attention_loss(attn, torch.zeros(2, 1, 32, 32))
    assert loss.item() == 0.0  # Dice of two empty maps defined as 1
    loss.backward()
    assert torch.isfinite(attn.grad).all()


def test_dice_zero_attention_with_masks_is_one():
    attn = torch.zeros(1, 1, 2, 2, requires_grad=True)
    roi = torch.ones(1, 1, 8, 8)
    loss = dice_attention_loss(attn, roi)
    assert loss.item() == 1.0
    loss.backward()
    assert torch.isfinite(attn.grad).all() and (attn.grad < 0).all()  # raising attention on the ROI helps


def test_dice_shape_errors():
    with pytest.raises(ValueError, match="attn"):
        dice_attention_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="roi"):
        dice_attention_loss(torch.zeros(2, 1, 4, 4), torch.zeros(1, 1, 8, 8))


def _output(with_attention: bool) -> AttnMelOutput:
    torch.manual_seed(3)
    logits = torch.randn(2, 2)
    if not with_attention:
        return AttnMelOutput(logits, None, None)
    return AttnMelOutput(logits, torch.rand(2, 1, 4, 4), torch.rand(2, 1, 2, 2))


def test_combined_loss_eq5():
    out = _output(True)
    target = torch.tensor([0, 1])
    roi = (torch.rand(2, 1, 32, 32) > 0.5).float()
    loss = AttnMelLoss()
    assert (loss.lambda3, loss.lambda4, loss.gamma, loss.alpha) == (0.001, 0.01, 2.0, None)
    parts = loss(out, target, roi)
    assert isinstance(parts, LossParts)
    focal = focal_loss(out.logits, target)
    dice3, dice4 = dice_attention_loss(out.attn3, roi), dice_attention_loss(out.attn4, roi)
    assert torch.allclose(parts.focal, focal) and torch.allclose(parts.dice3, dice3)
    assert torch.allclose(parts.dice4, dice4)
    assert parts.total.item() == pytest.approx((focal + 0.001 * dice3 + 0.01 * dice4).item(), rel=1e-6)
    assert dice3.item() > 0 and dice4.item() > 0


@pytest.mark.parametrize("with_attention", [True, False])
def test_combined_loss_without_roi_or_attention_has_zero_dice(with_attention):
    out = _output(with_attention)
    target = torch.tensor([1, 1])
    roi = None if with_attention else torch.ones(2, 1, 32, 32)
    parts = AttnMelLoss(lambda3=1.0, lambda4=1.0)(out, target, roi)
    assert parts.dice3.item() == 0.0 and parts.dice4.item() == 0.0
    assert parts.total.item() == pytest.approx(focal_loss(out.logits, target).item())
