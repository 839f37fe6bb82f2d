"""WeightEMA: the same average as torch's AveragedModel, without asking the device anything per update."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from attnmel.ema import WeightEMA


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))


def test_matches_averaged_model_bit_for_bit_weights_and_batchnorm() -> None:
    model = small_net()
    model(torch.randn(2, 3, 8, 8))  # materialise the lazy layer
    ours = WeightEMA(model, 0.9)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(4):
        optimizer.zero_grad()
        model(torch.randn(5, 3, 8, 8)).sum().backward()  # train mode: BatchNorm statistics move too
        optimizer.step()
        ours.update_parameters(model)
        theirs.update_parameters(model)
        assert ours.updates == int(ours.n_averaged) == int(theirs.n_averaged) == step + 1
        for (name, a), b in zip(
            ours.module.state_dict().items(), theirs.module.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), (step, name)
    assert not torch.equal(ours.module[0].weight, model[0].weight)  # an average, not a copy


def test_a_restored_count_continues_the_average() -> None:
    model = small_net()
    model(torch.randn(2, 3, 8, 8))
    straight = WeightEMA(model, 0.5)
    straight.update_parameters(model)
    resumed = WeightEMA(copy.deepcopy(model), 0.5)
    resumed.module.load_state_dict(straight.module.state_dict())
    resumed.set_updates(1)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    straight.update_parameters(model)
    resumed.update_parameters(model)  # averages (count 1), where a fresh count would have copied
    assert torch.equal(straight.module[0].weight, resumed.module[0].weight)
    assert not torch.equal(resumed.module[0].weight, model[0].weight)
    assert resumed.updates == int(resumed.n_averaged) == 2
