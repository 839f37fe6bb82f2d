"""The networks of Yan et al. (IPMI 2019): builders, output type, ImageNet weights and the checkpoint importer."""

from .attention import AttentionBlock
from .networks import (
    ARCHS,
    BACKBONES,
    VGG16GAP,
    AttnMelCNN,
    AttnMelOutput,
    VGG16Classifier,
    VGGBackbone,
    VGGFeatures,
    attnmel_cnn,
    build_model,
    mel_cnn,
    vgg16,
    vgg16_gap,
)
from .reference import ReferenceCheckpointError, load_reference_checkpoint, read_reference_state_dict
from .weights import WeightsError, WeightsNotFoundError, fetch_imagenet_weights, imagenet_checkpoint_path

__all__ = [
    "ARCHS",
    "BACKBONES",
    "AttentionBlock",
    "AttnMelCNN",
    "AttnMelOutput",
    "ReferenceCheckpointError",
    "VGG16Classifier",
    "VGG16GAP",
    "VGGBackbone",
    "VGGFeatures",
    "WeightsError",
    "WeightsNotFoundError",
    "attnmel_cnn",
    "build_model",
    "fetch_imagenet_weights",
    "imagenet_checkpoint_path",
    "load_reference_checkpoint",
    "mel_cnn",
    "read_reference_state_dict",
    "vgg16",
    "vgg16_gap",
]
