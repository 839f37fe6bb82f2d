"""Checkpoints: self-describing, atomic, loadable with weights_only=True, never the DDP wrapper."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from attnmel.checkpoint import (
    CheckpointError,
    build_model_from_checkpoint,
    load_checkpoint,
    make_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from attnmel.models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_round_trip_rebuilds_the_same_function(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("attnmel_cnn", normalize="softmax").eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    x = torch.randn(2, 3, 32, 32)
    model(x).logits.sum().backward()
    opt.step()
    sched.step()
    ckpt = make_checkpoint(
        nn.DataParallel(model),
        optimizer=opt,
        scheduler=sched,
        epoch=3,
        best_epoch=2,
        best_val_auc=0.75,
        config={"lr": 0.1},
        history=[{"epoch": 1, "val_auc": 0.5}],
    )
    path = save_checkpoint(tmp_path / "c.pt", ckpt)
    raw = torch.load(path, weights_only=True)  # the restricted unpickler accepts the whole file
    assert not any(k.startswith("module.") for k in raw["model"])  # the plain module, not the wrapper
    assert (raw["arch"], raw["arch_kwargs"]["normalize"], raw["epoch"], raw["best_val_auc"]) == (
        "attnmel_cnn",
        "softmax",
        3,
        0.75,
    )
    assert raw["optimizer"]["state"] and raw["scheduler"]["last_epoch"] == 1
    rebuilt, loaded = build_model_from_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(rebuilt(x).logits, model(x).logits)
        assert torch.equal(rebuilt(x).attn3, model(x).attn3)
    assert loaded["history"] == [{"epoch": 1, "val_auc": 0.5}]
    mapped = load_checkpoint(path, mmap=True)  # what compare reads for a config: same contents, not read in
    assert mapped["config"] == {"lr": 0.1} and all(
        torch.equal(mapped["model"][k], v) for k, v in raw["model"].items()
    )


def test_rng_state_round_trip() -> None:
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_refuses_foreign_and_unsafe_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(CheckpointError, match="not an attnmel checkpoint"):
        load_checkpoint(plain)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"format": "attnmel-checkpoint", "x": Evil()}, handle, protocol=2)
    with pytest.raises(CheckpointError, match="evil.pt: not a loadable attnmel checkpoint"):
        load_checkpoint(evil)


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch) -> None:
    model = build_model("vgg16_gap")
    path = save_checkpoint(tmp_path / "latest.pt", make_checkpoint(model, epoch=1))
    before = path.read_bytes()

    def crash(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, make_checkpoint(model, epoch=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temporary file left behind
