"""ImageNet initialisation of the backbones, through torchvision's weights API or a local file.

The paper fine-tunes an ImageNet-trained VGG-16 (the authors' code: torchvision ``vgg16_bn``). We take the
weights that torchvision publishes (each backbone names its enum in :mod:`attnmel.models.registry`:
``VGG16_BN_Weights``, ``VGG16_Weights``, ``ResNet50_Weights``) but never download them behind the user's back: a builder called with ImageNet weights reads the file from the
torch hub cache (``torch.hub.get_dir()/checkpoints/<file name from the weights URL>``), and when it is not
there raises :class:`WeightsNotFoundError` saying where to put it and how to train from scratch instead.
:func:`fetch_imagenet_weights` downloads it on purpose. A local torchvision-layout state-dict file works too.

Only the backbone takes ImageNet weights (plus fc6 and fc7 for the dense VGG-16); classification heads are
always new, so ``num_classes`` is free. Note the weights' ImageNet preprocessing is not the authors': they
normalise with per-dataset statistics (see ``attnmel.data``).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Union
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torchvision.models import WeightsEnum

from . import registry

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "WeightsArg",
    "WeightsError",
    "WeightsNotFoundError",
    "IMAGENET_WEIGHTS",
    "resolve_weights",
    "imagenet_checkpoint_path",
    "fetch_imagenet_weights",
    "load_state_dict_file",
    "load_pretrained",
]

WeightsArg = Union[None, str, os.PathLike, WeightsEnum]  # noqa: UP007 (runtime alias, Python 3.10)

# backbone name -> torchvision weights enum, from the registry
IMAGENET_WEIGHTS: dict[str, type[WeightsEnum]] = {
    name: registry.weights_enum(name) for name in registry.list_backbones()
}


class WeightsError(RuntimeError):
    """Pretrained weights could not be read or do not fit the model."""


class WeightsNotFoundError(WeightsError):
    """The requested pretrained weights are not on this machine (and we do not download implicitly)."""


class _HasImagenetKeys(Protocol):
    def imagenet_key_map(self) -> dict[str, str]: ...


def resolve_weights(weights: WeightsArg, backbone: str) -> WeightsEnum | Path | None:
    """Turn a ``weights=`` argument into a torchvision weights enum, a file path, or None.

    Accepts None, a weights enum of the backbone's family, its member name (``"IMAGENET1K_V1"``, ``"DEFAULT"``,
    or ``"VGG16_BN_Weights.IMAGENET1K_V1"``), or the path of an existing file.
    """
    if weights is None:
        return None
    family = registry.weights_enum(backbone)
    if isinstance(weights, WeightsEnum):
        if not isinstance(weights, family):
            raise ValueError(
                f"weights {weights} are for another network; backbone={backbone!r} takes {family.__name__}"
            )
        return weights
    if isinstance(weights, str):
        name = weights.removeprefix(f"{family.__name__}.")
        if name in family.__members__:
            return family[name]
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        names = ", ".join(repr(n) for n in family.__members__)
        raise WeightsNotFoundError(
            f"weights={str(weights)!r} is neither a {family.__name__} name ({names}) nor an existing file. "
            "Pass weights=None to train from scratch."
        )
    raise TypeError(
        f"weights must be None, a str, a path or a {family.__name__}, got {type(weights).__name__}"
    )


def imagenet_checkpoint_path(weights: WeightsEnum) -> Path:
    """Where torch hub keeps (and torchvision would download) the file of ``weights``."""
    filename = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def fetch_command(weights: WeightsEnum, backbone: str) -> str:
    """The ``attnmel`` command line that puts ``weights`` into the torch hub cache."""
    name = "" if weights.name == "IMAGENET1K_V1" else f" --weights {weights.name}"
    return f"attnmel weights fetch {backbone}{name}"


def _missing_message(weights: WeightsEnum, backbone: str) -> str:
    path = imagenet_checkpoint_path(weights)
    return (
        f"ImageNet weights {type(weights).__name__}.{weights.name} are not in the torch hub cache, and attnmel "
        f"does not download them implicitly.\n"
        f"  Expected file: {path}\n"
        f"  (folder {path.parent}, file name {path.name}; set TORCH_HOME to use another cache.)\n"
        f"To fix, either\n"
        f"  - download {weights.url} and save it as {path}, or\n"
        f"  - run `{fetch_command(weights, backbone)}` (Python: attnmel.models.fetch_imagenet_weights"
        f"({backbone!r})) with internet access (elsewhere, then copy the file), or\n"
        f"  - pass weights='path/to/{path.name}' if you keep the file elsewhere.\n"
        f"To train from scratch instead, pass weights=None."
    )


def fetch_imagenet_weights(
    backbone: str = "vgg16_bn", *, weights_name: str = "IMAGENET1K_V1", progress: bool = True
) -> Path:
    """Download the torchvision ImageNet weights of ``backbone`` into the torch hub cache; return the file."""
    weights = resolve_weights(weights_name, backbone)
    assert isinstance(weights, WeightsEnum)
    path = imagenet_checkpoint_path(weights)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # torch hub writes a temporary file beside ``path`` and moves it into place: atomic
        torch.hub.download_url_to_file(weights.url, str(path), progress=progress)
    except (URLError, OSError) as error:
        raise WeightsNotFoundError(
            f"could not download {weights.url} ({error}).\n" + _missing_message(weights, backbone)
        ) from error
    return path


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)``; unwrap ``state_dict``/``model``, drop ``module.``."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsNotFoundError(f"weights file {path} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise WeightsError(f"could not read weights file {path}: {error}") from error
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _apply(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` (torchvision key layout) into ``model`` through ``model.imagenet_key_map()``."""
    key_map = model.imagenet_key_map()
    own = model.state_dict()
    # Old files (like vgg16_bn-6c64b313.pth) predate BatchNorm's num_batches_tracked: those stay at 0.
    required = [k for k in key_map if not k.endswith("num_batches_tracked")]
    missing = [k for k in required if k not in state]
    if missing:
        raise WeightsError(
            f"{source} lacks {len(missing)} of the {len(required)} backbone keys this model needs "
            f"(torchvision layout), e.g. {missing[:3]}"
        )
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[v].shape)}"
        for k, v in key_map.items()
        if k in state and state[k].shape != own[v].shape
    ]
    if mismatched:
        raise WeightsError(f"{source} does not fit this model: {'; '.join(mismatched[:3])}")
    mapped = {v: state[k] for k, v in key_map.items() if k in state}
    result = model.load_state_dict(mapped, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys


def load_pretrained(model: nn.Module | _HasImagenetKeys, weights: WeightsArg, backbone: str) -> None:
    """Load ImageNet (or local-file) weights into ``model``'s backbone (and fc6/fc7 where it has them)."""
    resolved = resolve_weights(weights, backbone)
    if resolved is None:
        return
    if isinstance(resolved, Path):
        _apply(model, load_state_dict_file(resolved), source=f"weights file {resolved}")
        return
    path = imagenet_checkpoint_path(resolved)
    if not path.is_file():
        raise WeightsNotFoundError(_missing_message(resolved, backbone))
    _apply(model, load_state_dict_file(path), source=f"ImageNet weights file {path}")
