"""Reliability: each hostile case of the reliability review, reproduced as a test.

One writer per run folder (a second training is refused, a killed holder's lock is stale), divergence reported
as divergence, a full disk in one line with the old checkpoint intact, DataLoader worker errors unwrapped,
checkpoints that don't fit their architecture, temporaries left by kill -9, kill -9 during training or during a
checkpoint write followed by ``--resume`` to a bit-identical result, and the smaller CLI defects. The image
decoding cases live in ``test_reliability_data.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from attnmel.checkpoint import CheckpointError, build_model_from_checkpoint, load_checkpoint
from attnmel.cli import main
from attnmel.data import DataError
from attnmel.io import DiskFullError, atomic_torch_save
from attnmel.runlock import LOCK_NAME, RunFolderLocked, RunLock, remove_stale_temporaries
from attnmel.trainer import TrainingDiverged, fit

from .helpers import TINY_RUN, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
QUIET = {"log": lambda _msg: None}


@pytest.fixture(scope="module")
def syn(tiny_synthetic) -> Path:
    return tiny_synthetic  # the session's shared 40-image set (tests/conftest.py)


def tiny(root: Path, run_dir: Path, **changes):
    base = {"epochs": 2, "max_train_samples": 8, "n_boot": 0, "eval_splits": "Validation", "seed": 3}
    return tiny_config(root, run_dir.parent, run_dir=str(run_dir), **{**base, **changes})


def cli_flags(root: Path, run_dir: Path, **extra: object) -> list[str]:
    """``attnmel train`` flags for the tiny config of tests/helpers.py."""
    values = {**TINY_RUN, "data_root": str(root), "run_dir": str(run_dir), "n_boot": 0}
    values.update({"eval_splits": "Validation", "max_train_samples": 8, **extra})
    argv = ["train"]
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


def run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with one torch thread (so results are comparable across processes)."""
    prelude = "import torch; torch.set_num_threads(1)\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# ------------------------------------------------------------------------------------- 1. one run folder, one writer
def test_a_held_run_folder_refuses_a_second_training_and_writes_nothing(syn, tmp_path) -> None:
    run_dir = tmp_path / "R"
    with RunLock(run_dir, "train"):
        with pytest.raises(RunFolderLocked, match=rf"in use by pid {os.getpid()} on host .*started"):
            fit(tiny(syn, run_dir), **QUIET)
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # no config.json, no checkpoints
    assert (run_dir / LOCK_NAME).read_text() == ""  # released: the record is emptied
    fit(tiny(syn, run_dir), **QUIET)  # free again


def test_lock_of_a_killed_process_is_stale_and_taken_over(tmp_path) -> None:
    folder = tmp_path / "R"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from attnmel.runlock import RunLock; import time; RunLock({str(folder)!r}, 'train').acquire(); "
            "print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderLocked, match=f"pid {holder.pid} "):
            RunLock(folder).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    lock = RunLock(folder).acquire()
    try:
        assert lock.stale is not None and lock.stale["pid"] == holder.pid
        assert f"stale lock left by pid {holder.pid}" in lock.describe_stale()
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


@pytest.mark.slow
def test_two_trainings_into_one_folder_the_second_is_refused_and_the_first_is_whole(syn, tmp_path) -> None:
    """The review's reproduction: the same command with --seed 11, and a second later with --seed 22."""
    run_dir = tmp_path / "R"
    first = subprocess.Popen(
        [sys.executable, "-m", "attnmel", *cli_flags(syn, run_dir, seed=11, epochs=12)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )
    lock_file = run_dir / LOCK_NAME
    deadline = time.monotonic() + 120
    while not (lock_file.is_file() and lock_file.read_text().strip()) and first.poll() is None:
        assert time.monotonic() < deadline, "the first training never took the lock"
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()
    code = main(cli_flags(syn, run_dir, seed=22, epochs=12))
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert code == 1
    config = json.loads((run_dir / "config.json").read_text())
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    latest = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    history = json.loads((run_dir / "history.json").read_text())
    assert config["seed"] == best["config"]["seed"] == latest["config"]["seed"] == 11
    assert len(history) == latest["epoch"] == 12


def test_second_writer_message_on_the_command_line(syn, tmp_path, capsys) -> None:
    run_dir = tmp_path / "R"
    with RunLock(run_dir, "train"):
        assert main(cli_flags(syn, run_dir, epochs=1)) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"{run_dir} is in use by pid {os.getpid()}" in err and "one writer" in err


def test_evaluation_folder_is_locked_too(syn, tmp_path) -> None:
    from attnmel.evaluate import evaluate_checkpoint

    result = fit(tiny(syn, tmp_path / "R", epochs=1), **QUIET)
    with RunLock(result.run_dir / "evaluation"):
        with pytest.raises(RunFolderLocked):
            evaluate_checkpoint(result.run_dir / "checkpoints" / "best.pt", split="Validation", n_boot=0)


# -------------------------------------------------------------------------------------------------- 3. divergence
def test_a_huge_lr_is_reported_as_divergence_not_as_nan_input(syn, tmp_path) -> None:
    config = tiny(syn, tmp_path / "R", lr=1e6, grad_clip_norm=5.0, epochs=3)
    with pytest.raises(TrainingDiverged, match=r"diverged .*epoch \d.*lower --lr, or set --grad-clip-norm"):
        fit(config, **QUIET)


def test_nan_weights_after_a_finite_loss_stop_the_epoch_before_any_checkpoint(
    syn, tmp_path, monkeypatch
) -> None:
    import attnmel.trainer as trainer

    real = trainer.build_optimizer
    state = {"steps": 0}

    def poisoning(model, config):
        optimizer = real(model, config)

        def after_step(_optimizer, _args, _kwargs):
            state["steps"] += 1
            if state["steps"] == 4:  # the last update of epoch 2: no later loss would show it
                with torch.no_grad():
                    next(iter(model.parameters())).fill_(float("nan"))

        optimizer.register_step_post_hook(after_step)
        return optimizer

    monkeypatch.setattr(trainer, "build_optimizer", poisoning)
    run_dir = tmp_path / "R"
    with pytest.raises(TrainingDiverged, match=r"in epoch 2 .*weight tensor\(s\) hold NaN/inf") as err:
        fit(tiny(syn, run_dir, epochs=3), **QUIET)
    assert err.value.epoch == 2
    assert "latest.pt (epoch 1), left intact" in str(err.value)
    latest = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert latest["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in latest["model"].values() if v.is_floating_point())


@pytest.mark.parametrize(
    "argv",
    [
        ["--set", "lr=inf"],
        ["--momentum", "nan"],
        ["--weight-decay", "inf"],
        ["--focal-gamma", "nan"],
        ["--lambda3", "nan"],
        ["--set", "grad_clip_norm=-inf"],
    ],
)
def test_config_rejects_non_finite_numbers(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--print-config", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "must be a finite number" in err or "must be positive" in err, err


# -------------------------------------------------------------------------------------------------- 4. disk full
def test_torch_write_failure_on_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    import attnmel.io as io_module

    target = tmp_path / "latest.pt"
    atomic_torch_save({"w": torch.ones(3)}, target)

    def full_save(obj, handle):  # what torch.save raises when the device fills up mid-write
        handle.write(b"partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: "
            "file write failed"
        )

    monkeypatch.setattr(torch, "save", full_save)
    monkeypatch.setattr(io_module.shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(DiskFullError) as err:
        atomic_torch_save({"w": torch.zeros(250_000)}, target)
    assert str(err.value) == f"no space left on device while writing {target} (1.0 MB needed, 0.0 MB free)"
    assert err.value.errno == 28
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temporary left behind
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))


def test_other_write_errors_are_not_called_disk_full(tmp_path, monkeypatch) -> None:
    def broken(obj, handle):
        raise RuntimeError("file write failed")

    monkeypatch.setattr(torch, "save", broken)  # plenty of space: this is not ENOSPC
    with pytest.raises(RuntimeError, match="file write failed") as err:
        atomic_torch_save({"w": torch.zeros(3)}, tmp_path / "x.pt")
    assert not isinstance(err.value, DiskFullError)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 2 MB tmpfs (needs root and mount rights; skipped elsewhere)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_device_during_training(syn, tiny_tmpfs, capsys) -> None:
    """A checkpoint (~60 MB for AttnMel-CNN) cannot fit in 2 MB: one line on the CLI, nothing half-written."""
    code = main(cli_flags(syn, tiny_tmpfs / "R", epochs=1))
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0, err
    assert "no space left on device while writing" in err and "MB needed" in err
    assert not list((tiny_tmpfs / "R").rglob("*.tmp")) and not list((tiny_tmpfs / "R").rglob("*.pt"))


# ----------------------------------------------------------------------------------------------- 5. worker errors
@pytest.fixture
def corrupt_syn(syn, tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "syn"
    shutil.copytree(syn, root)
    bad = sorted((root / "ISIC-2017_Training_Data").glob("ISIC_*[0-9].jpg"))[0]
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    return root, bad


def test_a_bad_image_in_a_worker_is_one_short_line(corrupt_syn, tmp_path, capsys) -> None:
    root, bad = corrupt_syn
    config = tiny(root, tmp_path / "R", num_workers=1, max_train_samples=None, epochs=1)
    with pytest.raises(DataError) as err:
        fit(config, **QUIET)
    message = str(err.value)
    assert message.startswith(f"{bad}: corrupt or truncated image"), message
    assert "DataLoader worker" not in message and "Traceback" not in message and "\n" not in message

    code = main(cli_flags(root, tmp_path / "R2", num_workers=1, max_train_samples=28, epochs=1))
    line = capsys.readouterr().err.strip()
    assert code == 1 and line.startswith(f"attnmel train: error: {bad}: corrupt or truncated image")
    assert len(line) < 400 + len(str(bad)) and "DataLoader worker" not in line


# ------------------------------------------------------------------------------------ 6. weights vs. architecture
@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory) -> Path:
    from attnmel.checkpoint import make_checkpoint, save_checkpoint
    from attnmel.models import build_model

    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, make_checkpoint(build_model("attnmel_cnn")))
    return path


@pytest.mark.slow  # builds, saves and rebuilds two VGG models (about 20 s on 2 cores)
def test_weights_of_another_architecture_are_one_line(saved_checkpoint, tmp_path, capsys) -> None:
    ckpt = load_checkpoint(saved_checkpoint)
    ckpt["arch"] = "mel_cnn"
    ckpt["arch_kwargs"].pop("normalize")  # Mel-CNN has no attention to normalise
    other = tmp_path / "other.pt"
    atomic_torch_save(ckpt, other)
    with pytest.raises(CheckpointError) as err:
        build_model_from_checkpoint(other)
    message = str(err.value)
    assert message.startswith(f"{other}: the saved weights do not fit architecture 'mel_cnn'")
    assert "unexpected key(s)" in message and "\n" not in message

    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (120, 80, 60)).save(image)
    assert main(["predict", str(image), "--checkpoint", str(other), "--out-dir", str(tmp_path / "p")]) == 1
    err_line = capsys.readouterr().err.strip()
    assert err_line.count("\n") == 0 and "do not fit architecture 'mel_cnn'" in err_line


def test_weights_with_another_shape_name_the_tensor_and_both_shapes(saved_checkpoint, tmp_path) -> None:
    ckpt = load_checkpoint(saved_checkpoint)
    key = next(k for k, v in ckpt["model"].items() if v.ndim == 2)  # the classifier
    ckpt["model"][key] = torch.zeros(3, ckpt["model"][key].shape[1])  # three classes
    bad = tmp_path / "three.pt"
    atomic_torch_save(ckpt, bad)
    with pytest.raises(
        CheckpointError, match=rf"1 shape mismatch\(es\): {key}: saved \(3, \d+\) vs model \(2, \d+\)"
    ):
        build_model_from_checkpoint(bad)


# --------------------------------------------------------------------------- 7. temporaries left by a killed write
def test_stale_temporaries_are_removed_on_resume(syn, tmp_path) -> None:
    run_dir = tmp_path / "R"
    fit(tiny(syn, run_dir, epochs=1), **QUIET)
    orphan = run_dir / "checkpoints" / ".latest.pt.k2j4x9a1.tmp"
    orphan.write_bytes(b"\0" * 1000)
    keep = run_dir / "notes.tmp"  # not one of ours (no ".<name>.<random>.tmp" shape): left alone
    keep.write_text("mine")
    messages: list[str] = []
    fit(tiny(syn, run_dir, epochs=2, resume=True), log=messages.append)
    assert not orphan.exists() and keep.exists()
    assert any(f"removed {orphan}" in m and "interrupted write" in m for m in messages)


def test_remove_stale_temporaries_only_takes_our_pattern(tmp_path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    ours = [tmp_path / ".x.json.abc.tmp", tmp_path / "a" / "b" / ".best.pt.q1w2e3.tmp"]
    theirs = [tmp_path / "x.tmp", tmp_path / ".x.tmp", tmp_path / "a" / ".cfg.json"]
    for p in ours + theirs:
        p.write_text("x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p for p, _ in removed) == sorted(ours)
    assert all(p.exists() for p in theirs)


# ------------------------------------------------------------------ kill -9 during training / a checkpoint write
KILL_SCRIPT = """
import os, signal, sys
import torch
import attnmel.trainer as trainer
from attnmel.config import TrainConfig
config = TrainConfig.from_dict({config!r})
WHERE = {where!r}
if WHERE == "step":  # killed in the middle of epoch 2
    real_step = trainer.train_step
    count = {{"n": 0}}
    def step(*args, **kwargs):
        count["n"] += 1
        if count["n"] == 4:  # epoch 2, batch 2
            os.kill(os.getpid(), signal.SIGKILL)
        return real_step(*args, **kwargs)
    trainer.train_step = step
elif WHERE == "save":  # killed half-way through writing epoch 2's latest.pt
    import attnmel.io as io_module
    real_save = torch.save
    saves = {{"n": 0}}
    def save(obj, handle):
        saves["n"] += 1
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            handle.write(b"PK partial checkpoint")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, handle)
    torch.save = save
trainer.fit(config, log=lambda _m: None)
"""


def _kill_run(config, where: str) -> subprocess.CompletedProcess:
    return run_python(KILL_SCRIPT.format(config=config.to_dict(), where=where))


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["step", "save"])
def test_kill_9_then_resume_is_bit_identical(syn, tmp_path, where) -> None:
    base = tiny(syn, tmp_path / "straight", epochs=3, lr_step=2, max_train_samples=8)
    done = _kill_run(base, "none")
    assert done.returncode == 0, done.stderr
    killed = base.replace(run_dir=str(tmp_path / "killed"))
    done = _kill_run(killed, where)
    assert done.returncode == -signal.SIGKILL, done.stderr
    run_dir = Path(killed.run_dir)
    assert _weights(run_dir)["epoch"] == 1  # the last good checkpoint survived the kill
    temporaries = list(run_dir.rglob(".latest.pt.*.tmp"))
    assert bool(temporaries) == (where == "save")  # the write was cut: its temporary is there
    assert json.loads((run_dir / LOCK_NAME).read_text())["purpose"] == "train"  # a stale record

    done = _kill_run(killed.replace(resume=True), "none")
    assert done.returncode == 0, done.stderr
    assert not list(run_dir.rglob("*.tmp"))
    a, b = _weights(tmp_path / "straight"), _weights(run_dir)
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    keys = ("epoch", "train_loss", "val_auc")
    assert [{k: r[k] for k in keys} for r in a["history"]] == [{k: r[k] for k in keys} for r in b["history"]]


# -------------------------------------------------------------------------------------------- 8. smaller defects
def test_missing_images_can_be_skipped_from_the_command_line(syn, tmp_path, capsys) -> None:
    root = tmp_path / "syn"
    shutil.copytree(syn, root)
    gone = sorted((root / "ISIC-2017_Validation_Data").glob("ISIC_*[0-9].jpg"))[0]
    gone.unlink()
    assert main(cli_flags(root, tmp_path / "R", epochs=1)) == 1
    err = capsys.readouterr().err
    assert "--missing skip" in err
    assert main(cli_flags(root, tmp_path / "R2", epochs=1, missing="skip")) == 0
    out = capsys.readouterr().out
    assert "Validation: AUC" in out
    assert json.loads((tmp_path / "R2" / "config.json").read_text())["missing"] == "skip"


def test_a_default_test_split_whose_images_were_all_skipped_is_left_out_with_a_warning(syn, tmp_path) -> None:
    root = tmp_path / "syn"
    shutil.copytree(syn, root)
    for image in (root / "ISIC-2017_Test_shift_Data").glob("ISIC_*[0-9].jpg"):
        image.unlink()  # every Test_shift image listed in the ground truth is gone
    config = tiny(root, tmp_path / "R", epochs=1, eval_splits=None, missing="skip")
    with pytest.warns(
        UserWarning, match=r"skipping evaluation split 'Test_shift'.*every listed image was skipped"
    ):
        result = fit(config, **QUIET)
    assert sorted(p.stem for p in (result.run_dir / "metrics").glob("*.json")) == ["Test_v2", "Validation"]
    assert not (result.run_dir / "predictions" / "Test_shift.csv").exists()
    # a split the user named is not optional: the same gap is an error naming the split
    with pytest.raises(DataError, match="Test_shift: no images to evaluate"):
        fit(config.replace(run_dir=str(tmp_path / "R2"), eval_splits="Validation,Test_shift"), **QUIET)


def test_evaluate_beside_a_loose_checkpoint_and_says_where(syn, tmp_path, capsys) -> None:
    result = fit(tiny(syn, tmp_path / "R", epochs=1), **QUIET)
    loose = tmp_path / "shared" / "model.pt"
    loose.parent.mkdir()
    shutil.copy(result.run_dir / "checkpoints" / "best.pt", loose)
    argv = ["evaluate", str(loose), "--split", "Validation", "--n-boot", "0", "--no-plots"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    expected = loose.parent / "model-evaluation"
    assert f"to {expected}" in out
    assert (expected / "metrics" / "Validation.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R", "shared"]  # nothing in the grandparent
    # a run's own checkpoint still evaluates into <run>/evaluation
    assert main(["evaluate", str(result.run_dir / "checkpoints" / "best.pt"), *argv[2:]]) == 0
    assert f"to {result.run_dir / 'evaluation'}" in capsys.readouterr().out


def test_cache_goes_into_an_explicit_run_folder_not_the_working_directory(syn, tmp_path, monkeypatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    config = tiny_config(syn, "runs", run_dir=str(tmp_path / "R"), cache=True, epochs=1, n_boot=0)
    assert config.resolved_cache_dir() == tmp_path / "R" / "cache"
    fit(config.replace(eval_splits="Validation", max_train_samples=8), **QUIET)
    assert list(work.iterdir()) == []
    assert any((tmp_path / "R" / "cache").rglob("*"))


def test_a_binary_config_file_is_named(tmp_path, capsys) -> None:
    blob = tmp_path / "weights.pt"
    blob.write_bytes(b"\x80\x02\xff\xfe\x00binary")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", str(blob), "--print-config"])
    assert exit_.value.code == 2
    assert f"{blob}: not a UTF-8 JSON text file" in capsys.readouterr().err
