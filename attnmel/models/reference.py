"""Safe import of the authors' released AttnVGG checkpoints into our AttnMel-CNN.

The released files are ``torch.save({"state_dict": ..., "opt_state_dict": ...})`` with 101 state-dict keys
(``conv_block1..5.<i>.*``, ``attn1.*`` on pool-3, ``attn2.*`` on pool-4, ``cls.*``). Their optimiser state holds
numpy scalars, which plain ``torch.load(weights_only=True)`` refuses. A pickle can run any code it names, so
we do not fall back to ``weights_only=False``: we load with torch's restricted (weights-only) unpickler and
allow, in addition to tensors and plain containers, exactly what numpy scalars need to be rebuilt
(``numpy.core.multiarray.scalar`` under its numpy 1 and numpy 2 names, ``numpy.dtype`` and the numeric dtype
classes). Anything else (``os.system``, ``builtins.eval``, ...) is refused with :class:`ReferenceCheckpointError`
naming the file and the global, and nothing of it runs. Both torch's zip format and the legacy format load.

Key mapping (the authors' blocks are cut like ours, so it is 1:1)::

    conv_block<k>.<i>.*  -> features.conv_block<k>.<i>.*
    attn1.W_l / W_g / phi -> attn3.W_f / W_g / W      (pool-3)
    attn2.W_l / W_g / phi -> attn4.W_f / W_g / W      (pool-4)
    cls.*                 -> classifier.*
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .networks import AttnMelCNN, attnmel_cnn

__all__ = [
    "ReferenceCheckpointError",
    "REFERENCE_NUM_KEYS",
    "read_reference_state_dict",
    "load_reference_checkpoint",
]

REFERENCE_NUM_KEYS = 101
_ATTN_PARAMS = {
    "W_l.weight": "W_f.weight",
    "W_g.weight": "W_g.weight",
    "phi.weight": "W.weight",
    "phi.bias": "W.bias",
}


class ReferenceCheckpointError(RuntimeError):
    """The file is not a loadable AttnVGG checkpoint, or its pickle asks for something we refuse to run."""


def _numpy_safe_globals() -> list[Any]:
    """What rebuilding numpy scalars needs, and nothing more."""
    import numpy as np

    scalar = np.float64(0.0).__reduce__()[0]  # numpy.(_)core.multiarray.scalar
    dtype_classes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}
    return [
        (scalar, "numpy.core.multiarray.scalar"),  # files written with numpy 1.x
        (scalar, "numpy._core.multiarray.scalar"),  # files written with numpy 2.x
        np.dtype,
        *sorted(dtype_classes, key=lambda cls: cls.__name__),
    ]


def _refused_globals(path: Path, message: str) -> str:
    """Every global of a zip checkpoint we would refuse; else the one torch's unpickler stopped at."""
    if zipfile.is_zipfile(path):
        allowed = {name for obj in _numpy_safe_globals() for name in _names(obj)}
        try:  # scans the pickle's opcodes; runs nothing
            names = [
                n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path) if n not in allowed
            ]
        except Exception:  # noqa: BLE001 (best effort: fall back to torch's message)
            names = []
        if names:
            return ", ".join(names)
    match = re.search(r"GLOBAL ([\w.]+)", message) or re.search(r"but got (<[^>]+>)", message)
    return match.group(1) if match else message.strip().splitlines()[-1]


def _names(obj: Any) -> list[str]:
    if isinstance(obj, tuple):
        return [obj[1]]
    return [f"{obj.__module__}.{obj.__qualname__}"]


def _load_restricted(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ReferenceCheckpointError(
            f"refused to load {path}: its pickle asks for {_refused_globals(path, str(error))}; only tensors, "
            "plain containers and numpy scalars are allowed. A checkpoint must not run code: nothing was loaded."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, TypeError, AttributeError) as error:
        raise ReferenceCheckpointError(f"could not read {path} as a torch checkpoint: {error}") from error


def read_reference_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the authors' state dict from ``path`` safely; drop an optional ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference checkpoint {path} does not exist")
    obj = _load_restricted(path)
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ReferenceCheckpointError(
            f"{path} holds no state dict of tensors (expected {{'state_dict': ..., 'opt_state_dict': ...}})"
        )
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _reference_key_map(model: AttnMelCNN) -> dict[str, str]:
    """Authors' key -> our key, for every entry of our AttnMel-CNN state dict."""
    mapping = {}
    for k in range(1, 6):
        for key in getattr(model.features, f"conv_block{k}").state_dict():
            mapping[f"conv_block{k}.{key}"] = f"features.conv_block{k}.{key}"
    for theirs, ours in (("attn1", "attn3"), ("attn2", "attn4")):
        for their_param, our_param in _ATTN_PARAMS.items():
            mapping[f"{theirs}.{their_param}"] = f"{ours}.{our_param}"
    mapping["cls.weight"], mapping["cls.bias"] = "classifier.weight", "classifier.bias"
    return mapping


def load_reference_checkpoint(path: str | os.PathLike, **builder_kwargs: Any) -> AttnMelCNN:
    """Build an AttnMel-CNN holding the weights of an authors' AttnVGG checkpoint at ``path``.

    Args:
        path: a ``torch.save``'d ``{"state_dict", "opt_state_dict"}`` file of the released code.
        builder_kwargs: passed to :func:`attnmel.models.attnmel_cnn` (``normalize``, ``num_classes``; the
            backbone must be ``vgg16_bn``; ``num_classes`` defaults to the checkpoint's). ``weights`` is not allowed.

    Returns the model in training mode, like the builders; call ``.eval()`` for inference.
    """
    path = Path(path)
    if "weights" in builder_kwargs:
        raise TypeError(
            "load_reference_checkpoint takes its weights from the checkpoint; do not pass weights="
        )
    if builder_kwargs.get("backbone", "vgg16_bn") != "vgg16_bn":
        raise ValueError(
            f"the authors' checkpoints use backbone='vgg16_bn', got {builder_kwargs['backbone']!r}"
        )
    state = read_reference_state_dict(path)
    cls_weight = state.get("cls.weight")
    if isinstance(cls_weight, torch.Tensor) and cls_weight.ndim == 2:
        builder_kwargs.setdefault("num_classes", cls_weight.shape[0])
    model = attnmel_cnn(**builder_kwargs)
    key_map = _reference_key_map(model)
    assert len(key_map) == REFERENCE_NUM_KEYS, len(key_map)
    missing = sorted(set(key_map) - set(state))
    unexpected = sorted(set(state) - set(key_map))
    if missing or unexpected:
        raise ReferenceCheckpointError(
            f"{path} is not an AttnVGG (vgg16_bn) checkpoint: {len(missing)} of the {REFERENCE_NUM_KEYS} expected "
            f"keys missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}"
        )
    own = model.state_dict()
    mismatched = [
        f"{theirs} {tuple(state[theirs].shape)} vs {tuple(own[ours].shape)}"
        for theirs, ours in key_map.items()
        if state[theirs].shape != own[ours].shape
    ]
    if mismatched:
        raise ReferenceCheckpointError(
            f"{path}: shapes do not match AttnMel-CNN: {'; '.join(mismatched[:5])}"
        )
    model.load_state_dict({ours: state[theirs] for theirs, ours in key_map.items()}, strict=True)
    return model
