"""The trainer's own images/s beside the bare training step's, at the same settings (issue 12, item 4).

:func:`attnmel.bench.train_step_throughput` times forward + loss + backward + SGD on one batch already on the
device: what the model and the hardware allow. The trainer adds everything around it (the data loader and its
augmentation, moving batches to the device, mixup, the EMA, the loss bookkeeping, the progress bar). Their ratio
says how much of the step's speed a real run keeps; the target is at least 85%.

    from attnmel.bench_trainer import trainer_vs_step
    from attnmel.config import TrainConfig
    trainer_vs_step(TrainConfig.from_preset("smoke", epochs=3, batch_size=32))

The trainer's rate is images over the SGD steps' wall time (history's ``train_seconds``) of every epoch after
the first, which warms up (worker start, the preprocessing cache, cuDNN autotuning, torch.compile). The whole epoch's rate,
validation and checkpoints included, is reported beside it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from attnmel.bench import MODES, default_min_seconds, default_steps, train_step_throughput
from attnmel.config import TrainConfig
from attnmel.device import resolve_precision, select_device

TARGET_FRACTION = 0.85  # the trainer should keep at least this share of the bare step's images/s


def step_mode(precision: str, channels_last: bool, compile_mode: str | None = None) -> str:
    """The benchmark mode (:data:`attnmel.bench.MODES`) that runs a resolved precision and memory layout, eager
    (``compile_mode`` None) or compiled in that torch.compile mode."""
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"no benchmark mode for precision {precision!r}; expected fp32, bf16 or fp16")
    for name, spec in MODES.items():
        spec_compile_mode = spec.compile_mode if spec.compile else None
        if (spec.amp_dtype, spec.channels_last, spec_compile_mode) == (
            dtypes[precision],
            channels_last,
            compile_mode,
        ):
            return name
    compiled = f", compiled ({compile_mode})" if compile_mode is not None else ""
    raise ValueError(
        f"no benchmark mode for precision {precision!r} with channels_last={channels_last}{compiled}; "
        f"the modes are {', '.join(MODES)}"
    )


def trainer_vs_step(
    config: TrainConfig,
    *,
    steps: int | None = None,
    min_seconds: float | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``config`` (at least 2 epochs) in a temporary run folder unless it names one, then time the bare
    step at the same model, image size, batch size, precision and layout; returns both rates and their ratio.

    ``steps`` / ``min_seconds``: the bare step's timed steps (default: at least 3, the median is the rate) and
    minimum timed seconds (default: the bench's, 2 s on a GPU).
    """
    from attnmel.trainer import fit

    if config.epochs < 2:
        raise ValueError(f"trainer_vs_step needs epochs >= 2 (the first warms up), got {config.epochs}")
    device = select_device(config.device)
    precision = resolve_precision(config.precision, device)
    mode = step_mode(precision, config.channels_last, config.compile_mode if config.compile else None)
    say = log or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="attnmel-trainer-bench-") as tmp:
        if config.run_dir is None:
            config = dataclasses.replace(config, run_dir=str(Path(tmp) / "run"), progress=False)
        say(
            f"training {config.model} for {config.epochs} epochs at {config.image_size} px, batch "
            f"{config.batch_size}, {precision}{' channels_last' if config.channels_last else ''} on {device}"
        )
        run = fit(config, log=say)
    timed = run.history[1:]
    images = sum(r["train_images"] for r in timed)
    trainer_ips = images / sum(r["train_seconds"] for r in timed)
    epoch_ips = images / sum(r["seconds"] for r in timed)
    say(f"bare training step, mode {mode}")
    step = train_step_throughput(
        config.model,
        config.image_size,
        config.batch_size,
        mode,
        steps if steps is not None else max(3, default_steps(config.batch_size)),  # a rate to compare with
        1,
        device,
        min_seconds=default_min_seconds(device) if min_seconds is None else min_seconds,
    )
    if step["status"] != "ok":
        raise RuntimeError(f"the bare training step failed: {step['reason']}")
    return {
        "model": config.model,
        "device": str(device),
        "mode": mode,
        "image_size": config.image_size,
        "batch_size": config.batch_size,
        "num_workers": config.num_workers,
        "epochs_timed": len(timed),
        "images_timed": images,
        "trainer_images_per_s": trainer_ips,
        "trainer_epoch_images_per_s": epoch_ips,
        "step_images_per_s": step["images_per_s"],
        "step_timed_steps": len(step["step_times_s"]),
        "fraction": trainer_ips / step["images_per_s"],
        "target_fraction": TARGET_FRACTION,
    }


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """One line per comparison: the trainer's img/s (SGD steps, and whole epochs), the bare step's, the ratio."""
    lines = [
        "| device | mode | size | batch | workers | trainer img/s (steps) | trainer img/s (whole epoch) "
        f"| bare step img/s | trainer / step (target ≥ {TARGET_FRACTION:.0%}) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        verdict = "meets" if r["fraction"] >= r["target_fraction"] else "below"
        lines.append(
            f"| {r['device']} | {r['mode']} | {r['image_size']} | {r['batch_size']} | {r['num_workers']} "
            f"| {r['trainer_images_per_s']:.1f} | {r['trainer_epoch_images_per_s']:.1f} "
            f"| {r['step_images_per_s']:.1f} | {r['fraction']:.0%} ({verdict}) |"
        )
    return "\n".join(lines)
