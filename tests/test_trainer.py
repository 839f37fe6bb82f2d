"""fit() end to end on a tiny synthetic set: the run folder, checkpoints, NaN stop, guards, speed helpers."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from attnmel.config import TrainConfig
from attnmel.device import autocast, cpu_supports_bf16, make_grad_scaler, resolve_precision, select_device
from attnmel.trainer import HISTORY_COLUMNS, TrainingDiverged, fit, progress_enabled
from tests.helpers import poison_loss_after

from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic_root(tiny_synthetic) -> Path:
    return tiny_synthetic  # the session's shared 40-image set (tests/conftest.py)


def tiny(root: Path, runs: Path, **changes) -> TrainConfig:
    return tiny_config(
        root,
        runs,
        **{"epochs": 2, "max_train_samples": 8, "n_boot": 20, "run_name": "run", "seed": 3, **changes},
    )


@pytest.fixture(scope="module")
def finished_run(synthetic_root, tmp_path_factory):
    config = tiny(synthetic_root, tmp_path_factory.mktemp("runs"), sampler="oversample", oversample=2)
    return config, fit(config, log=lambda _msg: None)


def test_run_folder_holds_everything(finished_run) -> None:
    config, result = finished_run
    run = result.run_dir
    assert run == Path(config.runs_root) / "run"
    assert json.loads((run / "config.json").read_text()) == config.to_dict()
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert tuple(rows[0]) == HISTORY_COLUMNS and [r["epoch"] for r in rows] == ["1", "2"]
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 2 and history == [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in result.history
    ]
    for row in history:
        assert row["lr"] == 0.01 and row["train_loss"] > 0 and row["seconds"] > 0
        assert row["train_loss"] == pytest.approx(row["train_focal"])  # no ROI: the Dice terms are zero
        assert row["train_images"] >= 8  # 8 samples, positives listed twice
        assert 0 <= row["val_auc"] <= 1 and 0 <= row["val_ap"] <= 1
    assert sum(r["is_best"] for r in history) >= 1 and history[result.best_epoch - 1]["is_best"]
    resume_state = {"optimizer", "scheduler", "scaler", "rng"}
    for name in ("best", "latest"):
        ckpt = torch.load(run / "checkpoints" / f"{name}.pt", weights_only=True)
        assert ckpt["arch"] == "attnmel_cnn" and ckpt["config"] == config.to_dict()
        assert set(ckpt) >= {"model", "epoch", "best_val_auc", "arch_kwargs", "history"}
        if name == "latest":
            assert set(ckpt) >= resume_state  # the resume point
        else:
            assert not set(ckpt) & resume_state  # weights and facts only: half the size
    latest = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert latest["epoch"] == 2 and best["epoch"] == result.best_epoch
    assert latest["scheduler"]["last_epoch"] == 2
    for split in ("Validation", "Test_v2", "Test_shift"):
        ids = [r["image_id"] for r in csv.DictReader((run / "predictions" / f"{split}.csv").open())]
        listed = [
            r[0]
            for r in csv.reader(
                (config.resolved_data_root() / f"ISIC-2017_{split}_Part3_GroundTruth.csv").open()
            )
        ][1:]
        assert sorted(ids) == sorted(listed)
        metrics = json.loads((run / "metrics" / f"{split}.json").read_text())
        assert metrics["split"] == split and metrics["n"] == len(ids) and "auc_ci" in metrics
        assert result.test_metrics[split]["n"] == len(ids)
    assert json.loads((run / "data" / "Training.json").read_text())["n"] == 8


def test_the_runs_metrics_hold_the_attention_scores_that_evaluate_computes(
    finished_run, tmp_path, monkeypatch
) -> None:
    """A split with lesion masks gets Table 3's Jaccard and the pointing game at the end of training, the same
    numbers as `attnmel evaluate` on best.pt and as Run.attention computes for a run that lacks them; the summary
    is None without maps or without masks."""
    import attnmel.evaluate
    from attnmel.evaluate import attention_summary, evaluate_checkpoint
    from attnmel.experiments import load_run

    config, result = finished_run
    run = result.run_dir
    saved = json.loads((run / "metrics" / "Validation.json").read_text())["attention"]
    assert set(saved) == {"pool3", "pool4"} and result.test_metrics["Validation"]["attention"] == saved
    again = evaluate_checkpoint(
        run / "checkpoints" / "best.pt", split="Validation", out_dir=tmp_path / "evaluation", device="cpu",
        precision=config.precision, n_boot=0, plots=False,
    )["attention"]  # fmt: skip
    loaded = load_run(run)
    with monkeypatch.context() as patch:
        patch.setattr(
            attnmel.evaluate, "collect_maps", lambda *a, **k: pytest.fail("recomputed the saved scores")
        )
        assert loaded.attention("Validation") == saved  # read back, not recomputed
    del loaded.metrics["Validation"]["attention"]  # as in a run from before training saved the scores
    subset = dataclasses.replace(loaded, config=loaded.config.replace(max_eval_samples=3))
    assert (
        0 < subset.attention("Validation")["pool3"]["n"] <= 3
    )  # the subset training evaluates, not the split
    for other in (again, loaded.attention("Validation")):
        for name, report in saved.items():
            assert report["n"] == other[name]["n"] > 0
            assert report["jaccard_mean"] == pytest.approx(other[name]["jaccard_mean"], abs=1e-6)
            assert report["pointing_rate"] == pytest.approx(other[name]["pointing_rate"], abs=1e-6)
    no_masks = {"maps": {"pool3": torch.ones(2, 1, 4, 4)}, "mask": torch.zeros(2, 1, 8, 8, dtype=torch.bool),
                "has_mask": torch.zeros(2, dtype=torch.bool)}  # fmt: skip
    no_maps = {**no_masks, "maps": {}, "has_mask": torch.ones(2, dtype=torch.bool)}  # Mel-CNN on Validation
    assert attention_summary(no_masks) is None and attention_summary(no_maps) is None


def test_collect_maps_can_skip_the_maps_and_refuses_an_empty_loader(finished_run) -> None:
    """maps=False (a split without lesion masks) gives the same probabilities without computing a map; a loader
    with no image is a clear error rather than torch.cat's."""
    from attnmel.checkpoint import build_model_from_checkpoint
    from attnmel.evaluate import collect_maps
    from attnmel.loaders import split_loader

    config, result = finished_run
    model, _ = build_model_from_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    loader = split_loader(config, "Validation", batch_size=4)
    cpu = torch.device("cpu")
    with_maps = collect_maps(model, loader, device=cpu, progress=False)
    without = collect_maps(model, loader, device=cpu, progress=False, maps=False)
    assert set(with_maps["maps"]) == {"pool3", "pool4"} and without["maps"] == {}
    assert without["image_id"] == with_maps["image_id"] and len(without["image_id"]) > 0
    np.testing.assert_allclose(without["prob"], with_maps["prob"], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="yielded no image"):
        collect_maps(model, [], device=cpu, progress=False)
    with pytest.raises(ValueError, match="needs maps=True"):
        collect_maps(model, loader, device=cpu, progress=False, maps=False, gradcam=True)


def test_existing_run_needs_resume_and_resume_checks_settings(finished_run) -> None:
    config, _ = finished_run
    with pytest.raises(FileExistsError, match="pass resume=True"):
        fit(config, log=lambda _msg: None)
    with pytest.raises(ValueError, match="lr: checkpoint 0.01 vs config 0.02"):
        fit(config.replace(resume=True, lr=0.02, epochs=3), log=lambda _msg: None)
    with pytest.raises(ValueError, match="holds a 'attnmel_cnn' model"):
        fit(config.replace(resume=True, model="mel_cnn"), log=lambda _msg: None)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        fit(config.replace(resume=True, run_name="other"), log=lambda _msg: None)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    synthetic_root, tmp_path, monkeypatch
) -> None:
    poison_loss_after(monkeypatch, 2)  # epoch 1 has 2 batches; the first batch of epoch 2 turns NaN
    config = tiny(synthetic_root, tmp_path, eval_splits="Validation")
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 2, batch 1/2: loss = nan") as err:
        fit(config, log=lambda _msg: None)
    assert (err.value.epoch, err.value.batch) == (2, 1)
    assert "latest.pt (epoch 1), left intact" in str(err.value)
    latest = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)
    assert latest["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in latest["model"].values() if v.is_floating_point())


def test_tensorboard_logs(synthetic_root, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    fit(
        tiny(synthetic_root, tmp_path, epochs=1, tensorboard=True, eval_splits="Validation"),
        log=lambda _m: None,
    )
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_compiled_training_trains_and_logs_its_compile_time(synthetic_root, tmp_path) -> None:
    # torch.compile on the CPU (inductor's C++ kernels): about 30 s on 2 cores, most of it compiling
    lines: list[str] = []
    result = fit(
        tiny(synthetic_root, tmp_path, epochs=2, compile=True, eval_splits="Validation"), log=lines.append
    )
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    timing = [line for line in lines if line.startswith("torch.compile (mode default): first step")]
    assert len(timing) == 1 and "compile included" in timing[0]  # measured once per run, not per epoch
    assert float(timing[0].split("first step ")[1].split(" s")[0]) > 0


def test_gpu_jpeg_decode_on_the_cpu_is_refused_before_any_training(synthetic_root, tmp_path) -> None:
    with pytest.raises(ValueError, match="gpu_jpeg_decode=True needs a CUDA device; this run uses cpu"):
        fit(tiny(synthetic_root, tmp_path, gpu_jpeg_decode=True, cache=True), log=lambda _m: None)
    assert not (tmp_path / "run" / "checkpoints" / "latest.pt").exists()


def test_fill_cache_on_gpu_fills_every_dataset_and_reports(synthetic_root, tmp_path, monkeypatch) -> None:
    from attnmel.trainer import fill_cache_on_gpu, load_split, make_dataset

    config = tiny(synthetic_root, tmp_path, cache=True, cache_dir=str(tmp_path / "cache"))
    train = make_dataset(config, load_split(config, synthetic_root, "Training", 6), train=True)
    val = make_dataset(config, load_split(config, synthetic_root, "Validation", 4), train=False)
    devices = []
    real_fill = type(train.cache).fill

    def fill_on_cpu(cache, samples, *, dermo, device):  # no GPU here: record the device, decode on the CPU
        devices.append(str(device))
        return real_fill(cache, samples, dermo=dermo, device="cpu")

    monkeypatch.setattr(type(train.cache), "fill", fill_on_cpu)
    messages = []
    fill_cache_on_gpu(torch.device("cuda"), [train, val], messages.append)
    assert devices == ["cuda", "cuda"]
    assert len(messages) == 2 and "6 JPEG(s) decoded on cpu" in messages[0] and "4 JPEG(s)" in messages[1]
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 10
    with pytest.raises(ValueError, match="needs a CUDA device"):
        fill_cache_on_gpu(torch.device("cpu"), [train], messages.append)


def test_device_and_precision_helpers() -> None:
    cpu = torch.device("cpu")
    assert select_device("cpu") == cpu
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_supports_bf16() else "fp32")
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="fp16' needs a GPU"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")
    a = torch.randn(4, 4)
    with autocast(cpu, "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert (a @ a).dtype == torch.float32
    assert not make_grad_scaler(cpu, "bf16").is_enabled()
    assert progress_enabled(False) is False
