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


def test_the_recipes_device_augmentation_on_the_gpu_matches_the_cpu() -> None:
    from torchvision.transforms import v2

    from attnmel.data.device_set import (
        colour_jitter_batch,
        draw_colour_jitter,
        draw_resized_crops,
        resized_crop_maps,
    )

    generator = torch.Generator(device="cuda").manual_seed(0)
    crops = draw_resized_crops(64, 40, (0.35, 1.0), (3 / 4, 4 / 3), generator, "cuda")
    grid, nearest = resized_crop_maps(crops, 40, 32)
    grid_cpu, nearest_cpu = resized_crop_maps({k: v.cpu() for k, v in crops.items()}, 40, 32)
    assert torch.equal(nearest.cpu(), nearest_cpu)
    torch.testing.assert_close(grid.cpu(), grid_cpu)
    images = torch.rand(64, 3, 16, 16, device="cuda", generator=generator)
    draws = draw_colour_jitter(64, v2.ColorJitter(0.2, 0.2, 0.2, 0.02), generator, "cuda")
    on_cpu = colour_jitter_batch(images.cpu(), {k: v.cpu() for k, v in draws.items()})
    torch.testing.assert_close(colour_jitter_batch(images, draws).cpu(), on_cpu, atol=1e-5, rtol=0)


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


def test_training_steps_never_wait_for_the_gpu(tiny_synthetic, tmp_path) -> None:
    """Batches from the device set (with the recipe's resized crop and colour jitter), the step, the EMA and the
    loss sums: no host-device synchronisation (``torch.cuda.set_sync_debug_mode("error")`` raises at the first)."""
    from attnmel import trainer
    from attnmel.data.device_set import DeviceTrainSet
    from attnmel.device import make_grad_scaler, resolve_precision
    from attnmel.loaders import load_split, make_dataset, normalisation

    device = torch.device("cuda")
    config = tiny_config(tiny_synthetic, tmp_path, device="cuda", precision="auto", channels_last=True,
                         data_on_device=True, ema=0.9, mixup=0.2, crop_scale=0.35, color_jitter=0.2)  # fmt: skip
    samples = load_split(config, config.resolved_data_root(), "Training")
    mean, std = normalisation(config.dataset)
    device_set = DeviceTrainSet(make_dataset(config, samples, train=True), device, size=config.image_size,
                                mean=mean, std=std, channels_last=True)  # fmt: skip
    model = trainer.build_model_for(config).to(device).to(memory_format=torch.channels_last)
    optimizer, loss_fn = trainer.build_optimizer(model, config), trainer.build_loss(config)
    precision = resolve_precision("auto", device)
    scaler = make_grad_scaler(device, precision)
    ema = trainer.build_ema(model, config)
    losses = trainer._EpochLosses(device)
    batches = trainer._DeviceBatches(device_set, range(len(device_set)), 4, device, seed=0)

    def step(index: int, batch: dict) -> None:
        parts = trainer.train_step(model, batch, loss_fn, optimizer, scaler, device=device, precision=precision,
                                   channels_last=True, grad_clip_norm=5.0, mixup=config.mixup)  # fmt: skip
        ema.update_parameters(model)
        losses.add(parts, len(batch["label"]), index)

    iterator = iter(batches)
    step(1, next(iterator))  # warm-up: cuDNN autotuning, the EMA's first copy, lazy CUDA state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for index, batch in enumerate(iterator, start=2):
            step(index, batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert ema.updates == len(batches) and math.isfinite(losses.means()["train_loss"])
