"""What only a GPU can check (skipped without CUDA; `benchmarks/gpu_check.sh` runs them on a GPU machine)."""

from __future__ import annotations

import math

import pytest
import torch

from attnmel import bench
from attnmel.data.device_set import augment_indices, draw_augmentation
from tests.helpers import tiny_config

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_device_augmentation_on_the_gpu_matches_the_cpu() -> None:
    draws = draw_augmentation(64, 40, 32, torch.Generator(device="cuda").manual_seed(0), "cuda")
    on_gpu = augment_indices(draws, 40, 32)
    on_cpu = augment_indices({k: v.cpu() for k, v in draws.items()}, 40, 32)
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), on_cpu)


def test_training_with_the_data_on_the_gpu(tiny_synthetic, tmp_path) -> None:
    from attnmel.trainer import fit

    config = tiny_config(
        tiny_synthetic, tmp_path, device="cuda", precision="auto", data_on_device=True, epochs=2,
        channels_last=True, eval_splits="Validation", run_dir=str(tmp_path / "run"),
    )  # fmt: skip
    result = fit(config, log=lambda _m: None)
    assert all(math.isfinite(r["train_loss"]) and r["train_seconds"] > 0 for r in result.history)


def test_two_trainings_share_the_gpu(tiny_synthetic, tmp_path) -> None:
    from attnmel.concurrent import train_many

    configs = [
        tiny_config(tiny_synthetic, tmp_path, device="cuda", seed=s, epochs=1, eval_splits="Validation",
                    run_dir=str(tmp_path / f"seed-{s}"))
        for s in (0, 1)
    ]  # fmt: skip
    runs = train_many(configs, parallel=2, log=lambda _m: None)
    assert all(math.isfinite(r.history[0]["train_loss"]) for r in runs.values())


def test_time_based_bench_and_the_tf32_ceiling() -> None:
    result = bench.train_step_throughput("attnmel_cnn", 64, 8, "bf16+channels_last", steps=1, min_seconds=0.5,
                                         device="cuda")  # fmt: skip
    assert result["status"] == "ok" and len(result["step_times_s"]) > 1 and sum(result["step_times_s"]) >= 0.5
    fp32 = bench.matmul_ceiling(torch.float32, n=2048, seconds=0.2, device="cuda")
    tf32 = bench.matmul_ceiling(torch.float32, n=2048, seconds=0.2, device="cuda", tf32=True)
    assert tf32 > fp32


def test_compiled_training_with_cuda_graphs_logs_its_compile_time(tiny_synthetic, tmp_path) -> None:
    from attnmel.trainer import fit

    lines: list[str] = []
    config = tiny_config(
        tiny_synthetic, tmp_path, device="cuda", precision="auto", channels_last=True, epochs=2,
        compile=True, compile_mode="reduce-overhead", eval_splits="Validation", run_dir=str(tmp_path / "run"),
    )  # fmt: skip
    result = fit(config, log=lines.append)
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    assert [line for line in lines if "CUDA graphs): first step" in line]


def test_cuda_graph_bench_mode() -> None:
    result = bench.train_step_throughput("attnmel_cnn", 64, 8, "bf16+channels_last+cudagraphs", steps=3,
                                         device="cuda", isolate_compile=False)  # fmt: skip
    assert result["status"] == "ok", result["reason"]
    assert result["first_step_s"] > 0 and all(math.isfinite(v) for v in result["losses"])
