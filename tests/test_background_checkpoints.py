"""Checkpoints written in a background thread (what GPU runs do), exercised on the CPU."""

from __future__ import annotations

import threading

import pytest
import torch

import attnmel.trainer as trainer
from attnmel.checkpoint import BackgroundWriter, cpu_snapshot
from tests.helpers import poison_loss_after, tiny_config


def test_the_writer_keeps_order_and_hands_errors_to_the_training_thread() -> None:
    writer, done = BackgroundWriter(), []
    release = threading.Event()
    writer.submit(lambda: (release.wait(5), done.append(1)))
    assert done == []  # the job runs in its thread; submit did not wait for it
    release.set()
    writer.submit(lambda: done.append(2))  # waits for the first job, so writes land in order
    writer.wait()
    assert done == [1, 2]

    def fail() -> None:
        raise OSError(28, "no space left on device")

    writer.submit(fail)
    with pytest.raises(OSError, match="no space left"):
        writer.wait()
    writer.wait()  # the error is raised once


def test_a_snapshot_does_not_follow_the_live_tensors() -> None:
    live = {"model": {"w": torch.zeros(3)}, "history": [{"epoch": 1}], "n": 4}
    snapshot = cpu_snapshot(live)
    live["model"]["w"].add_(1.0)
    assert torch.equal(snapshot["model"]["w"], torch.zeros(3)) and snapshot["n"] == 4
    assert snapshot["history"] == [{"epoch": 1}] and snapshot["history"] is not live["history"]


def test_background_writes_keep_resume_exact_and_divergence_safe(
    tiny_synthetic, tmp_path, monkeypatch
) -> None:
    from attnmel.trainer import TrainingDiverged, fit

    monkeypatch.setattr(trainer, "background_checkpoints", lambda device: True)

    def config(name: str, epochs: int, resume: bool = False):
        return tiny_config(tiny_synthetic, tmp_path, epochs=epochs, run_dir=str(tmp_path / name), resume=resume,
                           eval_splits="Validation", lr_step=1)  # fmt: skip

    straight = fit(config("straight", 2), log=lambda _m: None)
    fit(config("resumed", 1), log=lambda _m: None)
    resumed = fit(config("resumed", 2, resume=True), log=lambda _m: None)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    a = torch.load(tmp_path / "straight" / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "latest.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and all(
        torch.equal(a["model"][k], b["model"][k]) for k in a["model"]
    )

    batches = -(-straight.history[0]["train_images"] // 4)  # an epoch's batches at batch size 4
    poison_loss_after(monkeypatch, batches)
    with pytest.raises(TrainingDiverged, match=rf"epoch 2, batch 1/{batches}"):
        fit(config("diverged", 3), log=lambda _m: None)
    latest = torch.load(tmp_path / "diverged" / "checkpoints" / "latest.pt", weights_only=True)
    assert latest["epoch"] == 1  # epoch 1's write, in flight when epoch 2 began, finished before fit raised
    assert all(torch.isfinite(v).all() for v in latest["model"].values() if v.is_floating_point())
