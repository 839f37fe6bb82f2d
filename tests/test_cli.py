"""The attnmel command: --help everywhere, synth -> train -> evaluate through main(argv), error exits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from attnmel.cli import main

SUBCOMMANDS = ("synth", "train", "evaluate", "predict", "book")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_console_entry_point_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "attnmel", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    for name in SUBCOMMANDS:
        assert name in done.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: attnmel {command}")
    if command == "train":
        for flag in (
            "--preset",
            "--config",
            "--set",
            "--batch-size",
            "--no-channels-last",
            "--roi",
            "--resume",
        ):
            assert flag in out


def test_usage_errors_exit_2_with_one_line(capsys) -> None:
    for argv, needle in (
        (["train", "--model", "resnet"], "--model 'resnet' is not allowed"),
        (["train", "--set", "lrr=0.1"], "unknown field 'lrr' (did you mean 'lr'?)"),
        (["train", "--epochs", "many"], "--epochs: expected int, got 'many'"),
        (["train", "--preset", "nope"], "invalid choice"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err


def test_config_sources_merge_in_order(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": 3, "lr": 0.05, "data_root": "x"}))
    argv = [
        "train",
        "--preset",
        "smoke",
        "--config",
        str(cfg),
        "--lr",
        "0.02",
        "--set",
        "roi=lesion",
        "--print-config",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["epochs"], printed["lr"], printed["roi"], printed["image_size"]) == (
        3,
        0.02,
        "lesion",
        96,
    )
    assert (
        main(
            [
                "train",
                "--weights",
                "none",
                "--focal-alpha",
                "0.25",
                "--no-nesterov",
                "--momentum",
                "0.5",
                "--print-config",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert (printed["weights"], printed["focal_alpha"], printed["nesterov"]) == (None, 0.25, False)


def test_synth_train_evaluate(tmp_path, capsys) -> None:
    root = tmp_path / "syn"
    assert main(["synth", str(root), "--n", "40", "--size", "48"]) == 0
    assert "Training: 28 images" in capsys.readouterr().out
    argv = [
        "train",
        "--data-root",
        str(root),
        "--image-size",
        "32",
        "--resize",
        "40",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--max-train-samples",
        "8",
        "--sampler",
        "none",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--no-channels-last",
        "--no-cache",
        "--no-progress",
        "--runs-root",
        str(tmp_path / "runs"),
        "--run-name",
        "cli",
        "--eval-splits",
        "Validation,Test_v2",
        "--n-boot",
        "10",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    summary = lines.index(
        f"run folder: {tmp_path / 'runs' / 'cli'}"
    )  # the CLI's summary, after the trainer's log
    assert lines[summary + 1].startswith("best epoch 1, val AUC") and "Test_v2: AUC" in out
    best = tmp_path / "runs" / "cli" / "checkpoints" / "best.pt"
    assert torch.load(best, weights_only=True)["epoch"] == 1
    assert main(argv) == 1  # the run exists and --resume was not given
    assert "pass --resume to continue" in capsys.readouterr().err  # flags, not keywords

    out_dir = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                str(best),
                "--split",
                "Test_v2",
                "--out-dir",
                str(out_dir),
                "--n-boot",
                "10",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    metrics = json.loads((out_dir / "metrics" / "Test_v2.json").read_text())
    assert metrics["n"] == 8 and metrics["arch"] == "attnmel_cnn"
    assert set(metrics["attention"]) == {"pool3", "pool4"} and metrics["attention"]["pool3"]["n"] == 8
    assert (out_dir / "predictions" / "Test_v2.csv").is_file()
    assert (out_dir / "figures" / "Test_v2_roc_pr.png").stat().st_size > 0
    assert (out_dir / "figures" / "Test_v2_reliability.png").stat().st_size > 0


def test_train_summary_says_the_last_epoch_was_kept_and_where_the_best_one_is(tmp_path, capsys) -> None:
    """Under select_epoch="last" (the scratch presets) best.pt holds the last epoch, not the best-validation one:
    the closing summary must not call it the best epoch, and names best_val.pt for the best one."""
    root = tmp_path / "syn"
    assert main(["synth", str(root), "--n", "40", "--size", "48"]) == 0
    argv = ["train", "--data-root", str(root), "--image-size", "32", "--resize", "40", "--epochs", "2"]
    argv += ["--batch-size", "4", "--max-train-samples", "8", "--sampler", "none", "--num-workers", "0"]
    argv += ["--device", "cpu", "--precision", "fp32", "--no-cache", "--no-progress", "--n-boot", "10"]
    argv += ["--select-epoch", "last", "--runs-root", str(tmp_path / "runs"), "--run-name", "last"]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    peak = torch.load(tmp_path / "runs" / "last" / "checkpoints" / "best_val.pt", weights_only=True)["epoch"]
    lines = out.splitlines()
    summary = lines[
        lines.index(f"run folder: {tmp_path / 'runs' / 'last'}") + 1
    ]  # the CLI's, not the trainer's
    assert summary.startswith("kept the last epoch (2, val AUC") and "best epoch" not in out
    assert summary.endswith(f"at epoch {peak} (best_val.pt)")


def test_expected_failures_exit_1_without_traceback(tmp_path, capsys) -> None:
    assert main(["evaluate", str(tmp_path / "missing.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.pt does not exist" in err
    assert (
        main(
            [
                "train",
                "--data-root",
                str(tmp_path / "nowhere"),
                "--device",
                "cpu",
                "--runs-root",
                str(tmp_path / "runs"),
                "--run-name",
                "x",
                "--no-progress",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("attnmel train: error:") and "Traceback" not in err
