"""Gradient clipping in the trainer's step: the update never exceeds lr x the clip norm."""

from __future__ import annotations

import pytest
import torch

from attnmel.config import TrainConfig
from attnmel.losses import AttnMelLoss
from attnmel.trainer import train_step

from .test_ddp import TinyNet, _data


def _update_norm(clip: float | None) -> float:
    torch.manual_seed(0)
    model = TinyNet()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # plain SGD: the update is -lr * gradient
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    batch = _data()
    batch["label"] = torch.ones_like(batch["label"])
    train_step(model, batch, AttnMelLoss(), opt, scaler, device=torch.device("cpu"), grad_clip_norm=clip)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm())


def test_clipping_bounds_the_update_and_leaves_small_gradients_alone():
    free = _update_norm(None)
    assert free > 1e-3
    assert _update_norm(free / 10) == pytest.approx(free / 10, rel=1e-4)
    assert _update_norm(free * 10) == pytest.approx(free, rel=1e-6)


def test_clip_norm_must_be_positive():
    with pytest.raises(ValueError, match="grad_clip_norm"):
        TrainConfig(grad_clip_norm=0.0)
