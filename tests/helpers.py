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
