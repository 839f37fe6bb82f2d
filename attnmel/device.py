"""Device selection and the speed options of the engine: mixed precision, channels_last, pinned copies.

``select_device("auto")`` picks CUDA, then Apple MPS, then the CPU. ``resolve_precision("auto", device)`` picks
the fastest mode that keeps accuracy: bf16 autocast on CUDA cards that support it (fp16 with a gradient
scaler on older cards), bf16 autocast on CPUs with native bf16 instructions (AVX-512 BF16 or AMX), fp32
elsewhere. bf16 keeps the fp32 exponent range, so it needs no loss scaling; fp16 does.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch

from attnmel.config import COMPILE_MODES

__all__ = [
    "PRECISIONS",
    "select_device",
    "cpu_supports_bf16",
    "resolve_precision",
    "autocast",
    "make_grad_scaler",
    "configure_backends",
    "move_batch",
    "COMPILE_MODES",
    "compile_model",
    "uses_cuda_graphs",
    "begin_graph_step",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else mps, else cpu; otherwise the named device, checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(
            f"device {name!r} is not a valid torch device (try 'auto', 'cpu', 'cuda', 'cuda:0')"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} was asked for but CUDA is not available here; use device='auto' or 'cpu'"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device {name!r} was asked for but MPS is not available here; use 'auto' or 'cpu'")
    return device


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), where bf16 autocast is a speed-up.

    On CPUs without it oneDNN emulates bf16 and autocast is slower than fp32, so "auto" keeps fp32 there.
    """
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None:
            with contextlib.suppress(Exception):
                if fn():
                    return True
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``"auto"|"fp32"|"bf16"|"fp16"`` into the concrete mode used on ``device``, or raise ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu":
            return "bf16" if cpu_supports_bf16() else "fp32"
        return "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise ValueError(
            "precision 'fp16' needs a GPU (it relies on a gradient scaler); on the CPU use 'bf16' or 'fp32'"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision 'bf16' is not supported by this CUDA device; use 'fp16' or 'auto'")
    return precision


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast context for a resolved precision; a no-op for fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield


def make_grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (bf16 and fp32 need no loss scaling)."""
    enabled = precision == "fp16" and device.type in ("cuda", "mps")
    return torch.amp.GradScaler(device.type if enabled else "cpu", enabled=enabled)


def configure_backends(device: torch.device) -> None:
    """cuDNN autotuning on CUDA (input sizes are fixed, so the tuned kernels are reused every step)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def move_batch(batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    """Copy the tensors of a collated batch to ``device`` (non-blocking from pinned memory on CUDA)."""
    non_blocking = device.type == "cuda"
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=non_blocking)
            if channels_last and key == "image" and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)  # (N, 3, S, S), NHWC in memory
        out[key] = value
    return out


def compile_model(model: torch.nn.Module, mode: str = "default") -> Any:
    """``torch.compile(model)`` in one of :data:`COMPILE_MODES`; the first calls pay the compile time."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} is not one of {list(COMPILE_MODES)}")
    return torch.compile(model, mode=None if mode == "default" else mode)


def uses_cuda_graphs(mode: str, device: torch.device) -> bool:
    """Whether a model compiled in ``mode`` replays CUDA graphs on ``device``."""
    return mode == "reduce-overhead" and device.type == "cuda"


def begin_graph_step() -> None:
    """Tell CUDA-graph replays that a new step begins: the last step's graph outputs may now be overwritten
    (without it, a training loop that runs forward again before the last backward finished is refused)."""
    torch.compiler.cudagraph_mark_step_begin()
