"""Speed benchmarks: how fast AttnMel-CNN trains and infers, measured against the machine's own limit.

What is measured (issue 7), all on synthetic tensors already on the device, so the data pipeline is out of the
picture (``benchmarks/bench_data.py`` measures that):

- **matmul ceiling**: GFLOP/s of a large square ``torch.mm`` in fp32 and bf16 (fp16 on CUDA), the best
  rate over repeated calls. It is the practical peak of the BLAS / cuBLAS kernels that convolutions also use.
- **training step**: images/s of forward + loss (focal loss plus the Dice attention terms of Eq. 5, on a random
  ROI mask) + backward + SGD step (the authors' settings: lr 0.01, Nesterov momentum 0.9, weight decay 1e-4).
- **inference**: images/s of the forward pass in eval mode under ``torch.inference_mode``.
- **fraction of the ceiling**: counted FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``; training
  counts forward + backward by running ``backward`` under the counter) times images/s, divided by the matching
  ceiling (fp32 ceiling for fp32 / channels_last / compile, bf16 ceiling for the bf16 modes). The counter sees
  convolutions and matrix products only (batch norm, ReLU, pooling and the optimiser step take time but count
  nothing), so the fraction is the useful arithmetic rate against the best matmul rate.

Modes: ``fp32`` (eager), ``channels_last``, ``bf16`` (``torch.autocast`` bfloat16), ``bf16+channels_last``,
``compile`` (``torch.compile`` of the model, run in a child process with a time cap so a slow or failing
compile is recorded, not fatal), ``bf16+channels_last+compile`` (the fastest eager settings, compiled) and, on
CUDA only, ``fp16`` (autocast float16 with a gradient scaler) and ``bf16+channels_last+cudagraphs``
(compile mode ``reduce-overhead``: CUDA graphs replay each step with one launch). A compiled case's first step
(``first_step_s``, in the table's note) is its compile time.

Timing: one or more warm-up steps, then each timed step alone with ``time.perf_counter`` (with
``torch.cuda.synchronize`` on both sides on CUDA, where ``cudnn.benchmark`` is switched on for the run). Images/s
is the batch size over the median step time. Optional: GPU JPEG decoding with nvJPEG
(``torchvision.io.decode_jpeg(device="cuda")``) against the CPU decoder, when CUDA is available.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .device import begin_graph_step, compile_model, uses_cuda_graphs
from .io import atomic_write_json
from .losses import AttnMelLoss
from .models import AttnMelOutput, build_model

__all__ = [
    "MODES",
    "DEFAULT_MODES",
    "DEFAULT_SIZES",
    "DEFAULT_BATCHES",
    "ModeSpec",
    "mode_spec",
    "default_steps",
    "machine_info",
    "matmul_ceiling",
    "measure_ceilings",
    "apply_ceilings",
    "count_flops",
    "model_flops",
    "train_step_throughput",
    "inference_throughput",
    "jpeg_decode_throughput",
    "run_benchmarks",
    "run_suite",
    "to_markdown",
    "render_report",
]

DEFAULT_SIZES = (224, 128)
DEFAULT_BATCHES = (8, 32)
DEFAULT_COMPILE_TIMEOUT_S = 300.0  # per compiled case (compile + measurement), in a child process


@dataclass(frozen=True)
class ModeSpec:
    """How one benchmark mode runs the model."""

    name: str
    channels_last: bool  # model weights and input in NHWC memory layout
    amp_dtype: torch.dtype | None  # autocast dtype, None for full fp32
    compile: bool  # torch.compile the model
    ceiling: str  # which matmul ceiling the achieved rate is compared with: "fp32" | "bf16" | "fp16"
    cuda_only: bool = False
    compile_mode: str = "default"  # with compile: a torch.compile mode (reduce-overhead: CUDA graphs)


MODES: dict[str, ModeSpec] = {
    "fp32": ModeSpec("fp32", False, None, False, "fp32"),
    "channels_last": ModeSpec("channels_last", True, None, False, "fp32"),
    "bf16": ModeSpec("bf16", False, torch.bfloat16, False, "bf16"),
    "bf16+channels_last": ModeSpec("bf16+channels_last", True, torch.bfloat16, False, "bf16"),
    "compile": ModeSpec("compile", False, None, True, "fp32"),
    "fp16": ModeSpec("fp16", False, torch.float16, False, "fp16", cuda_only=True),
    "fp16+channels_last": ModeSpec("fp16+channels_last", True, torch.float16, False, "fp16", cuda_only=True),
    "bf16+channels_last+compile": ModeSpec("bf16+channels_last+compile", True, torch.bfloat16, True, "bf16"),
    "bf16+channels_last+cudagraphs": ModeSpec(
        "bf16+channels_last+cudagraphs", True, torch.bfloat16, True, "bf16", True, "reduce-overhead"
    ),
}
DEFAULT_MODES = ("fp32", "channels_last", "bf16", "bf16+channels_last", "compile")
_CEILING_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
MAX_TIMED_STEPS = 10_000  # the time-based loop's cap, whatever min_seconds asks


def default_min_seconds(device: str | torch.device) -> float:
    """Seconds of timed steps per case when none are given: 2 on a GPU (a step there takes milliseconds, and one
    step read 1196 img/s where 20 read 1977), 0 on the CPU (a step there takes seconds: ``steps`` decide)."""
    return 2.0 if torch.device(device).type == "cuda" else 0.0


def ceiling_for(mode: str, device: str | torch.device) -> str:
    """The matmul ceiling a mode's rate is compared with on ``device``: its dtype's, except that fp32 modes on a
    GPU whose convolutions use TF32 (cuDNN's default) are compared with the TF32 ceiling; against the plain fp32
    one they read "213% of ceiling"."""
    spec = MODES[mode]
    if spec.ceiling == "fp32" and torch.device(device).type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return spec.ceiling


def mode_spec(mode: str, device: str | torch.device = "cpu") -> ModeSpec:
    """The :class:`ModeSpec` of ``mode``; ValueError for an unknown mode or one the device cannot run."""
    try:
        spec = MODES[mode]
    except KeyError:
        raise ValueError(f"unknown benchmark mode {mode!r}; choose from {sorted(MODES)}") from None
    device = torch.device(device)
    if spec.cuda_only and device.type != "cuda":
        raise ValueError(
            f"mode {mode!r} needs a CUDA device "
            f"({'CUDA graphs' if spec.compile else 'it uses a gradient scaler'}); got device {device}"
        )
    if spec.amp_dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"mode {mode!r}: this CUDA device does not support bfloat16")
    return spec


def default_steps(batch_size: int) -> int:
    """Timed steps when none are given: 3 up to batch 8, 2 up to 16, 1 above.

    Keeps the full CPU run near 10-15 minutes on 2 cores: a 224 px training step at batch 32 takes ~16 s in
    fp32 there, and longer in bf16 where the CPU emulates it; a step that long is its own average.
    """
    return 3 if batch_size <= 8 else 2 if batch_size <= 16 else 1


# ----------------------------------------------------------------------------------------------------------------
# Machine description


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _cpu_bf16_native() -> bool:
    """True when the CPU has bf16 arithmetic (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    from attnmel.device import cpu_supports_bf16

    return cpu_supports_bf16() or bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """CPU model, cores, threads, library versions, bf16 support, load average and (on CUDA) the GPU."""
    import torchvision

    device = torch.device(device)
    flags = _cpu_flags()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": _safe(lambda: torch.backends.cpu.get_cpu_capability()),
        "cpu_flags": sorted(
            flags & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"}
        ),
        "cpu_bf16_native": _cpu_bf16_native(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "cuda_available": torch.cuda.is_available(),
        "gpu_name": None,
    }
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info.update(
            gpu_name=props.name,
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_count=torch.cuda.device_count(),
            cuda_version=torch.version.cuda,
            cudnn_version=torch.backends.cudnn.version(),
            gpu_bf16=torch.cuda.is_bf16_supported(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
    return info


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # a probe that does not exist on this build: record nothing
        return None


# ----------------------------------------------------------------------------------------------------------------
# Timing helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _backend_settings(device: torch.device) -> Iterator[None]:
    """cuDNN autotuning for the run on CUDA (fixed input sizes), restored afterwards."""
    previous = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing for full fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


DEFAULT_MATMUL_SIZES = (1024, 2048, 4096)


def matmul_ceiling(
    dtype: torch.dtype = torch.float32,
    n: int = 2048,
    seconds: float = 2.0,
    device: str | torch.device = "cpu",
    *,
    tf32: bool = False,
) -> float:
    """Best GFLOP/s of an ``n x n`` by ``n x n`` matrix product (2 n^3 FLOPs) over calls filling ``seconds``.

    One untimed call first (thread pools, cuBLAS handles); at least two timed calls. The best call, not the mean,
    is the ceiling: a busy machine only ever lowers the rate. ``tf32``: an fp32 product with TF32 tensor cores
    allowed (CUDA only), the ceiling of fp32 convolutions that cuDNN runs in TF32.
    """
    if n < 1 or seconds < 0:
        raise ValueError(f"matmul_ceiling: n must be >= 1 and seconds >= 0, got n={n}, seconds={seconds}")
    device = torch.device(device)
    if tf32:
        if device.type != "cuda" or dtype is not torch.float32:
            raise ValueError(f"a TF32 ceiling needs a CUDA device and float32, got {device} and {dtype}")
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            return matmul_ceiling(dtype, n, seconds, device)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)  # (n, n)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)  # (n, n)
    out = torch.empty(n, n, device=device, dtype=dtype)  # (n, n), reused so no allocation is timed
    torch.mm(a, b, out=out)
    _sync(device)
    best = math.inf
    start = time.perf_counter()
    calls = 0
    while calls < 2 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return 2.0 * n**3 / max(best, 1e-9) / 1e9


def measure_ceilings(
    names: Collection[str],
    device: str | torch.device = "cpu",
    n: int | Sequence[int] = DEFAULT_MATMUL_SIZES,
    seconds: float = 2.0,
) -> dict[str, float]:
    """Matmul ceilings (GFLOP/s) for the named dtypes (``"fp32" | "tf32" | "bf16" | "fp16"``; tf32 on CUDA only):
    the best over sizes ``n``.

    Several sizes, because the fastest one differs between machines and BLAS builds (a single size can sit
    below the rate the convolutions reach).
    """
    unknown = set(names) - set(_CEILING_DTYPES)
    if unknown:
        raise ValueError(f"unknown ceiling dtype(s) {sorted(unknown)}; choose from {sorted(_CEILING_DTYPES)}")
    sizes = [n] if isinstance(n, int) else list(n)
    if not sizes:
        raise ValueError("measure_ceilings: give at least one matrix size")
    order = [name for name in _CEILING_DTYPES if name in names]
    return {
        name: max(
            matmul_ceiling(_CEILING_DTYPES[name], n=size, seconds=seconds, device=device, tf32=name == "tf32")
            for size in sizes
        )
        for name in order
    }


def apply_ceilings(rows: Sequence[dict[str, Any]], ceilings: dict[str, float]) -> None:
    """Set each row's ceiling and its train / infer fractions of it (in place), from the achieved GFLOP/s."""
    for row in rows:
        ceiling = ceilings.get(row["ceiling"])
        row["ceiling_gflops_per_s"] = ceiling
        for prefix in ("train", "infer"):
            gflops = row.get(f"{prefix}_gflops_per_s")
            if f"{prefix}_status" in row:
                row[f"{prefix}_fraction_of_ceiling"] = gflops / ceiling if gflops and ceiling else None


# ----------------------------------------------------------------------------------------------------------------
# FLOP counting


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs that ``fn()`` performs, as counted by ``FlopCounterMode`` (convolutions and matrix products).

    A multiply-add counts as 2 FLOPs and biases are not counted; run ``backward`` inside ``fn`` to count it too.
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def model_flops(
    model_name: str = "attnmel_cnn",
    image_size: int = 224,
    train: bool = True,
    batch_size: int = 1,
    **model_kwargs: Any,
) -> int:
    """FLOPs of one step on ``batch_size`` images: forward only, or forward + loss + backward when ``train``.

    Counted on the ``meta`` device (shapes only, no arithmetic), so a 224 px VGG-16 costs milliseconds. The
    loss is that of the benchmark's training step (Eq. 5 on a random ROI); the optimiser step is not counted.
    """
    with torch.device("meta"):
        model = build_model(model_name, **model_kwargs)
        x = torch.empty(batch_size, 3, image_size, image_size)  # (N, 3, S, S)
        target = torch.zeros(batch_size, dtype=torch.long)  # (N,)
        roi = torch.empty(batch_size, 1, image_size, image_size)  # (N, 1, S, S)
    criterion = AttnMelLoss()
    if train:
        model.train()

        def step() -> None:
            criterion(_as_output(model(x)), target, roi).total.backward()

        return count_flops(step)
    model.eval()
    with torch.no_grad():
        return count_flops(lambda: model(x))


def _as_output(out: Any) -> AttnMelOutput:
    return out if isinstance(out, AttnMelOutput) else AttnMelOutput(*out)


# ----------------------------------------------------------------------------------------------------------------
# Throughput


def _synthetic_batch(
    batch_size: int, image_size: int, device: torch.device, channels_last: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=gen)  # (N, 3, S, S)
    target = torch.arange(batch_size) % 2  # (N,) both classes present
    roi = (torch.rand(batch_size, 1, image_size, image_size, generator=gen) > 0.5).float()  # (N, 1, S, S)
    x = x.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, target.to(device), roi.to(device)


def _base_result(kind: str, case: dict[str, Any]) -> dict[str, Any]:
    """The result dict of one measurement before it runs: the case's parameters and empty figures."""
    return {
        "kind": kind,
        "model": case["model_name"],
        **{key: case[key] for key in ("image_size", "batch_size", "mode", "steps", "warmup", "device")},
        "status": "ok",
        "reason": "",
        "step_times_s": [],
        "first_step_s": None,
        "seconds_per_step": None,
        "images_per_s": None,
    }


def _check_counts(image_size: int, batch_size: int, steps: int, warmup: int) -> None:
    for name, value, low in (
        ("image_size", image_size, 32),
        ("batch_size", batch_size, 1),
        ("steps", steps, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")


def _case(
    model_name: str,
    image_size: int,
    batch_size: int,
    mode: str,
    steps: int,
    warmup: int,
    device: str | torch.device,
    seed: int,
    min_seconds: float = 0.0,
) -> dict[str, Any]:
    """The validated description of one measurement (also what a compile child process receives)."""
    _check_counts(image_size, batch_size, steps, warmup)
    if not (isinstance(min_seconds, int | float) and math.isfinite(min_seconds) and min_seconds >= 0):
        raise ValueError(f"min_seconds must be a number >= 0, got {min_seconds!r}")
    return dict(
        model_name=model_name,
        image_size=image_size,
        batch_size=batch_size,
        mode=mode,
        steps=steps,
        warmup=warmup,
        device=str(device),
        seed=seed,
        min_seconds=float(min_seconds),
    )


def _timed_steps(
    step: Callable[[], Any], device: torch.device, warmup: int, steps: int, min_seconds: float
) -> list[float]:
    """Seconds of each call of ``step``, synchronised around it: ``warmup`` calls, then at least ``steps`` timed
    ones, and more until the timed ones add up to ``min_seconds`` (at most ``MAX_TIMED_STEPS``)."""
    times: list[float] = []
    while len(times) < warmup + steps or (
        sum(times[warmup:]) < min_seconds and len(times) < warmup + MAX_TIMED_STEPS
    ):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _finish(result: dict[str, Any], times: list[float], warmup: int, batch_size: int) -> dict[str, Any]:
    if warmup and times:
        result["first_step_s"] = times[0]
    timed = times[warmup:]
    result["step_times_s"] = timed
    result["seconds_per_step"] = statistics.median(timed)
    result["images_per_s"] = batch_size / result["seconds_per_step"]
    return result


def _reason(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def train_step_throughput(
    model_name: str = "attnmel_cnn",
    image_size: int = 224,
    batch_size: int = 8,
    mode: str = "fp32",
    steps: int = 3,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    *,
    seed: int = 0,
    min_seconds: float = 0.0,
    isolate_compile: bool = True,
    compile_timeout: float = DEFAULT_COMPILE_TIMEOUT_S,
) -> dict[str, Any]:
    """Training images/s: forward, Eq. 5 loss, backward and an SGD step, on a synthetic batch on ``device``.

    ``steps`` timed steps at least, and more until they fill ``min_seconds`` (time-based on a GPU).

    Returns a dict with ``status`` ("ok" or "failed" with a ``reason``), ``step_times_s`` (the timed steps),
    ``first_step_s`` (the first warm-up step, compile time included), ``seconds_per_step`` (median),
    ``images_per_s`` and ``losses`` (every step's loss, to show the step did real work). For ``"compile"`` the
    run happens in a child process killed after ``compile_timeout`` seconds unless ``isolate_compile=False``.
    """
    case = _case(model_name, image_size, batch_size, mode, steps, warmup, device, seed, min_seconds)
    spec = mode_spec(mode, device)
    if spec.compile and isolate_compile:
        return _run_isolated("train", case, compile_timeout)
    device = torch.device(device)
    result = _base_result("train", case)
    result["losses"] = []
    try:
        with _backend_settings(device):
            torch.manual_seed(seed)
            model = build_model(model_name).to(device).train()
            if spec.channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.SGD(
                model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4
            )
            scaler = torch.amp.GradScaler(device.type, enabled=spec.amp_dtype is torch.float16)
            criterion = AttnMelLoss()
            forward = compile_model(model, spec.compile_mode) if spec.compile else model
            graphs = spec.compile and uses_cuda_graphs(spec.compile_mode, device)
            x, target, roi = _synthetic_batch(batch_size, image_size, device, spec.channels_last, seed)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            losses: list[torch.Tensor] = []

            def step() -> None:
                if graphs:
                    begin_graph_step()
                with _autocast(device, spec.amp_dtype):
                    loss = criterion(_as_output(forward(x)), target, roi).total
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                losses.append(loss.detach())

            times = _timed_steps(step, device, warmup, steps, min_seconds)
            result["losses"] = [float(v) for v in losses]
            if device.type == "cuda":
                result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            _finish(result, times, warmup, batch_size)
            if not all(math.isfinite(v) for v in result["losses"]):
                result.update(status="failed", reason=f"non-finite loss: {result['losses']}")
    except Exception as err:  # recorded in the table, the other cases still run
        result.update(status="failed", reason=_reason(err))
    return result


def inference_throughput(
    model_name: str = "attnmel_cnn",
    image_size: int = 224,
    batch_size: int = 8,
    mode: str = "fp32",
    steps: int = 3,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    *,
    seed: int = 0,
    min_seconds: float = 0.0,
    isolate_compile: bool = True,
    compile_timeout: float = DEFAULT_COMPILE_TIMEOUT_S,
) -> dict[str, Any]:
    """Inference images/s: the forward pass in eval mode under ``torch.inference_mode``; fields as training."""
    case = _case(model_name, image_size, batch_size, mode, steps, warmup, device, seed, min_seconds)
    spec = mode_spec(mode, device)
    if spec.compile and isolate_compile:
        return _run_isolated("inference", case, compile_timeout)
    device = torch.device(device)
    result = _base_result("inference", case)
    try:
        with _backend_settings(device):
            torch.manual_seed(seed)
            model = build_model(model_name).to(device).eval()
            if spec.channels_last:
                model = model.to(memory_format=torch.channels_last)
            forward = compile_model(model, spec.compile_mode) if spec.compile else model
            graphs = spec.compile and uses_cuda_graphs(spec.compile_mode, device)
            x, _, _ = _synthetic_batch(batch_size, image_size, device, spec.channels_last, seed)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            outputs: list[torch.Tensor] = []

            def step() -> None:
                if graphs:
                    begin_graph_step()
                with torch.inference_mode(), _autocast(device, spec.amp_dtype):
                    outputs[:] = [_as_output(forward(x)).logits]  # (N, K), the last call's

            times = _timed_steps(step, device, warmup, steps, min_seconds)
            logits = outputs[0]
            if not torch.isfinite(logits.float()).all():
                raise FloatingPointError("non-finite logits")
            if device.type == "cuda":
                result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            _finish(result, times, warmup, batch_size)
    except Exception as err:
        result.update(status="failed", reason=_reason(err))
    return result


_WORKERS: dict[str, Callable[..., dict[str, Any]]] = {
    "train": train_step_throughput,
    "inference": inference_throughput,
}


def _run_isolated(kind: str, kwargs: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a child Python process (own process group), killed after ``timeout`` seconds.

    ``torch.compile`` can take minutes on a small CPU, crash, or hang in its C++ toolchain; the child keeps that
    out of the benchmark's process and the cap bounds the whole run. The child writes its result as JSON.
    """
    result = _base_result(kind, kwargs)
    package_parent = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="attnmel-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "attnmel.bench", "--worker", kind, json.dumps(kwargs), str(out)]
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            result.update(status="failed", reason=f"timed out after {timeout:.0f} s (compile + measurement)")
            return result
        finally:
            result["wall_s"] = time.perf_counter() - start
        if proc.returncode != 0 or not out.is_file():
            lines = [line for line in (stderr or "").splitlines() if line.strip()]
            tail = lines[-1][:300] if lines else "no output"
            result.update(status="failed", reason=f"worker exited with code {proc.returncode}: {tail}")
            return result
        child = json.loads(out.read_text(encoding="utf-8"))
        child["wall_s"] = result["wall_s"]
        return child


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child we started and its own process group (inductor's compile workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()
    proc.communicate()


def _worker_main(argv: Sequence[str]) -> int:
    """Child side of :func:`_run_isolated`: ``--worker KIND JSON_KWARGS OUT_PATH``."""
    kind, kwargs_json, out = argv
    kwargs = json.loads(kwargs_json)
    try:
        result = _WORKERS[kind](**kwargs, isolate_compile=False)
    except Exception:
        traceback.print_exc()
        return 1
    atomic_write_json(out, result)
    return 0


# ----------------------------------------------------------------------------------------------------------------
# GPU JPEG decoding (issue 7, item 4)


def _synthetic_jpegs(n: int, height: int, width: int, quality: int, seed: int) -> list[torch.Tensor]:
    """``n`` JPEG files (1-D uint8 tensors) of smooth, skin-like random images with some fine texture."""
    from torchvision.io import encode_jpeg

    gen = torch.Generator().manual_seed(seed)
    files = []
    for _ in range(n):
        coarse = torch.rand(1, 3, 12, 16, generator=gen)  # (1, 3, 12, 16) large blobs
        img = torch.nn.functional.interpolate(
            coarse, size=(height, width), mode="bicubic", align_corners=False
        )
        img = img[0] * 0.6 + 0.2 + 0.05 * torch.randn(3, height, width, generator=gen)  # (3, H, W)
        files.append(encode_jpeg((img.clamp(0, 1) * 255).to(torch.uint8), quality=quality))
    return files


def jpeg_decode_throughput(
    n_images: int = 32,
    height: int = 768,
    width: int = 1024,
    quality: int = 90,
    repeats: int = 3,
    device: str | torch.device = "cuda",
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Images/s decoding synthetic JPEGs on the CPU and, when CUDA is available, with nvJPEG on the GPU.

    The GPU path (``torchvision.io.decode_jpeg(list, device="cuda")``, one batched call) is what a loader would
    use to move decoding off a small CPU. Without CUDA ``gpu_status`` is ``"skipped"`` with a note; the CPU
    figure is still measured, as the baseline. Best of ``repeats`` passes over the ``n_images`` files.
    """
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs in favour of TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        return _jpeg_decode_throughput(n_images, height, width, quality, repeats, torch.device(device), seed)


def _jpeg_decode_throughput(
    n_images: int, height: int, width: int, quality: int, repeats: int, device: torch.device, seed: int
) -> dict[str, Any]:
    from torchvision.io import decode_jpeg

    if n_images < 1 or repeats < 1:
        raise ValueError(f"n_images and repeats must be >= 1, got {n_images}, {repeats}")
    files = _synthetic_jpegs(n_images, height, width, quality, seed)
    result: dict[str, Any] = {
        "n_images": n_images,
        "height": height,
        "width": width,
        "quality": quality,
        "mean_kib": sum(f.numel() for f in files) / n_images / 1024,
        "cpu_images_per_s": None,
        "gpu_images_per_s": None,
        "gpu_status": "skipped",
        "gpu_note": "",
    }
    decode_jpeg(files[0])
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for data in files:
            decode_jpeg(data)
        best = min(best, time.perf_counter() - t0)
    result["cpu_images_per_s"] = n_images / best

    if device.type != "cuda" or not torch.cuda.is_available():
        why = "CUDA not available" if not torch.cuda.is_available() else f"device {device} is not CUDA"
        result["gpu_note"] = f"{why}: GPU JPEG decoding (nvJPEG) was not measured"
        return result
    try:
        decoded = decode_jpeg(files, device=device)  # warm-up: nvJPEG handles and buffers
        _sync(device)
        best = math.inf
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            decoded = decode_jpeg(files, device=device)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        if decoded[0].shape != (3, height, width):
            raise RuntimeError(
                f"GPU decode gave shape {tuple(decoded[0].shape)}, expected {(3, height, width)}"
            )
        result.update(gpu_images_per_s=n_images / best, gpu_status="ok")
    except Exception as err:
        result.update(gpu_status="failed", gpu_note=_reason(err))
    return result


# ----------------------------------------------------------------------------------------------------------------
# The whole benchmark


def run_benchmarks(
    sizes: Sequence[int] = DEFAULT_SIZES,
    batches: Sequence[int] = DEFAULT_BATCHES,
    modes: Sequence[str] = DEFAULT_MODES,
    *,
    model_name: str = "attnmel_cnn",
    steps: int | None = None,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    inference: bool = True,
    ceilings: dict[str, float] | None = None,
    compile_shapes: Collection[tuple[int, int]] | None = None,
    compile_timeout: float = DEFAULT_COMPILE_TIMEOUT_S,
    isolate_compile: bool = True,
    min_seconds: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (image size, batch size, mode): training (and inference) images/s and fraction of the ceiling.

    Args:
        sizes, batches, modes: the grid; rows come out in this order (size, then batch, then mode).
        steps: timed steps per case (None: :func:`default_steps` of the batch size); warmup: untimed steps.
        ceilings: matmul GFLOP/s by dtype name; measured here for the modes' dtypes when None.
        compile_shapes: the (size, batch) pairs where ``"compile"`` runs (None: all); elsewhere it is skipped
            with a note, because every new shape is a new compile (minutes on a small CPU).
        compile_timeout: seconds allowed to each compiled case, compile included.
        min_seconds: keep timing each case until its steps fill this many seconds (None:
            :func:`default_min_seconds`, 2 s on a GPU, 0 on the CPU).
        progress: called with a one-line message before each case (e.g. ``print``).
    """
    device = torch.device(device)
    min_seconds = default_min_seconds(device) if min_seconds is None else min_seconds
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"unknown benchmark mode {mode!r}; choose from {sorted(MODES)}")
    say = progress or (lambda message: None)
    if ceilings is None:
        needed = {ceiling_for(m, device) for m in modes}
        say(f"matmul ceilings ({', '.join(sorted(needed))})")
        ceilings = measure_ceilings(needed, device=device)
    flops: dict[tuple[int, bool], int] = {}
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for train in (True, False):
            flops[size, train] = model_flops(model_name, size, train=train)
        for batch in batches:
            n_steps = steps if steps is not None else default_steps(batch)
            for mode in modes:
                spec = MODES[mode]
                row: dict[str, Any] = {
                    "model": model_name,
                    "device": str(device),
                    "mode": mode,
                    "image_size": size,
                    "batch_size": batch,
                    "steps": n_steps,
                    "warmup": warmup,
                    "min_seconds": min_seconds,
                    "ceiling": ceiling_for(mode, device),
                    "train_flops_per_image": flops[size, True],
                    "infer_flops_per_image": flops[size, False],
                    "note": "",
                }
                skip = _skip_reason(spec, device, size, batch, compile_shapes)
                kinds = [("train", train_step_throughput)] + (
                    [("infer", inference_throughput)] if inference else []
                )
                for prefix, measure in kinds:
                    if skip:
                        row.update({f"{prefix}_status": "skipped", f"{prefix}_images_per_s": None})
                        continue
                    say(f"{prefix:5s} {model_name} {size}px batch {batch} {mode}")
                    result = measure(
                        model_name,
                        size,
                        batch,
                        mode,
                        n_steps,
                        warmup,
                        device,
                        min_seconds=min_seconds,
                        isolate_compile=isolate_compile,
                        compile_timeout=compile_timeout,
                    )
                    _merge(row, prefix, result)
                notes = [f"{p}: {row[f'{p}_reason']}" for p, _ in kinds if row.get(f"{p}_status") == "failed"]
                if spec.compile and not skip:
                    firsts = [
                        f"{p} {row[f'{p}_first_step_s']:.0f} s"
                        for p, _ in kinds
                        if row.get(f"{p}_first_step_s")
                    ]
                    notes += [f"first step (compile included): {', '.join(firsts)}"] if firsts else []
                row["note"] = skip or "; ".join(notes)
                rows.append(row)
    apply_ceilings(rows, ceilings)
    return rows


def _skip_reason(
    spec: ModeSpec,
    device: torch.device,
    size: int,
    batch: int,
    compile_shapes: Collection[tuple[int, int]] | None,
) -> str:
    try:
        mode_spec(spec.name, device)
    except ValueError as err:
        return str(err)
    if spec.compile and compile_shapes is not None and (size, batch) not in compile_shapes:
        if not compile_shapes:
            return "compile not measured (no compile shapes chosen)"
        where = ", ".join(f"{s} px batch {b}" for s, b in sorted(compile_shapes))
        return f"compile measured at {where} only (each shape is a new compile); see --compile-shapes"
    return ""


def _merge(row: dict[str, Any], prefix: str, result: dict[str, Any]) -> None:
    flops = row[f"{prefix}_flops_per_image"]
    ips = result.get("images_per_s") if result["status"] == "ok" else None
    gflops = flops * ips / 1e9 if ips else None
    row.update(
        {
            f"{prefix}_status": result["status"],
            f"{prefix}_reason": result.get("reason", ""),
            f"{prefix}_images_per_s": ips,
            f"{prefix}_seconds_per_step": result.get("seconds_per_step") if ips else None,
            f"{prefix}_step_times_s": result.get("step_times_s", []),
            f"{prefix}_first_step_s": result.get("first_step_s"),
            f"{prefix}_gflops_per_s": gflops,
        }
    )
    if "peak_memory_gib" in result:
        row[f"{prefix}_peak_memory_gib"] = result["peak_memory_gib"]
    if "wall_s" in result:
        row[f"{prefix}_wall_s"] = result["wall_s"]


def run_suite(
    sizes: Sequence[int] = DEFAULT_SIZES,
    batches: Sequence[int] = DEFAULT_BATCHES,
    modes: Sequence[str] = DEFAULT_MODES,
    *,
    model_name: str = "attnmel_cnn",
    steps: int | None = None,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    inference: bool = True,
    matmul_n: int | Sequence[int] = DEFAULT_MATMUL_SIZES,
    matmul_seconds: float = 2.0,
    compile_shapes: Collection[tuple[int, int]] | None = None,
    compile_timeout: float = DEFAULT_COMPILE_TIMEOUT_S,
    min_seconds: float | None = None,
    jpeg: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Everything ``benchmarks/bench_train.py`` reports: machine, ceilings, FLOPs, the rows and JPEG decoding.

    The ceilings are measured before and after the grid and the higher of the two is used: a ceiling taken
    while the machine is briefly slower would inflate every fraction.
    """
    device = torch.device(device)
    say = progress or (lambda message: None)
    started = time.perf_counter()
    machine = machine_info(device)
    sizes_n = [matmul_n] if isinstance(matmul_n, int) else list(matmul_n)
    min_seconds = default_min_seconds(device) if min_seconds is None else min_seconds
    needed = {ceiling_for(m, device) for m in modes if m in MODES}
    say(f"matmul ceilings ({', '.join(sorted(needed))}), n={sizes_n}")
    ceilings_start = measure_ceilings(needed, device=device, n=sizes_n, seconds=matmul_seconds)
    rows = run_benchmarks(
        sizes,
        batches,
        modes,
        model_name=model_name,
        steps=steps,
        warmup=warmup,
        device=device,
        inference=inference,
        ceilings=ceilings_start,
        compile_shapes=compile_shapes,
        compile_timeout=compile_timeout,
        min_seconds=min_seconds,
        progress=progress,
    )
    say(f"matmul ceilings again ({', '.join(sorted(needed))}), n={sizes_n}")
    ceilings_end = measure_ceilings(needed, device=device, n=sizes_n, seconds=matmul_seconds)
    ceilings = {k: max(v, ceilings_end.get(k, v)) for k, v in ceilings_start.items()}
    apply_ceilings(rows, ceilings)
    jpeg_result = None
    if jpeg:
        say("JPEG decoding (CPU, and GPU when CUDA is available)")
        jpeg_result = jpeg_decode_throughput(device=device if device.type == "cuda" else "cuda")
    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {
        "benchmark": "attnmel training and inference speed",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "elapsed_s": time.perf_counter() - started,
        "machine": machine,
        "config": {
            "model": model_name,
            "sizes": list(sizes),
            "batches": list(batches),
            "modes": list(modes),
            "steps": steps,
            "warmup": warmup,
            "inference": inference,
            "matmul_n": sizes_n,
            "matmul_seconds": matmul_seconds,
            "compile_shapes": None if compile_shapes is None else [list(s) for s in compile_shapes],
            "compile_timeout_s": compile_timeout,
            "min_seconds": min_seconds,
        },
        "ceilings_gflops_per_s": ceilings,
        "ceilings_start_gflops_per_s": ceilings_start,
        "ceilings_end_gflops_per_s": ceilings_end,
        "flops_per_image": {
            str(size): {
                "train": model_flops(model_name, size, train=True),
                "infer": model_flops(model_name, size, train=False),
            }
            for size in sizes
        },
        "rows": rows,
        "jpeg": jpeg_result,
    }


# ----------------------------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value * scale, spec)


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The benchmark rows as a Markdown table (one line per size, batch and mode)."""
    header = (
        "| size | batch | mode | ceiling | timed steps | train img/s | train s/step | train GFLOP/s "
        "| train % of ceiling | infer img/s | infer GFLOP/s | infer % of ceiling | note |\n"
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for r in rows:
        note = str(r.get("note", "")).replace("|", "\\|")
        lines.append(
            f"| {r['image_size']} | {r['batch_size']} | {r['mode']} | {r.get('ceiling', '—')} "
            f"| {len(r.get('train_step_times_s') or []) or '—'} "
            f"| {_fmt(r.get('train_images_per_s'), '.2f')} | {_fmt(r.get('train_seconds_per_step'), '.2f')} "
            f"| {_fmt(r.get('train_gflops_per_s'), '.0f')} | {_fmt(r.get('train_fraction_of_ceiling'), '.1f', 100)} "
            f"| {_fmt(r.get('infer_images_per_s'), '.2f')} | {_fmt(r.get('infer_gflops_per_s'), '.0f')} "
            f"| {_fmt(r.get('infer_fraction_of_ceiling'), '.1f', 100)} "
            f"| {note} |"
        )
    return header + "\n".join(lines) + ("\n" if lines else "")


def render_report(result: dict[str, Any]) -> str:
    """The full Markdown report of :func:`run_suite`: machine, ceilings, FLOPs, the table and JPEG decoding."""
    m = result["machine"]
    cfg = result["config"]
    out = [f"# Training and inference speed ({cfg['model']}, {m['device']})", ""]
    out.append(f"Measured {result['created']} in {result['elapsed_s'] / 60:.1f} min.")
    out.append("")
    out.append(
        f"- CPU: {m['cpu_model']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs, "
        f"{m['torch_threads']} torch threads, capability {m['cpu_capability']}, flags "
        f"{', '.join(m['cpu_flags']) or 'none of note'}"
    )
    out.append(f"- native bf16 on the CPU (AVX-512 BF16 / AMX): {'yes' if m['cpu_bf16_native'] else 'no'}")
    if m.get("gpu_name"):
        out.append(
            f"- GPU: {m['gpu_name']} (compute {m['gpu_capability']}, {m['gpu_memory_gib']} GiB), CUDA "
            f"{m['cuda_version']}, cuDNN {m['cudnn_version']}, bf16 {m['gpu_bf16']}, TF32 matmul "
            f"{m['tf32_matmul']} / cuDNN {m['tf32_cudnn']}"
        )
    else:
        out.append("- GPU: none used")
    out.append(f"- torch {m['torch']}, torchvision {m['torchvision']}, Python {m['python']}, {m['platform']}")
    load, load_end = m.get("load_average"), m.get("load_average_end")
    if load:
        out.append(
            f"- load average at start {load[0]:.2f}" + (f", at end {load_end[0]:.2f}" if load_end else "")
        )
        cpus = m.get("usable_cpus") or 1
        if load[0] > 0.5 * cpus:
            out.append(
                f"- **warning**: the machine was busy at the start (load {load[0]:.1f} on {cpus} CPUs); "
                "figures are lower than an idle machine would give"
            )
    out.append("")
    ceil = result["ceilings_gflops_per_s"]
    ceilings = ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in ceil.items())
    sizes_n = cfg["matmul_n"] if isinstance(cfg["matmul_n"], list) else [cfg["matmul_n"]]
    start, end = result.get("ceilings_start_gflops_per_s"), result.get("ceilings_end_gflops_per_s")
    when = ""
    if start and end:
        when = " (before the grid: " + ", ".join(f"{k} {v:,.0f}" for k, v in start.items())
        when += "; after: " + ", ".join(f"{k} {v:,.0f}" for k, v in end.items()) + "; the higher is used)"
    sides = ", ".join(f"{n} x {n}" for n in sizes_n)
    out.append(f"Matmul ceiling (best call over {sides}): {ceilings}{when}.")
    above = [
        f"{r['image_size']} px batch {r['batch_size']} {r['mode']} {p}"
        for r in result["rows"]
        for p in ("train", "infer")
        if (r.get(f"{p}_fraction_of_ceiling") or 0) > 1.0
    ]
    if above:
        out.append(
            f"Above 100% ({len(above)} case(s), e.g. {above[0]}): the convolution kernels (oneDNN / cuDNN) beat "
            "the square matmul on this machine, so the ceiling is a practical reference, not a hard bound; "
            "those cases run at the machine's measured peak."
        )
    if "bf16" in ceil and "fp32" in ceil and ceil["bf16"] < 0.5 * ceil["fp32"]:
        out.append(
            "The bf16 matmul ceiling is far below the fp32 one here (no native bf16: the product is emulated), "
            "so the bf16 modes' % of ceiling is measured against a low bar; compare them by images/s."
        )
    flops = ", ".join(
        f"{s} px: {f['train'] / 1e9:.1f} train / {f['infer'] / 1e9:.1f} inference"
        for s, f in result["flops_per_image"].items()
    )
    out.append(f"Counted GFLOPs per image (convolutions and matrix products): {flops}.")
    out.append("")
    out.append(
        "Training = forward + Eq. 5 loss + backward + SGD step on a synthetic batch already on the device; "
        "inference = eval-mode forward under `torch.inference_mode`. Images/s uses the median timed step "
        f"(warm-up {cfg['warmup']} step(s) not timed). % of ceiling = counted FLOPs x images/s / matmul ceiling "
        "of the mode's dtype (fp32 for fp32, channels_last and compile; bf16 for the bf16 modes)."
    )
    out.append("")
    out.append(to_markdown(result["rows"]))
    jpeg = result.get("jpeg")
    if jpeg:
        line = (
            f"JPEG decoding ({jpeg['n_images']} synthetic {jpeg['width']} x {jpeg['height']} files, "
            f"{jpeg['mean_kib']:.0f} KiB mean): CPU {_fmt(jpeg['cpu_images_per_s'], '.1f')} images/s"
        )
        if jpeg["gpu_status"] == "ok":
            line += f", GPU (nvJPEG) {jpeg['gpu_images_per_s']:.1f} images/s."
        else:
            line += f"; GPU {jpeg['gpu_status']}: {jpeg['gpu_note']}."
        out += [line, ""]
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2:]))
    sys.exit(
        "attnmel.bench is a library; run benchmarks/bench_train.py (the --worker entry point is internal)"
    )
