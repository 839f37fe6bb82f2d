"""Resume: on the CPU with a fixed seed, 2 epochs straight == 1 epoch + resume + 1 epoch, bit for bit."""

from __future__ import annotations

import pytest
import torch

from attnmel.trainer import fit

from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_resume_is_bit_identical(tmp_path) -> None:
    from attnmel.data import make_synthetic

    root = tmp_path / "syn"
    make_synthetic(root, n=40, size=48, seed=1)
    base = tiny_config(
        root,
        tmp_path / "runs",
        epochs=2,
        max_train_samples=10,
        sampler="oversample",
        oversample=2,
        lr_step=1,
        seed=7,
        eval_splits="Validation",
        n_boot=0,
    )
    quiet = {"log": lambda _msg: None}
    straight = fit(base.replace(run_name="straight"), **quiet)
    fit(base.replace(run_name="split", epochs=1), **quiet)
    resumed = fit(base.replace(run_name="split", epochs=2, resume=True), **quiet)

    a = torch.load(straight.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(resumed.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key  # weights and BatchNorm statistics
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["scheduler"] == b["scheduler"] and a["scheduler"]["last_epoch"] == 2
    assert [r["lr"] for r in resumed.history] == [0.01, 0.001]  # StepLR stepped once per epoch
    keys = ("epoch", "train_loss", "val_auc", "val_ap", "is_best")
    assert [{k: r[k] for k in keys} for r in straight.history] == [
        {k: r[k] for k in keys} for r in resumed.history
    ]
    assert resumed.best_epoch == straight.best_epoch
    # and the weights did move: a resumed run that silently restarted or skipped would not match epoch-2 weights
    c = torch.load(resumed.run_dir / "checkpoints" / "best.pt", weights_only=True)
    if c["epoch"] == 1:
        assert any(not torch.equal(c["model"][k], b["model"][k]) for k in b["model"])
