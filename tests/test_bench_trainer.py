"""The trainer-vs-bare-step comparison (attnmel.bench_trainer): real runs at 32 px, checked for consistency."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from attnmel.bench_trainer import step_mode, to_markdown, trainer_vs_step
from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_trainer_and_the_step_are_timed_at_the_same_settings(tiny_synthetic, tmp_path) -> None:
    config = tiny_config(
        tiny_synthetic,
        tmp_path,
        epochs=2,
        batch_size=4,
        eval_splits="Validation",
        run_dir=str(tmp_path / "run"),
    )
    result = trainer_vs_step(config, steps=1)
    assert (result["mode"], result["image_size"], result["batch_size"]) == (
        "fp32" if not config.channels_last else "channels_last",
        32,
        4,
    )
    assert result["epochs_timed"] == 1  # the first epoch warms up and is left out
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 2 and result["images_timed"] == history[1]["train_images"] > 0
    assert result["trainer_images_per_s"] == pytest.approx(
        history[1]["train_images"] / history[1]["train_seconds"]
    )
    assert (
        0 < result["trainer_epoch_images_per_s"] < result["trainer_images_per_s"]
    )  # the epoch adds validation
    assert result["fraction"] == pytest.approx(result["trainer_images_per_s"] / result["step_images_per_s"])
    line = to_markdown([result]).splitlines()[2]
    assert line.startswith(f"| cpu | {result['mode']} | 32 | 4 | 0 |") and f"{result['fraction']:.0%}" in line


def test_bad_settings_are_refused(tiny_synthetic, tmp_path) -> None:
    with pytest.raises(ValueError, match="needs epochs >= 2"):
        trainer_vs_step(tiny_config(tiny_synthetic, tmp_path, epochs=1))
    assert step_mode("bf16", True) == "bf16+channels_last" and step_mode("fp16", False) == "fp16"
    # a compiled trainer is compared with the compiled step of the same torch.compile mode
    assert step_mode("bf16", True, "reduce-overhead") == "bf16+channels_last+cudagraphs"
    assert step_mode("bf16", True, "default") == "bf16+channels_last+compile"
    assert step_mode("fp32", False, "default") == "compile"
    with pytest.raises(
        ValueError, match=r"channels_last=True, compiled \(max-autotune\); the modes are fp32"
    ):
        step_mode("fp32", True, "max-autotune")
    with pytest.raises(ValueError, match="no benchmark mode for precision 'int8'"):
        step_mode("int8", False)


def test_the_script_refuses_bad_arguments(capsys) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_trainer as script
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    for argv, message in (
        (["--epochs", "1"], "--epochs must be >= 2"),
        (["--set", "no_such_field=1"], "expected KEY=VALUE with KEY a config field"),
        (["--set", "image_size=big"], "--set 'image_size=big'"),
    ):
        with pytest.raises(SystemExit):
            script.parse_args(argv)
        assert message in capsys.readouterr().err
    config = script.config_for(script.parse_args(["--set", "image_size=64", "--workers", "1"]), 1)
    assert (config.image_size, config.num_workers, config.epochs, config.batch_size) == (64, 1, 3, 32)
