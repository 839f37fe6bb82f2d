"""The networks of Yan et al. (IPMI 2019): registry, builders, output type, ImageNet weights, checkpoint importer.

Names are imported on first use (PEP 562), so ``attnmel.models.registry`` (the torch-free table of model and
backbone names that :mod:`attnmel.config` reads) can be imported without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AttentionBlock": "attention",
    "BACKBONES": "networks",
    "AttnMelCNN": "networks",
    "AttnMelOutput": "networks",
    "VGG16Classifier": "networks",
    "VGG16GAP": "networks",
    "attnmel_cnn": "networks",
    "build_model": "networks",
    "mel_cnn": "networks",
    "vgg16": "networks",
    "vgg16_gap": "networks",
    "ResNetBackbone": "backbones",
    "ResNetFeatures": "backbones",
    "VGGBackbone": "backbones",
    "VGGFeatures": "backbones",
    "BackboneSpec": "registry",
    "FeatureTap": "registry",
    "ModelSpec": "registry",
    "list_backbones": "registry",
    "list_models": "registry",
    "get_backbone": "registry",
    "register_backbone": "registry",
    "register_model": "registry",
    "ReferenceCheckpointError": "reference",
    "load_reference_checkpoint": "reference",
    "read_reference_state_dict": "reference",
    "WeightsError": "weights",
    "WeightsNotFoundError": "weights",
    "fetch_imagenet_weights": "weights",
    "imagenet_checkpoint_path": "weights",
}

__all__ = sorted(_EXPORTS)


_SUBMODULES = ("attention", "backbones", "networks", "reference", "registry", "weights")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
