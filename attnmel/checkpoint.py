"""Our checkpoints: one self-describing dict, written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds everything needed to rebuild the model and to continue the run bit for bit:

``{"format": "attnmel-checkpoint", "version": 1, "arch", "arch_kwargs", "model" (plain module state, never a
DDP wrapper), "optimizer", "scheduler", "scaler", "epoch" (last finished, 1-based), "best_epoch",
"best_val_auc", "config" (TrainConfig.to_dict()), "history" (per-epoch rows), "rng" (torch / numpy / python
generator states as tensors and plain values), "torch_version"}``.

The trainer's ``latest.pt`` is the whole dict (the resume point); its ``best.pt`` leaves out ``optimizer``,
``scheduler``, ``scaler`` and ``rng`` (what only a resume needs), which halves its size.

Only tensors, numbers, strings, lists, tuples and dicts go in, so the restricted unpickler of
``weights_only=True`` accepts every file we write.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attnmel.io import atomic_torch_save

__all__ = [
    "FORMAT",
    "CheckpointError",
    "unwrap_model",
    "make_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "build_model_from_checkpoint",
    "load_model_weights",
    "rng_state",
    "set_rng_state",
    "save_safetensors",
    "load_safetensors",
]

FORMAT = "attnmel-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, or not one of ours."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def rng_state() -> dict[str, Any]:
    """Every generator the training loop touches, as weights_only-safe values."""
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global generator is what libraries use
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    epoch: int = 0,
    best_epoch: int = 0,
    best_val_auc: float = float("nan"),
    config: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of a model (unwrapped from DDP/compile) and, optionally, its training state."""
    plain = unwrap_model(model)
    arch = getattr(plain, "arch", None)
    if arch is None:
        raise CheckpointError(
            f"{type(plain).__name__} has no .arch: only attnmel.models builders can be saved"
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "arch_kwargs": dict(getattr(plain, "arch_kwargs", {})),
        "model": {k: v.detach().cpu() for k, v in plain.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch),
        "best_epoch": int(best_epoch),
        "best_val_auc": float(best_val_auc),
        "config": dict(config or {}),
        "history": list(history or []),
        "rng": rng_state(),
        "torch_version": str(torch.__version__),
    }


def cpu_snapshot(obj: Any) -> Any:
    """A copy of a checkpoint with every tensor cloned to the CPU (dicts, lists and tuples copied, the rest
    shared): what a background write may serialise while training goes on changing the live tensors."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {key: cpu_snapshot(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cpu_snapshot(value) for value in obj)
    return obj


class BackgroundWriter:
    """Runs one write job at a time in a thread, so training goes on while checkpoints reach the disk.

    ``submit`` first waits for the previous job, so writes land in order; a job's exception (e.g. a
    DiskFullError) is raised by the next ``submit`` or by ``wait``. The thread is not a daemon: an interpreter
    that exits still finishes the write in flight, and the atomic writes keep every file whole either way.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], Any]) -> None:
        self.wait()

        def run() -> None:
            try:
                job()
            except BaseException as err:  # handed to the training thread at its next submit / wait
                self._error = err

        self._thread = threading.Thread(target=run, name="attnmel-checkpoint-writer")
        self._thread.start()

    def wait(self) -> None:
        """Block until the job in flight is written; raise its error, if it had one."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> Path:
    """Write atomically: a crash mid-save leaves the previous file at ``path`` intact."""
    return atomic_torch_save(checkpoint, path)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", *, mmap: bool = False
) -> dict[str, Any]:
    """Load one of our checkpoints with ``weights_only=True``; clear errors for anything else. ``mmap``: map the
    tensors from the file instead of reading them, for a caller that wants only the metadata (e.g. its config)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is reported the same way
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = [ln for ln in lines if "WeightsUnpickler error" in ln] or lines or [type(err).__name__]
        first = detail[0]
        raise CheckpointError(
            f"{path}: not a loadable attnmel checkpoint ({first}). "
            "The authors' released AttnVGG files load with attnmel.models.load_reference_checkpoint."
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an attnmel checkpoint (no format={FORMAT!r} marker). "
            "The authors' released AttnVGG files load with attnmel.models.load_reference_checkpoint."
        )
    return ckpt


def build_model_from_checkpoint(
    checkpoint: str | os.PathLike | dict[str, Any], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the saved architecture, load its weights, and return (model in eval mode, checkpoint dict)."""
    from attnmel.models import build_model

    ckpt = (
        checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location=map_location)
    )
    source = checkpoint if not isinstance(checkpoint, dict) else "checkpoint"
    kwargs = dict(ckpt["arch_kwargs"])
    kwargs.pop("weights", None)  # the saved state replaces any initialisation
    try:
        model = build_model(ckpt["arch"], **kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{source}: cannot rebuild architecture {ckpt['arch']!r} with {kwargs} ({err})"
        ) from None
    load_model_weights(model, ckpt["model"], source=source, arch=ckpt["arch"])
    return model.eval(), ckpt


def load_model_weights(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: Any = "checkpoint", arch: str | None = None
) -> None:
    """``load_state_dict`` (strict) with one line naming the keys and shapes that do not fit, not a traceback."""
    target = unwrap_model(model)
    expected = target.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: saved {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        name = arch or getattr(target, "arch", None) or type(target).__name__
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {_first(shapes)}")
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
        raise CheckpointError(
            f"{source}: the saved weights do not fit architecture {name!r}: " + "; ".join(parts)
        )
    target.load_state_dict(state)


def _first(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


# ------------------------------------------------------------------------------------------------ safetensors
SAFETENSORS_FORMAT = "attnmel-safetensors"


def save_safetensors(
    checkpoint: dict[str, Any], path: str | os.PathLike, extra: dict[str, Any] | None = None
) -> Path:
    """The weights of one of our checkpoints as a ``.safetensors`` file (plain tensors only), written atomically.

    The header metadata (strings) names what rebuilds the model: ``format``, ``arch``, ``arch_kwargs`` (JSON),
    ``epoch``, ``torch_version`` and any ``extra`` (each value JSON-encoded unless it is a string). No pickle is
    involved on either side: :func:`load_safetensors` reads it back.
    """
    import json

    from safetensors.torch import save

    from attnmel.io import atomic_write_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint["model"].items()}
    metadata = {
        "format": SAFETENSORS_FORMAT,
        "arch": str(checkpoint["arch"]),
        "arch_kwargs": json.dumps(dict(checkpoint.get("arch_kwargs", {})), sort_keys=True),
        "epoch": str(int(checkpoint.get("epoch", 0))),
        "torch_version": str(checkpoint.get("torch_version", torch.__version__)),
    }
    for key, value in (extra or {}).items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_safetensors(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, str]]:
    """Rebuild the model saved by :func:`save_safetensors`: ``(model in eval mode, metadata strings)``."""
    import json

    from safetensors import SafetensorError, safe_open

    from attnmel.models import build_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    device = str(map_location)
    try:
        with safe_open(str(path), framework="pt", device=device) as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if metadata.get("format") != SAFETENSORS_FORMAT or "arch" not in metadata:
        raise CheckpointError(
            f"{path}: not an attnmel safetensors file (no format={SAFETENSORS_FORMAT!r} / arch metadata)"
        )
    kwargs = json.loads(metadata.get("arch_kwargs", "{}"))
    kwargs.pop("weights", None)
    try:
        model = build_model(metadata["arch"], **kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: cannot rebuild {metadata['arch']!r} with {kwargs} ({err})") from None
    load_model_weights(model, state, source=path, arch=metadata["arch"])
    return model.to(map_location).eval(), metadata
