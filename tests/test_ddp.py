"""DDP with 2 CPU processes (gloo): one step on half batches == one step on the global batch.

The step check uses the trainer's own ``train_step`` on a tiny BatchNorm-free model, because BatchNorm
normalises with per-process batch statistics under DDP (see attnmel.distributed): gradient averaging is exact,
BN statistics are not shared. The second test runs ``fit()`` itself under 2 gloo processes, as ``torchrun``
would launch it, and checks that one run folder with loadable checkpoints comes out.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from attnmel.losses import AttnMelLoss
from attnmel.models import AttnMelOutput
from attnmel.trainer import train_step

pytestmark = [
    pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend"),
    pytest.mark.slow,  # two gloo processes each: about 10 s a test on 2 cores
]


class TinyNet(nn.Module):
    """Conv -> ReLU -> global average pool -> linear, with a sigmoid "attention" map: no BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.attn = nn.Conv2d(8, 1, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> AttnMelOutput:
        f = torch.relu(self.conv(x))  # (N, 8, H, W)
        a = torch.sigmoid(self.attn(f))  # (N, 1, H, W)
        return AttnMelOutput(self.fc((a * f).mean(dim=(2, 3))), a, a)


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(8, 3, 16, 16, generator=g),
        "label": torch.tensor([0, 1, 1, 0, 1, 0, 0, 1]),
        "roi": (torch.rand(8, 1, 16, 16, generator=g) > 0.5).float(),
    }


def _train(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss = AttnMelLoss(lambda3=0.1, lambda4=0.1)
    for batch in batches:
        train_step(model, batch, loss, opt, scaler, device=torch.device("cpu"), use_roi=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step_worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(TinyNet())
        data = _data()
        half = {k: v[rank * 4 : (rank + 1) * 4] for k, v in data.items()}  # this process's share of the batch
        _train(model, [half, half, half])
        if rank == 0:
            torch.save(model.module.state_dict(), out)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_single_process_on_the_global_batch(tmp_path) -> None:
    out = tmp_path / "ddp.pt"
    mp.spawn(_step_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    torch.manual_seed(0)
    single = TinyNet()
    _train(single, [_data()] * 3)
    ddp = torch.load(out, weights_only=True)
    moved = False
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-5, atol=1e-6)
        moved |= not torch.equal(value, TinyNet().state_dict()[name])
    assert moved


def _fit_worker(rank: int, world: int, port: int, root: str, runs: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from attnmel.trainer import fit
    from tests.helpers import tiny_config

    config = tiny_config(
        root,
        runs,
        epochs=1,
        max_train_samples=8,
        run_name="ddp",
        eval_splits="Validation",
        n_boot=0,
    )
    result = fit(config, log=lambda _msg: None)
    torch.save(
        {"rank": rank, "images": result.history[0]["train_images"] if result.history else -1},
        Path(runs) / f"rank{rank}.pt",
    )


def test_fit_under_two_gloo_processes_writes_one_run_folder(tmp_path) -> None:
    from attnmel.data import make_synthetic

    make_synthetic(tmp_path / "syn", n=40, size=48, seed=0)
    runs = tmp_path / "runs"
    mp.spawn(_fit_worker, args=(2, _free_port(), str(tmp_path / "syn"), str(runs)), nprocs=2, join=True)
    run = runs / "ddp"
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and not any(k.startswith("module.") for k in ckpt["model"])
    assert (run / "history.csv").is_file() and (run / "predictions" / "Validation.csv").is_file()
    assert torch.load(runs / "rank0.pt")["images"] == 8  # both processes' images counted (4 + 4 per epoch)
    assert torch.load(runs / "rank1.pt")["images"] == -1  # rank 1 keeps no history and writes no files
    assert sorted(p.name for p in runs.iterdir()) == ["ddp", "rank0.pt", "rank1.pt"]  # one run folder
