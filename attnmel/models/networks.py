"""The four networks of Yan et al. (IPMI 2019): AttnMel-CNN, Mel-CNN, VGG-16-GAP and VGG-16.

All four share a VGG-16 backbone (``vgg16_bn`` by default, as in the authors' released checkpoints, or plain
``vgg16``) cut into five conv blocks at its max-pools, so that pool-3 (256 x H/8 x W/8), pool-4
(512 x H/16 x W/16) and pool-5 (512 x H/32 x W/32) are at hand:

- **AttnMel-CNN** (Sec. 2.1, Fig. 1): attention modules (Eq. 1-3, :mod:`attnmel.models.attention`) on pool-3
  and pool-4, both guided by the spatial pool-5 map; the classifier is one linear layer on
  ``cat(GAP(pool-5), attended pool-3, attended pool-4)`` (512 + 256 + 512 features).
- **Mel-CNN**: the same head with plain global average pooling of pool-3 and pool-4 (no attention).
- **VGG-16-GAP**: global average pooling of pool-5 and a linear classifier (the CAM baseline).
- **VGG-16**: torchvision's VGG-16 head (fc6, fc7 with dropout) and a new output layer.

Global average pooling replaces the authors' fixed 7x7 pool, so any input from 32 px up works. Every
``forward`` returns :class:`AttnMelOutput`; every model carries ``.arch`` and ``.arch_kwargs`` so a checkpoint
can rebuild it with ``build_model(model.arch, **model.arch_kwargs)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionBlock, Normalize
from .weights import WeightsArg, load_pretrained

__all__ = [
    "ARCHS",
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

BACKBONES = ("vgg16_bn", "vgg16")
MIN_INPUT_SIZE = 32  # five 2x2 max-pools: pool-5 is 1x1 at 32 px

# VGG-16 ("configuration D"): conv widths of the five blocks, each block followed by a 2x2 max-pool.
_VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class AttnMelOutput(NamedTuple):
    """What every model returns: logits (N, K) and the pool-3 / pool-4 attention maps (None without attention)."""

    logits: torch.Tensor  # (N, num_classes)
    attn3: torch.Tensor | None  # (N, 1, H/8, W/8)
    attn4: torch.Tensor | None  # (N, 1, H/16, W/16)


class VGGFeatures(NamedTuple):
    """The backbone's pooled feature maps."""

    pool3: torch.Tensor  # (N, 256, H/8, W/8)
    pool4: torch.Tensor  # (N, 512, H/16, W/16)
    pool5: torch.Tensor  # (N, 512, H/32, W/32)


class VGGBackbone(nn.Module):
    """VGG-16 convolutional layers as five blocks ``conv_block1..5``, cut at the max-pools.

    Layer indices restart at 0 inside each block and follow torchvision's order (conv, [bn], relu), so the
    block of torchvision's ``features[0:6]`` (vgg16_bn) is ``conv_block1[0:6]``; the max-pools are applied
    functionally in ``forward``. Initialised like torchvision's VGG (Kaiming normal, fan_out, for convs;
    BatchNorm weight 1, bias 0).
    """

    def __init__(self, batch_norm: bool = True) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        # torchvision ``features.<j>`` -> our ``conv_block<k>.<i>``, for every layer holding parameters/buffers.
        self.torchvision_names: dict[str, str] = {}
        in_channels, tv_index = 3, 0
        for k, widths in enumerate(_VGG16_BLOCKS, start=1):
            layers: list[nn.Module] = []
            for width in widths:
                self.torchvision_names[f"features.{tv_index}"] = f"conv_block{k}.{len(layers)}"
                layers.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=1))
                tv_index += 1
                if batch_norm:
                    self.torchvision_names[f"features.{tv_index}"] = f"conv_block{k}.{len(layers)}"
                    layers.append(nn.BatchNorm2d(width))
                    tv_index += 1
                layers.append(nn.ReLU(inplace=True))
                tv_index += 1
                in_channels = width
            self.add_module(f"conv_block{k}", nn.Sequential(*layers))
            tv_index += 1  # torchvision's MaxPool2d, applied in forward()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> VGGFeatures:
        x = F.max_pool2d(self.conv_block1(x), 2, 2)  # (N, 64, H/2, W/2)
        x = F.max_pool2d(self.conv_block2(x), 2, 2)  # (N, 128, H/4, W/4)
        pool3 = F.max_pool2d(self.conv_block3(x), 2, 2)  # (N, 256, H/8, W/8)
        pool4 = F.max_pool2d(self.conv_block4(pool3), 2, 2)  # (N, 512, H/16, W/16)
        pool5 = F.max_pool2d(self.conv_block5(pool4), 2, 2)  # (N, 512, H/32, W/32)
        return VGGFeatures(pool3, pool4, pool5)

    def imagenet_key_map(self, prefix: str = "") -> dict[str, str]:
        """torchvision VGG state-dict key -> this module's key (with ``prefix`` prepended)."""
        mapping = {}
        for tv_name, name in self.torchvision_names.items():
            for key in self.get_submodule(name).state_dict():
                mapping[f"{tv_name}.{key}"] = f"{prefix}{name}.{key}"
        return mapping


def _check_input(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an image batch of shape (N, 3, H, W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < MIN_INPUT_SIZE:
        raise ValueError(
            f"input {tuple(x.shape[-2:])} is too small: VGG-16 halves it five times, so H and W must be "
            f">= {MIN_INPUT_SIZE} px"
        )


def _check_common(backbone: str, num_classes: int) -> None:
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")


def _init_linear(layer: nn.Linear) -> None:
    """N(0, 0.01) weights and zero bias: the authors' classifier init and torchvision's VGG dense init."""
    nn.init.normal_(layer.weight, 0.0, 0.01)
    nn.init.zeros_(layer.bias)


class AttnMelCNN(nn.Module):
    """AttnMel-CNN (Yan et al., IPMI 2019, Fig. 1); with ``attention=False`` it is the Mel-CNN baseline.

    Args:
        backbone: ``"vgg16_bn"`` or ``"vgg16"``.
        num_classes: outputs of the classifier.
        attention: attention modules on pool-3 and pool-4 (AttnMel-CNN) or plain average pooling (Mel-CNN).
        normalize: attention normalisation, ``"sigmoid"`` (Eq. 2) or ``"softmax"``; attention only.
    """

    def __init__(
        self,
        backbone: str = "vgg16_bn",
        num_classes: int = 2,
        attention: bool = True,
        normalize: Normalize = "sigmoid",
    ) -> None:
        super().__init__()
        _check_common(backbone, num_classes)
        self.arch = "attnmel_cnn" if attention else "mel_cnn"
        self.arch_kwargs: dict[str, Any] = {"backbone": backbone, "num_classes": num_classes}
        if attention:
            self.arch_kwargs["normalize"] = normalize
        self.attention = attention
        self.features = VGGBackbone(batch_norm=backbone == "vgg16_bn")
        if attention:
            self.attn3 = AttentionBlock(256, 512, 256, normalize=normalize)  # pool-3, guided by pool-5
            self.attn4 = AttentionBlock(512, 512, 256, normalize=normalize)  # pool-4, guided by pool-5
        self.classifier = nn.Linear(512 + 256 + 512, num_classes)
        _init_linear(self.classifier)

    def forward(self, x: torch.Tensor) -> AttnMelOutput:
        _check_input(x)
        pool3, pool4, pool5 = self.features(x)
        g = F.adaptive_avg_pool2d(pool5, 1).flatten(1)  # (N, 512): global vector
        if self.attention:
            g3, attn3 = self.attn3(pool3, pool5)  # (N, 256), (N, 1, H/8, W/8)
            g4, attn4 = self.attn4(pool4, pool5)  # (N, 512), (N, 1, H/16, W/16)
        else:
            g3 = F.adaptive_avg_pool2d(pool3, 1).flatten(1)  # (N, 256)
            g4 = F.adaptive_avg_pool2d(pool4, 1).flatten(1)  # (N, 512)
            attn3 = attn4 = None
        logits = self.classifier(torch.cat((g, g3, g4), dim=1))  # (N, num_classes)
        return AttnMelOutput(logits, attn3, attn4)

    def imagenet_key_map(self) -> dict[str, str]:
        """torchvision key -> our key for the layers that take ImageNet weights (the backbone)."""
        return self.features.imagenet_key_map(prefix="features.")


class VGG16GAP(nn.Module):
    """VGG-16-GAP: global average pooling of pool-5 and a linear classifier (the CAM baseline of Table 3).

    ``features_map(x)`` gives the pool-5 map and ``classifier`` the linear layer, which is all
    :func:`attnmel.saliency.class_activation_map` needs.
    """

    def __init__(self, backbone: str = "vgg16_bn", num_classes: int = 2) -> None:
        super().__init__()
        _check_common(backbone, num_classes)
        self.arch = "vgg16_gap"
        self.arch_kwargs: dict[str, Any] = {"backbone": backbone, "num_classes": num_classes}
        self.features = VGGBackbone(batch_norm=backbone == "vgg16_bn")
        self.classifier = nn.Linear(512, num_classes)
        _init_linear(self.classifier)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        """The pool-5 feature map (N, 512, H/32, W/32)."""
        _check_input(x)
        return self.features(x).pool5

    def forward(self, x: torch.Tensor) -> AttnMelOutput:
        pooled = F.adaptive_avg_pool2d(self.features_map(x), 1).flatten(1)  # (N, 512)
        return AttnMelOutput(self.classifier(pooled), None, None)

    def imagenet_key_map(self) -> dict[str, str]:
        return self.features.imagenet_key_map(prefix="features.")


class VGG16Classifier(nn.Module):
    """VGG-16 with its dense layers (fc6, fc7 with ReLU and dropout) and a new output layer.

    Pool-5 is brought to 7x7 by adaptive average pooling, as in torchvision, so inputs other than 224 px work.
    The layer indices inside ``classifier`` are torchvision's (0 = fc6, 3 = fc7, 6 = output).
    """

    def __init__(self, backbone: str = "vgg16_bn", num_classes: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        _check_common(backbone, num_classes)
        self.arch = "vgg16"
        self.arch_kwargs: dict[str, Any] = {"backbone": backbone, "num_classes": num_classes}
        self.features = VGGBackbone(batch_norm=backbone == "vgg16_bn")
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),  # fc6
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
        _check_input(x)
        pooled = self.avgpool(self.features(x).pool5).flatten(1)  # (N, 25088)
        return AttnMelOutput(self.classifier(pooled), None, None)

    def imagenet_key_map(self) -> dict[str, str]:
        """Backbone plus fc6 and fc7; the output layer is always new."""
        mapping = self.features.imagenet_key_map(prefix="features.")
        for index in (0, 3):
            for key in ("weight", "bias"):
                mapping[f"classifier.{index}.{key}"] = f"classifier.{index}.{key}"
        return mapping


def _attnmel(**kwargs: Any) -> AttnMelCNN:
    return AttnMelCNN(attention=True, **kwargs)


def _melcnn(**kwargs: Any) -> AttnMelCNN:
    return AttnMelCNN(attention=False, **kwargs)


ARCHS: dict[str, Callable[..., nn.Module]] = {
    "attnmel_cnn": _attnmel,
    "mel_cnn": _melcnn,
    "vgg16_gap": VGG16GAP,
    "vgg16": VGG16Classifier,
}


def _build(arch: str, weights: WeightsArg, **arch_kwargs: Any) -> nn.Module:
    """Construct ``arch`` and load ImageNet (or local-file) weights into its backbone."""
    model = ARCHS[arch](**arch_kwargs)
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
        backbone: ``"vgg16_bn"`` (default, as the released checkpoints) or ``"vgg16"``.
        weights: None (random init), ``"IMAGENET1K_V1"`` / ``"DEFAULT"`` or a torchvision weights enum (ImageNet
            backbone from the torch hub cache), or the path of a torchvision-layout VGG state-dict file.
        num_classes: classifier outputs.
        normalize: attention normalisation, ``"sigmoid"`` (Eq. 2) or ``"softmax"``.
    """
    return _build("attnmel_cnn", weights, backbone=backbone, num_classes=num_classes, normalize=normalize)


def mel_cnn(*, backbone: str = "vgg16_bn", weights: WeightsArg = None, num_classes: int = 2) -> AttnMelCNN:
    """Mel-CNN, the no-attention baseline of Yan et al. (IPMI 2019): plain average pooling of pool-3/4/5.

    Args: as :func:`attnmel_cnn`, without ``normalize``.
    """
    return _build("mel_cnn", weights, backbone=backbone, num_classes=num_classes)


def vgg16_gap(*, backbone: str = "vgg16_bn", weights: WeightsArg = None, num_classes: int = 2) -> VGG16GAP:
    """VGG-16-GAP, the CAM baseline of Yan et al. (IPMI 2019): average pooling of pool-5, one linear layer.

    Args: as :func:`attnmel_cnn`, without ``normalize``.
    """
    return _build("vgg16_gap", weights, backbone=backbone, num_classes=num_classes)


def vgg16(*, backbone: str = "vgg16_bn", weights: WeightsArg = None, num_classes: int = 2) -> VGG16Classifier:
    """VGG-16 with dense layers, the baseline of Yan et al. (IPMI 2019); ImageNet weights fill fc6 and fc7 too.

    Args: as :func:`attnmel_cnn`, without ``normalize``.
    """
    return _build("vgg16", weights, backbone=backbone, num_classes=num_classes)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "attnmel_cnn": attnmel_cnn,
    "mel_cnn": mel_cnn,
    "vgg16_gap": vgg16_gap,
    "vgg16": vgg16,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by builder name (``model.arch``) with the builder's keyword arguments."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(_BUILDERS)}") from None
    return builder(**kwargs)
