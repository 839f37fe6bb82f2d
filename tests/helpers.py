"""Shared test helpers: the smallest training config that still runs the whole engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnmel.config import TrainConfig

TINY_RUN = dict(
    image_size=32,
    resize=40,
    batch_size=4,
    sampler="none",
    num_workers=0,
    device="cpu",
    precision="fp32",
    channels_last=False,
    progress=False,
    cache=False,
)


def tiny_config(root: str | Path, runs: str | Path, **changes: Any) -> TrainConfig:
    """A CPU, fp32, 32 px config over the dataset in ``root`` writing runs under ``runs``."""
    return TrainConfig(**{**TINY_RUN, "data_root": str(root), "runs_root": str(runs), **changes})


def poison_loss_after(monkeypatch: Any, good_steps: int) -> None:
    """Make the trainer's loss NaN from step ``good_steps + 1`` on (a divergence at a known batch)."""
    import attnmel.trainer as trainer

    real = trainer.build_loss
    calls = {"n": 0}

    def poisoned(config: TrainConfig) -> Any:
        loss = real(config)

        def forward(output: Any, target: Any, roi: Any = None) -> Any:
            calls["n"] += 1
            parts = loss(output, target, roi)
            return parts._replace(total=parts.total * float("nan")) if calls["n"] > good_steps else parts

        return forward

    monkeypatch.setattr(trainer, "build_loss", poisoned)
