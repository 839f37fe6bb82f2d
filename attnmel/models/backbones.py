"""Backbone modules that honour the contract of :mod:`attnmel.models.registry`.

A backbone's ``forward(x)`` returns a NamedTuple with one field per declared tap (local taps, then the global
one); ``imagenet_key_map(prefix)`` maps torchvision's state-dict keys to its own, so ImageNet weights load
through :mod:`attnmel.models.weights`; ``feature_info`` is its :class:`~attnmel.models.registry.BackboneSpec`.

- **VGG-16 (BN)**: five conv blocks ``conv_block1..5`` cut at the max-pools (the authors' layout, so their
  checkpoints load 1:1); taps pool-3, pool-4, pool-5.
- **ResNet-50**: torchvision's ``resnet50`` stem and ``layer1..4`` under their torchvision names (no avgpool,
  no fc); taps layer2 (H/8), layer3 (H/16), layer4 (H/32).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .registry import BackboneSpec

__all__ = [
    "VGGFeatures",
    "VGGBackbone",
    "ResNetFeatures",
    "ResNetBackbone",
    "vgg_backbone",
    "resnet_backbone",
]

# VGG-16 ("configuration D"): conv widths of the five blocks, each block followed by a 2x2 max-pool.
_VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGGFeatures(NamedTuple):
    """The VGG backbone's pooled feature maps."""

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


class ResNetFeatures(NamedTuple):
    """The ResNet backbone's stage outputs (channels for ResNet-50)."""

    layer2: torch.Tensor  # (N, 512, H/8, W/8)
    layer3: torch.Tensor  # (N, 1024, H/16, W/16)
    layer4: torch.Tensor  # (N, 2048, H/32, W/32)


class ResNetBackbone(nn.Module):
    """torchvision's ResNet-50 stem and four stages under torchvision's names, without avgpool and fc.

    Keeping the names (``conv1``, ``bn1``, ``layer1.0.conv1`` ...) makes the ImageNet key map the identity;
    initialisation is torchvision's (Kaiming normal, fan_out, for convs; BatchNorm weight 1, bias 0).
    """

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        tv = resnet50(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(tv, name))

    def forward(self, x: torch.Tensor) -> ResNetFeatures:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4)
        layer2 = self.layer2(self.layer1(x))  # (N, 512, H/8, W/8)
        layer3 = self.layer3(layer2)  # (N, 1024, H/16, W/16)
        layer4 = self.layer4(layer3)  # (N, 2048, H/32, W/32)
        return ResNetFeatures(layer2, layer3, layer4)

    def imagenet_key_map(self, prefix: str = "") -> dict[str, str]:
        """torchvision ResNet state-dict key -> this module's key: the same name, ``prefix`` prepended."""
        return {key: f"{prefix}{key}" for key in self.state_dict()}


def vgg_backbone(spec: BackboneSpec) -> VGGBackbone:
    """The VGG-16 backbone of a registry spec (``vgg16_bn``: with BatchNorm, ``vgg16``: without)."""
    return VGGBackbone(batch_norm=spec.name == "vgg16_bn")


def resnet_backbone(spec: BackboneSpec) -> ResNetBackbone:
    """The ResNet-50 backbone of a registry spec."""
    if spec.name != "resnet50":
        raise ValueError(f"resnet_backbone builds 'resnet50' only, got {spec.name!r}")
    return ResNetBackbone()
