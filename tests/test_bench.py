"""attnmel.bench: FLOP counting against hand counts, the shape of the measurement dicts, the Markdown table.

Nothing here asserts a speed: the figures depend on the machine. Cases are tiny (32 px, batch 2, one step).
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from attnmel import bench

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"  # scripts, not a package


def test_count_flops_of_a_conv_matches_the_hand_count():
    conv = nn.Conv2d(3, 4, kernel_size=3, padding=1)
    x = torch.randn(2, 3, 8, 8)  # (N, 3, 8, 8)
    # each output element is a 3x3x3 dot product: 27 multiply-adds = 54 FLOPs; bias not counted
    forward = 2 * (2 * 4 * 8 * 8) * (3 * 3 * 3)
    assert bench.count_flops(lambda: conv(x)) == forward
    # backward with an input that needs no gradient computes the weight gradient only: one more forward's worth
    assert bench.count_flops(lambda: conv(x).sum().backward()) == 2 * forward


def test_count_flops_of_a_linear_layer():
    layer = nn.Linear(10, 3)
    x = torch.randn(5, 10, requires_grad=True)  # (N, 10)
    forward = 2 * 5 * 10 * 3
    assert bench.count_flops(lambda: layer(x)) == forward
    # backward: input gradient and weight gradient, each a product of the same size
    assert bench.count_flops(lambda: layer(x).sum().backward()) == 3 * forward


def _vgg16_conv_flops(size: int) -> int:
    """Hand count of VGG-16's 13 convolutions (3x3, padding 1) on a size x size image."""
    blocks = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
    total, c_in, side = 0, 3, size
    for widths in blocks:
        for c_out in widths:
            total += 2 * side * side * c_out * c_in * 9
            c_in = c_out
        side //= 2
    return total


@pytest.mark.parametrize("size", [32, 224])
def test_model_flops_is_the_backbone_plus_a_small_head(size):
    forward = bench.model_flops("attnmel_cnn", size, train=False)
    backbone = _vgg16_conv_flops(size)
    assert backbone <= forward <= 1.05 * backbone  # attention 1x1 convs and the classifier are a few percent
    train = bench.model_flops("attnmel_cnn", size, train=True)
    assert (
        2.5 * forward < train < 3.0 * forward
    )  # backward ~ 2x forward, minus the first layer's input gradient
    assert bench.model_flops("attnmel_cnn", size, train=False, batch_size=3) == 3 * forward


def test_unknown_mode_and_bad_counts_are_clear_errors():
    with pytest.raises(ValueError, match="unknown benchmark mode 'fp8'"):
        bench.train_step_throughput(image_size=32, batch_size=2, mode="fp8", steps=1)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        bench.mode_spec("fp16", "cpu")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        bench.inference_throughput(image_size=32, batch_size=2, steps=0)
    with pytest.raises(ValueError, match="image_size must be an integer >= 32"):
        bench.train_step_throughput(image_size=16, batch_size=2, steps=1)


def _check_measurement(result: dict, kind: str, mode: str, steps: int) -> None:
    assert result["status"] == "ok", result["reason"]
    assert (result["kind"], result["mode"], result["image_size"], result["batch_size"]) == (kind, mode, 32, 2)
    assert len(result["step_times_s"]) == steps
    assert all(t > 0 for t in result["step_times_s"])
    assert result["seconds_per_step"] == sorted(result["step_times_s"])[len(result["step_times_s"]) // 2]
    assert result["images_per_s"] == pytest.approx(2 / result["seconds_per_step"])


def test_train_step_throughput_runs_a_real_step_in_bf16_channels_last():
    result = bench.train_step_throughput("attnmel_cnn", 32, 2, "bf16+channels_last", steps=1, warmup=1)
    _check_measurement(result, "train", "bf16+channels_last", 1)
    assert result["first_step_s"] > 0
    assert len(result["losses"]) == 2 and all(math.isfinite(v) and v > 0 for v in result["losses"])


def test_inference_throughput_fields():
    result = bench.inference_throughput("attnmel_cnn", 32, 2, "channels_last", steps=1, warmup=0)
    _check_measurement(result, "inference", "channels_last", 1)
    assert result["first_step_s"] is None


def test_compile_is_capped_and_its_failure_recorded():
    # a 1 s cap kills the child process long before torch.compile finishes: the case fails, nothing raises
    result = bench.train_step_throughput(
        image_size=32, batch_size=2, mode="compile", steps=1, compile_timeout=1
    )
    assert result["status"] == "failed"
    assert "timed out after 1 s" in result["reason"]
    assert result["images_per_s"] is None


def test_cuda_graph_mode_needs_cuda_and_compiles_in_reduce_overhead():
    spec = bench.MODES["bf16+channels_last+cudagraphs"]
    assert spec.compile and spec.compile_mode == "reduce-overhead" and spec.channels_last
    with pytest.raises(ValueError, match="needs a CUDA device \\(CUDA graphs\\)"):
        bench.mode_spec("bf16+channels_last+cudagraphs", "cpu")
    assert bench.mode_spec("bf16+channels_last+compile", "cpu").compile_mode == "default"


def test_matmul_ceiling_is_positive():
    assert bench.matmul_ceiling(torch.float32, n=64, seconds=0.0) > 0
    assert bench.measure_ceilings({"bf16"}, n=32, seconds=0.0).keys() == {"bf16"}
    with pytest.raises(ValueError, match="unknown ceiling dtype"):
        bench.measure_ceilings({"int8"})
    with pytest.raises(ValueError, match="at least one matrix size"):
        bench.measure_ceilings({"fp32"}, n=[])


def test_measure_ceilings_keeps_the_best_size(monkeypatch):
    rates = {16: 10.0, 32: 30.0, 64: 20.0}
    monkeypatch.setattr(bench, "matmul_ceiling", lambda dtype, n, seconds, device, tf32: rates[n])
    assert bench.measure_ceilings({"fp32"}, n=[16, 32, 64]) == {"fp32": 30.0}


def test_apply_ceilings_recomputes_fractions_from_the_achieved_rate():
    rows = [
        {"ceiling": "fp32", "train_status": "ok", "train_gflops_per_s": 50.0, "infer_status": "ok",
         "infer_gflops_per_s": 120.0},
        {"ceiling": "bf16", "train_status": "skipped", "train_gflops_per_s": None},
    ]  # fmt: skip
    bench.apply_ceilings(rows, {"fp32": 100.0, "bf16": 10.0})
    assert rows[0]["ceiling_gflops_per_s"] == 100.0
    assert rows[0]["train_fraction_of_ceiling"] == 0.5 and rows[0]["infer_fraction_of_ceiling"] == 1.2
    assert rows[1]["train_fraction_of_ceiling"] is None and "infer_fraction_of_ceiling" not in rows[1]


def test_run_benchmarks_rows_and_markdown():
    rows = bench.run_benchmarks(
        (32,), (2,), ("fp32", "compile"), steps=1, warmup=0, ceilings={"fp32": 50.0}, compile_shapes=[]
    )
    assert [r["mode"] for r in rows] == ["fp32", "compile"]
    fp32, compiled = rows
    assert fp32["train_status"] == fp32["infer_status"] == "ok"
    assert fp32["train_flops_per_image"] == bench.model_flops("attnmel_cnn", 32, train=True)
    achieved = fp32["train_flops_per_image"] * fp32["train_images_per_s"] / 1e9
    assert fp32["train_gflops_per_s"] == pytest.approx(achieved)
    assert fp32["train_fraction_of_ceiling"] == pytest.approx(achieved / 50.0)
    assert fp32["infer_fraction_of_ceiling"] > 0
    assert compiled["train_status"] == compiled["infer_status"] == "skipped"
    assert "compile not measured" in compiled["note"]

    table = bench.to_markdown(rows).splitlines()
    assert table[0].startswith("| size | batch | mode | ceiling | timed steps | train img/s | train s/step |")
    assert set(table[1]) <= set("|-: ")
    assert len(table) == 4
    assert table[2].startswith("| 32 | 2 | fp32 | fp32 | 1 | ")
    assert table[3].count("—") == 8  # skipped: every figure is a dash


def test_time_based_measurement_keeps_stepping_until_the_time_is_filled():
    calls = []
    times = bench._timed_steps(lambda: (calls.append(1), time.sleep(0.01)), torch.device("cpu"), 2, 1, 0.1)
    assert len(times) == len(calls) and 2 + 2 <= len(times) <= 2 + 11  # 2 warm-up calls, then >= 0.1 s
    assert sum(times[2:]) >= 0.1 and sum(times[2:-1]) < 0.1  # it stopped as soon as the time was filled
    assert len(bench._timed_steps(lambda: None, torch.device("cpu"), 0, 3, 0.0)) == 3  # steps alone
    # the measurements pass it on: their timed steps fill min_seconds (one slow step may do it alone)
    result = bench.train_step_throughput("attnmel_cnn", 32, 2, "fp32", steps=1, warmup=0, min_seconds=0.5)
    assert result["status"] == "ok" and sum(result["step_times_s"]) >= 0.5
    assert len(result["losses"]) == len(result["step_times_s"])  # every timed call was a real step
    inference = bench.inference_throughput("attnmel_cnn", 32, 2, "fp32", steps=1, warmup=0, min_seconds=0.2)
    assert sum(inference["step_times_s"]) >= 0.2
    with pytest.raises(ValueError, match="min_seconds must be a number >= 0"):
        bench.train_step_throughput(image_size=32, batch_size=2, steps=1, min_seconds=-1)
    assert bench.default_min_seconds("cuda") == 2.0 and bench.default_min_seconds("cpu") == 0.0


def test_fp32_modes_on_a_tf32_gpu_are_compared_with_the_tf32_ceiling(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert bench.ceiling_for("channels_last", "cuda") == "tf32"
    assert bench.ceiling_for("fp32", "cuda:0") == "tf32"
    assert bench.ceiling_for("bf16", "cuda") == "bf16"
    assert bench.ceiling_for("fp32", "cpu") == "fp32"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert bench.ceiling_for("fp32", "cuda") == "fp32"
    with pytest.raises(ValueError, match="TF32 ceiling needs a CUDA device"):
        bench.matmul_ceiling(torch.float32, n=32, seconds=0.0, device="cpu", tf32=True)


def test_jpeg_decoding_skips_the_gpu_without_cuda():
    result = bench.jpeg_decode_throughput(n_images=2, height=48, width=64, repeats=1, device="cpu")
    assert result["cpu_images_per_s"] > 0
    assert result["gpu_status"] == "skipped"
    assert "not measured" in result["gpu_note"]


def test_render_report_has_machine_info_and_the_table():
    rows = [
        {"image_size": 128, "batch_size": 8, "mode": "fp32", "train_images_per_s": 1.5, "train_seconds_per_step": 5.3,
         "train_gflops_per_s": 45.0, "train_fraction_of_ceiling": 0.25, "infer_images_per_s": 6.0,
         "infer_gflops_per_s": 60.0, "infer_fraction_of_ceiling": 0.4, "note": ""},
    ]  # fmt: skip
    result = {
        "created": "2025-01-01T00:00:00+00:00",
        "elapsed_s": 60.0,
        "machine": bench.machine_info("cpu"),
        "config": {"model": "attnmel_cnn", "warmup": 1, "matmul_n": [1024, 2048]},
        "ceilings_gflops_per_s": {"fp32": 100.0},
        "ceilings_start_gflops_per_s": {"fp32": 90.0},
        "ceilings_end_gflops_per_s": {"fp32": 100.0},
        "flops_per_image": {"128": {"train": 3e10, "infer": 1e10}},
        "rows": rows,
        "jpeg": None,
    }
    text = bench.render_report(result)
    assert result["machine"]["cpu_model"] in text
    assert (
        "(best call over 1024 x 1024, 2048 x 2048): fp32 100 GFLOP/s (before the grid: fp32 90; after: fp32 100"
        in text
    )
    assert "| 128 | 8 | fp32 | — | — | 1.50 | 5.30 | 45 | 25.0 | 6.00 | 60 | 40.0 |  |" in text
    assert "Above 100%" not in text
    rows[0]["infer_fraction_of_ceiling"] = 1.1
    assert "Above 100% (1 case(s), e.g. 128 px batch 8 fp32 infer)" in bench.render_report(result)


def _benchmark_module(name: str):
    """A script of ``benchmarks/`` (not a package) loaded as a module."""
    import importlib.util

    path = BENCHMARKS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_precision_report_pairs_runs_by_seed_and_keeps_incomplete_pairs_out():
    report = _benchmark_module("bench_precision").report
    rows = [
        {"precision": "fp32", "seed": 0, "best_val_auc": 0.90, "test_auc": 0.80, "seconds": 10.0},
        {"precision": "bf16", "seed": 0, "best_val_auc": 0.92, "test_auc": None, "seconds": 30.0},
        {"precision": "fp32", "seed": 1, "best_val_auc": 0.80, "test_auc": 0.70, "seconds": 12.0},
        {"precision": "bf16", "seed": 1, "best_val_auc": 0.77, "test_auc": 0.71, "seconds": 34.0},
        {
            "precision": "fp32",
            "seed": 2,
            "best_val_auc": 0.85,
            "test_auc": 0.75,
            "seconds": 11.0,
        },  # bf16 missing
    ]
    text, summary = report("smoke", "cpu", ["fp32", "bf16"], rows)
    assert summary["bf16-fp32"]["val_auc_diff"] == pytest.approx([0.02, -0.03])
    assert summary["fp32"]["val_auc"] == [0.90, 0.80, 0.85] and summary["bf16"]["test_auc"] == [0.71]
    assert "| fp32 | 3 | 0.8500 ± 0.0500 | 0.7500 ± 0.0500 | 11 |" in text
    assert "mean -0.0050" in text and "over 2 seed(s)" in text and "sd is 0.0707" in text
    assert "| bf16 | 0 | 0.9200 | – | 30 |" in text


def test_summary_includes_earlier_precision_reports_or_says_how_to_make_one(tmp_path):
    precision_sections = _benchmark_module("run_all").precision_sections
    (missing,) = precision_sections(tmp_path)
    assert missing.startswith("Not measured yet") and "bench_precision.py --preset smoke" in missing
    (tmp_path / "precision-smoke.md").write_text("# bf16 vs fp32 training\n\n| precision |\n")
    header, body = precision_sections(tmp_path)
    assert "`precision-smoke.md`" in header and body.startswith("### bf16 vs fp32 training")


def test_bench_metrics_times_both_intervals_and_refuses_a_split_too_small(capsys):
    module = _benchmark_module("bench_metrics")
    assert module.main(["--n", "200", "--n-boot", "20", "--repeats", "1"]) in (0, 1)  # no speed asserted here
    out = capsys.readouterr().out
    assert "bootstrap_ci AUC + AP" in out and "paired_bootstrap AUC" in out and "20 resamples" in out
    with pytest.raises(SystemExit):
        module.main(["--n", "5"])
    assert "--n must be >= 20" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("script", "earlier"),
    [
        ("scratch_gpu.sh", "summary.txt"),
        ("scratch_gpu.sh", "runs.tgz"),
        ("scratch_gpu.sh", "runs"),
        ("gpu_check.sh", "summary.txt"),
        ("gpu_check.sh", "paper-run"),
    ],
)
def test_gpu_scripts_refuse_an_out_dir_with_earlier_results(tmp_path, script, earlier):
    """One folder, one call: a second call naming the same OUT_DIR stops before it truncates anything."""
    data = tmp_path / "isic2017"
    data.mkdir()
    (data / "ISIC-2017_Training_Part3_GroundTruth.csv").write_text("image_id,melanoma,seborrheic_keratosis\n")
    out = tmp_path / "out"
    out.mkdir()
    if earlier == "runs":
        (out / earlier).mkdir()
    else:
        (out / earlier).write_text("kept\n")
    done = subprocess.run(
        ["bash", str(BENCHMARKS / script), str(data), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHON": "false"},  # a script that fails to refuse starts nothing
    )
    assert done.returncode == 2 and "already holds an earlier call's results" in done.stderr
    assert f"{out} already holds an earlier call's results ({earlier})" in done.stderr
    assert str(out) in done.stderr and sorted(p.name for p in out.iterdir()) == [earlier]
    if earlier != "runs":
        assert (out / earlier).read_text() == "kept\n"
