"""The model and backbone registry: one table of names, feature taps, weights and saliency maps.

In the spirit of torchvision's ``get_model``/``list_models`` and timm's ``register_model``/``features_only``
contract. This module imports no torch, so :mod:`attnmel.config` (read by the CLI at startup) takes its name
tables from here; builders and backbone modules are named by ``"module:attribute"`` strings and imported on
first use.

The backbone contract (:class:`BackboneSpec`): a backbone module returns a NamedTuple with one field per
declared tap; two *local* taps are what the attention blocks look at (VGG: pool-3 256 ch, pool-4 512 ch;
ResNet-50: layer2 512 ch, layer3 1024 ch) and one *global* tap guides them and feeds GAP/CAM heads (VGG:
pool-5 512 ch; ResNet-50: layer4 2048 ch). The networks read channels and tap names from here, never hard-code
them. Saliency map keys are tap names (``"pool3"``, ``"layer2"``...), plus ``"cam"`` and ``"gradcam"``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FeatureTap",
    "BackboneSpec",
    "ModelSpec",
    "register_backbone",
    "register_model",
    "list_backbones",
    "list_models",
    "get_backbone",
    "get_model",
    "check_backbone",
    "create_backbone",
    "weights_enum",
    "build_model",
    "saliency_maps",
    "attention_keys",
    "GRADCAM",
    "CAM",
]

CAM = "cam"  # map key of the class activation map (GAP + linear models)
GRADCAM = "gradcam"  # map key of Grad-CAM at the global tap (any model, post hoc)
SALIENCY_KINDS = ("attention", "cam")


@dataclass(frozen=True)
class FeatureTap:
    """One feature map a backbone exposes: its field name, channels, stride to the input and display label."""

    name: str  # NamedTuple field of the backbone output and saliency map key, e.g. "pool3"
    channels: int  # e.g. 256
    reduction: int  # input side / map side, e.g. 8
    label: str  # for figures, e.g. "pool-3"


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone's contract: its taps, how to build it and which torchvision weights enum initialises it."""

    name: str
    local: tuple[FeatureTap, FeatureTap]  # the maps the two attention blocks look at, shallow first
    global_tap: FeatureTap  # the map that guides attention and feeds the GAP / CAM heads
    module: str  # "module:factory" returning the nn.Module (factory(spec) -> module)
    weights: str  # "module:WeightsEnum" of torchvision's ImageNet weights for this backbone
    min_input: int = 32  # smallest H and W the backbone accepts (the global tap is then 1x1)
    summary: str = ""

    @property
    def taps(self) -> tuple[FeatureTap, ...]:
        return (*self.local, self.global_tap)


@dataclass(frozen=True)
class ModelSpec:
    """A model: its builder, the backbones it accepts (None: every one) and the saliency maps it has."""

    name: str
    builder: str  # "module:function" of the keyword-only builder
    maps: tuple[str, ...] = ()  # kinds of intrinsic maps: "attention" (one per local tap) and/or "cam"
    backbones: tuple[str, ...] | None = None
    summary: str = ""


_BACKBONES: dict[str, BackboneSpec] = {}
_MODELS: dict[str, ModelSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the registry (a name may be registered once)."""
    if spec.name in _BACKBONES:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    if len(spec.local) != 2:
        raise ValueError(f"backbone {spec.name!r} must declare 2 local taps, got {len(spec.local)}")
    _BACKBONES[spec.name] = spec
    return spec


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (a name may be registered once)."""
    if spec.name in _MODELS:
        raise ValueError(f"model {spec.name!r} is already registered")
    unknown = [k for k in spec.maps if k not in SALIENCY_KINDS]
    if unknown:
        raise ValueError(f"model {spec.name!r}: saliency kinds must be in {SALIENCY_KINDS}, got {unknown}")
    _MODELS[spec.name] = spec
    return spec


def list_backbones() -> tuple[str, ...]:
    """Registered backbone names, in registration order (the default first)."""
    return tuple(_BACKBONES)


def list_models() -> tuple[str, ...]:
    """Registered model names, in registration order."""
    return tuple(_MODELS)


def get_backbone(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of ``name``; ValueError naming the allowed ones otherwise."""
    try:
        return _BACKBONES[name]
    except (KeyError, TypeError):
        raise ValueError(f"backbone must be one of {list_backbones()}, got {name!r}") from None


def get_model(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; ValueError naming the allowed ones otherwise."""
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}") from None


def check_backbone(model: str, backbone: str) -> BackboneSpec:
    """The spec of ``backbone`` if ``model`` accepts it; a one-line ValueError otherwise."""
    spec = get_backbone(backbone)
    allowed = get_model(model).backbones
    if allowed is not None and backbone not in allowed:
        raise ValueError(f"model {model!r} does not take backbone {backbone!r}; it takes {allowed}")
    return spec


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def create_backbone(name: str) -> Any:
    """A freshly initialised backbone module (``nn.Module``) with ``.feature_info`` set to its spec."""
    spec = get_backbone(name)
    module = _resolve(spec.module)(spec)
    module.feature_info = spec
    return module


def weights_enum(name: str) -> Any:
    """torchvision's weights enum class of backbone ``name`` (e.g. ``VGG16_BN_Weights``)."""
    return _resolve(get_backbone(name).weights)


def build_model(name: str, **kwargs: Any) -> Any:
    """Build a registered model by name (``model.arch``) with its builder's keyword arguments."""
    spec = get_model(name)
    if "backbone" in kwargs:
        check_backbone(name, kwargs["backbone"])
    return _resolve(spec.builder)(**kwargs)


def saliency_maps(model: str, backbone: str) -> dict[str, str]:
    """The intrinsic maps of ``model`` on ``backbone``: key -> display label, e.g. ``{"pool3": "pool-3 attention"}``.

    Attention maps are keyed by their local tap (in the order of ``AttnMelOutput.attn3``, ``attn4``); CAM by
    ``"cam"``. Grad-CAM (``"gradcam"``) is available for every model and is not listed here.
    """
    spec, bb = get_model(model), get_backbone(backbone)
    maps: dict[str, str] = {}
    if "attention" in spec.maps:
        maps.update({tap.name: f"{tap.label} attention" for tap in bb.local})
    if "cam" in spec.maps:
        maps[CAM] = "CAM"
    return maps


def attention_keys(model: str, backbone: str) -> tuple[str, ...]:
    """Keys of the attention maps of ``model`` on ``backbone``, shallow first (empty without attention)."""
    return tuple(t.name for t in get_backbone(backbone).local) if "attention" in get_model(model).maps else ()


# ------------------------------------------------------------------------------------------------ the entries
# Adding a backbone: a factory in backbones.py (module with the declared taps + imagenet_key_map) and one
# register_backbone entry. Adding a model: a builder (networks.py) and one register_model entry.

_VGG_TAPS = (
    (FeatureTap("pool3", 256, 8, "pool-3"), FeatureTap("pool4", 512, 16, "pool-4")),
    FeatureTap("pool5", 512, 32, "pool-5"),
)
register_backbone(
    BackboneSpec(
        "vgg16_bn",
        *_VGG_TAPS,
        module="attnmel.models.backbones:vgg_backbone",
        weights="torchvision.models:VGG16_BN_Weights",
        summary="VGG-16 with BatchNorm (the authors' backbone), cut at its max-pools",
    )
)
register_backbone(
    BackboneSpec(
        "vgg16",
        *_VGG_TAPS,
        module="attnmel.models.backbones:vgg_backbone",
        weights="torchvision.models:VGG16_Weights",
        summary="plain VGG-16, cut at its max-pools",
    )
)
register_backbone(
    BackboneSpec(
        "resnet50",
        (FeatureTap("layer2", 512, 8, "layer2"), FeatureTap("layer3", 1024, 16, "layer3")),
        FeatureTap("layer4", 2048, 32, "layer4"),
        module="attnmel.models.backbones:resnet_backbone",
        weights="torchvision.models:ResNet50_Weights",
        summary="torchvision ResNet-50 without its pooling and fc layer",
    )
)

register_model(
    ModelSpec(
        "attnmel_cnn",
        "attnmel.models.networks:attnmel_cnn",
        maps=("attention",),
        summary="AttnMel-CNN: attention on the two local taps, guided by the global tap",
    )
)
register_model(
    ModelSpec(
        "mel_cnn",
        "attnmel.models.networks:mel_cnn",
        summary="Mel-CNN: the AttnMel-CNN head with plain average pooling (no attention)",
    )
)
register_model(
    ModelSpec(
        "vgg16_gap",
        "attnmel.models.networks:vgg16_gap",
        maps=("cam",),
        summary="GAP of the global tap + one linear layer (the CAM baseline; the name is the paper's)",
    )
)
register_model(
    ModelSpec(
        "vgg16",
        "attnmel.models.networks:vgg16",
        backbones=("vgg16_bn", "vgg16"),
        summary="VGG-16 with its dense fc6/fc7 layers (VGG backbones only: the dense layers are VGG's)",
    )
)
