"""The four networks of Yan et al. (IPMI 2019): AttnMel-CNN, Mel-CNN, VGG-16-GAP and VGG-16.

Every network sits on a backbone of :mod:`attnmel.models.registry` and reads its channels and tap names from
the backbone's contract: two *local* taps (VGG: pool-3 256 x H/8, pool-4 512 x H/16) and one *global* tap (VGG:
pool-5 512 x H/32). With ``backbone="resnet50"`` they are layer2 (512), layer3 (1024) and layer4 (2048).

- **AttnMel-CNN** (Sec. 2.1, Fig. 1): attention modules (Eq. 1-3, :mod:`attnmel.models.attention`) on the
  two local taps, both guided by the spatial global map; the classifier is one linear layer on
  ``cat(GAP(global), attended local 1, attended local 2)`` (VGG: 512 + 256 + 512 features).
- **Mel-CNN**: the same head with plain global average pooling of the local taps (no attention).
- **VGG-16-GAP**: global average pooling of the global tap and a linear classifier (the CAM baseline); the
  name is the paper's, the head works on any backbone.
- **VGG-16**: torchvision's VGG-16 head (fc6, fc7 with dropout) and a new output layer; VGG backbones only.

Global average pooling replaces the authors' fixed 7x7 pool, so any input from 32 px up works. Every
``forward`` returns :class:`AttnMelOutput` (``attn3``/``attn4`` are the maps of the first/second local tap);
every model carries ``.arch``, ``.arch_kwargs`` (so a checkpoint can rebuild it with
``build_model(model.arch, **model.arch_kwargs)``) and ``.saliency_maps`` (its intrinsic maps, key -> label).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import registry
from .attention import AttentionBlock, Normalize
from .backbones import VGGBackbone, VGGFeatures
from .registry import BackboneSpec
from .weights import WeightsArg, load_pretrained

__all__ = [
    "BACKBONES",
    "AttnMelOutput",
    "VGGFeatures",
    "VGGBackbone",
    "AttnMelCNN",
    "VGG16GAP",
    "VGG16Classifier",
    "attnmel_cnn",
    "mel_cnn",
    "vgg16_gap",
    "vgg16",
    "build_model",
]

BACKBONES = registry.list_backbones()
MIN_INPUT_SIZE = 32  # five 2x2 reductions: the global tap is 1x1 at 32 px


class AttnMelOutput(NamedTuple):
    """What every model returns: logits (N, K) and the two local-tap attention maps (None without attention)."""

    logits: torch.Tensor  # (N, num_classes)
    attn3: torch.Tensor | None  # (N, 1, H/8, W/8): first local tap (VGG pool-3, ResNet layer2)
    attn4: torch.Tensor | None  # (N, 1, H/16, W/16): second local tap (VGG pool-4, ResNet layer3)


def _check_input(x: torch.Tensor, spec: BackboneSpec) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an image batch of shape (N, 3, H, W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < spec.min_input:
        raise ValueError(
            f"input {tuple(x.shape[-2:])} is too small: {spec.name} reduces it {spec.global_tap.reduction}x, "
            f"so H and W must be >= {spec.min_input} px"
        )


def _check_common(arch: str, backbone: str, num_classes: int) -> BackboneSpec:
    spec = registry.check_backbone(arch, backbone)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return spec


def _init_linear(layer: nn.Linear) -> None:
    """N(0, 0.01) weights and zero bias: the authors' classifier init and torchvision's VGG dense init."""
    nn.init.normal_(layer.weight, 0.0, 0.01)
    nn.init.zeros_(layer.bias)


class _Network(nn.Module):
    """What every network shares: the backbone from the registry, ``.arch``/``.arch_kwargs``, saliency maps."""

    def __init__(self, arch: str, backbone: str, num_classes: int) -> None:
        super().__init__()
        self.spec = _check_common(arch, backbone, num_classes)
        self.arch = arch
        self.arch_kwargs: dict[str, Any] = {"backbone": backbone, "num_classes": num_classes}
        self.features = registry.create_backbone(backbone)

    @property
    def saliency_maps(self) -> dict[str, str]:
        """This model's intrinsic saliency maps, key -> display label (declared in the registry)."""
        return registry.saliency_maps(self.arch, self.spec.name)

    def taps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(local 1, local 2, global) feature maps of the backbone for input ``x``."""
        _check_input(x, self.spec)
        found = self.features(x)
        return tuple(getattr(found, tap.name) for tap in self.spec.taps)  # type: ignore[return-value]

    def imagenet_key_map(self) -> dict[str, str]:
        """torchvision key -> our key for the layers that take ImageNet weights (the backbone)."""
        return self.features.imagenet_key_map(prefix="features.")


class AttnMelCNN(_Network):
    """AttnMel-CNN (Yan et al., IPMI 2019, Fig. 1); with ``attention=False`` it is the Mel-CNN baseline.

    Args:
        backbone: a registered backbone (``"vgg16_bn"``, ``"vgg16"``, ``"resnet50"``).
        num_classes: outputs of the classifier.
        attention: attention modules on the local taps (AttnMel-CNN) or plain average pooling (Mel-CNN).
        normalize: attention normalisation, ``"sigmoid"`` (Eq. 2) or ``"softmax"``; attention only.
    """

    def __init__(
        self,
        backbone: str = "vgg16_bn",
        num_classes: int = 2,
        attention: bool = True,
        normalize: Normalize = "sigmoid",
    ) -> None:
        super().__init__("attnmel_cnn" if attention else "mel_cnn", backbone, num_classes)
        if attention:
            self.arch_kwargs["normalize"] = normalize
        self.attention = attention
        (l3, l4), g = self.spec.local, self.spec.global_tap
        if attention:
            self.attn3 = AttentionBlock(l3.channels, g.channels, 256, normalize=normalize)  # guided by global
            self.attn4 = AttentionBlock(l4.channels, g.channels, 256, normalize=normalize)
        self.classifier = nn.Linear(g.channels + l3.channels + l4.channels, num_classes)
        _init_linear(self.classifier)

    def forward(self, x: torch.Tensor) -> AttnMelOutput:
        f3, f4, f5 = self.taps(
            x
        )  # VGG: pool3 (N, 256, H/8, W/8), pool4 (N, 512, H/16, ..), pool5 (N, 512, H/32, ..)
        g = F.adaptive_avg_pool2d(f5, 1).flatten(1)  # (N, C_g): global vector
        if self.attention:
            g3, attn3 = self.attn3(f3, f5)  # (N, C_3), (N, 1, H/8, W/8)
            g4, attn4 = self.attn4(f4, f5)  # (N, C_4), (N, 1, H/16, W/16)
        else:
            g3 = F.adaptive_avg_pool2d(f3, 1).flatten(1)  # (N, C_3)
            g4 = F.adaptive_avg_pool2d(f4, 1).flatten(1)  # (N, C_4)
            attn3 = attn4 = None
        logits = self.classifier(torch.cat((g, g3, g4), dim=1))  # (N, num_classes)
        return AttnMelOutput(logits, attn3, attn4)


class VGG16GAP(_Network):
    """VGG-16-GAP: global average pooling of the global tap and a linear classifier (the CAM baseline).

    ``features_map(x)`` gives the global map and ``classifier`` the linear layer, which is all
    :func:`attnmel.saliency.class_activation_map` needs.
    """

    def __init__(self, backbone: str = "vgg16_bn", num_classes: int = 2) -> None:
        super().__init__("vgg16_gap", backbone, num_classes)
        self.classifier = nn.Linear(self.spec.global_tap.channels, num_classes)
        _init_linear(self.classifier)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        """The global feature map (N, C_g, H/32, W/32): VGG pool-5, ResNet layer4."""
        return self.taps(x)[2]

    def forward(self, x: torch.Tensor) -> AttnMelOutput:
        pooled = F.adaptive_avg_pool2d(self.features_map(x), 1).flatten(1)  # (N, C_g)
        return AttnMelOutput(self.classifier(pooled), None, None)


class VGG16Classifier(_Network):
    """VGG-16 with its dense layers (fc6, fc7 with ReLU and dropout) and a new output layer.

    Pool-5 is brought to 7x7 by adaptive average pooling, as in torchvision, so inputs other than 224 px work.
    The layer indices inside ``classifier`` are torchvision's (0 = fc6, 3 = fc7, 6 = output). fc6 is
    VGG's own layer, so only VGG backbones are accepted.
    """

    def __init__(self, backbone: str = "vgg16_bn", num_classes: int = 2, dropout: float = 0.5) -> None:
        super().__init__("vgg16", backbone, num_classes)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(self.spec.global_tap.channels * 7 * 7, 4096),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),  # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),  # new output layer
        )
        for layer in self.classifier:
            if isinstance(layer, nn.Linear):
                _init_linear(layer)

    def forward(self, x: torch.Tensor) -> AttnMelOutput:
        pooled = self.avgpool(self.taps(x)[2]).flatten(1)  # (N, 25088)
        return AttnMelOutput(self.classifier(pooled), None, None)

    def imagenet_key_map(self) -> dict[str, str]:
        """Backbone plus fc6 and fc7; the output layer is always new."""
        mapping = super().imagenet_key_map()
        for index in (0, 3):
            for key in ("weight", "bias"):
                mapping[f"classifier.{index}.{key}"] = f"classifier.{index}.{key}"
        return mapping


def _build(factory: Callable[..., nn.Module], weights: WeightsArg, **arch_kwargs: Any) -> nn.Module:
    """Construct a network and load ImageNet (or local-file) weights into its backbone."""
    model = factory(**arch_kwargs)
    if weights is not None:
        load_pretrained(model, weights, backbone=arch_kwargs["backbone"])
    return model


def attnmel_cnn(
    *,
    backbone: str = "vgg16_bn",
    weights: WeightsArg = None,
    num_classes: int = 2,
    normalize: Normalize = "sigmoid",
) -> AttnMelCNN:
    """AttnMel-CNN from "Melanoma Recognition via Visual Attention" (Yan et al., IPMI 2019).

    Args:
        backbone: ``"vgg16_bn"`` (default, as the released checkpoints), ``"vgg16"`` or ``"resnet50"``
            (any name of :func:`~attnmel.models.registry.list_backbones`).
        weights: None (random init), ``"IMAGENET1K_V1"`` / ``"DEFAULT"`` or a torchvision weights enum of the
            backbone (ImageNet backbone from the torch hub cache), or the path of a torchvision-layout state dict.
        num_classes: classifier outputs.
        normalize: attention normalisation, ``"sigmoid"`` (Eq. 2) or ``"softmax"``.
    """
    return _build(AttnMelCNN, weights, backbone=backbone, num_classes=num_classes, normalize=normalize)


def mel_cnn(*, backbone: str = "vgg16_bn", weights: WeightsArg = None, num_classes: int = 2) -> AttnMelCNN:
    """Mel-CNN, the no-attention baseline of Yan et al. (IPMI 2019): plain average pooling of the three taps.

    Args: as :func:`attnmel_cnn`, without ``normalize``.
    """
    return _build(AttnMelCNN, weights, backbone=backbone, num_classes=num_classes, attention=False)


def vgg16_gap(*, backbone: str = "vgg16_bn", weights: WeightsArg = None, num_classes: int = 2) -> VGG16GAP:
    """VGG-16-GAP, the CAM baseline of Yan et al. (IPMI 2019): average pooling of the global tap, one linear.

    Args: as :func:`attnmel_cnn`, without ``normalize``.
    """
    return _build(VGG16GAP, weights, backbone=backbone, num_classes=num_classes)


def vgg16(*, backbone: str = "vgg16_bn", weights: WeightsArg = None, num_classes: int = 2) -> VGG16Classifier:
    """VGG-16 with dense layers, the baseline of Yan et al. (IPMI 2019); ImageNet weights fill fc6 and fc7 too.

    Args: as :func:`attnmel_cnn`, without ``normalize``; ``backbone`` is ``"vgg16_bn"`` or ``"vgg16"`` only.
    """
    return _build(VGG16Classifier, weights, backbone=backbone, num_classes=num_classes)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name (``model.arch``) with the builder's keyword arguments."""
    return registry.build_model(name, **kwargs)
