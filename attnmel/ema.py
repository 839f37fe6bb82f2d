"""An exponential moving average (EMA) of a model's weights whose update never waits for the device.

``torch.optim.swa_utils.AveragedModel.update_parameters`` asks the device whether its update count is zero on every
call (``bool(n_averaged == 0)``), so on a GPU each training step waited for all the work queued before it. Here the
count is mirrored on the host; the arithmetic is the same (``torch._foreach_lerp_`` per device and dtype, the
first update a copy), so the weights match ``AveragedModel``'s bit for bit.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["WeightEMA"]


class WeightEMA(AveragedModel):
    """``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)``, updated without a
    host-device synchronisation: weights and BatchNorm statistics both follow the average, as before."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.updates = 0  # the host's copy of n_averaged: what decides whether an update copies or averages

    def set_updates(self, count: int) -> None:
        """Restore the update count of a resumed run (host copy and buffer alike)."""
        self.updates = int(count)
        self.n_averaged.fill_(self.updates)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        averaged = [t.detach() for t in itertools.chain(self.module.parameters(), self.module.buffers())]
        current = [
            t.detach().to(a.device)
            for a, t in zip(averaged, itertools.chain(model.parameters(), model.buffers()), strict=True)
        ]
        if self.updates == 0:
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)
        else:
            groups: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
            for a, c in zip(averaged, current, strict=True):
                into = groups.setdefault((a.device, a.dtype), ([], []))
                into[0].append(a)
                into[1].append(c)
            for ours, theirs in groups.values():
                self.multi_avg_fn(ours, theirs, self.n_averaged)
        self.n_averaged += 1  # on the device, queued like the rest
        self.updates += 1
