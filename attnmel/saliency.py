"""Saliency maps at the input resolution: upsampled attention maps and class activation maps (CAM).

Table 3 of Yan et al. (IPMI 2019) compares attention maps (Eq. 2) with the CAM (Zhou et al., CVPR 2016) of
VGG-16-GAP. We use one protocol for both (REFERENCE_NOTES): upsample the map bilinearly
(``align_corners=False``) to the input size, min-max normalise per image, then binarise at 0.5. The released
code thresholded CAM on its 7x7 grid before upsampling; we do not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .models.networks import VGG16GAP

__all__ = ["upsample_map", "minmax_normalise", "binarise", "class_activation_map"]


def _check_map(saliency: torch.Tensor) -> None:
    if saliency.ndim != 4 or saliency.shape[1] != 1:
        raise ValueError(f"expected a map of shape (N, 1, h, w), got {tuple(saliency.shape)}")


def upsample_map(saliency: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) upsampling of (N, 1, h, w) maps to (N, 1, H, W)."""
    _check_map(saliency)
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(saliency, size=size, mode="bilinear", align_corners=False)  # (N, 1, H, W)


def minmax_normalise(saliency: torch.Tensor) -> torch.Tensor:
    """Rescale each map of (N, 1, h, w) to [0, 1]; a constant map becomes all zeros."""
    _check_map(saliency)
    flat = saliency.flatten(1)  # (N, h*w)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)
    return scaled.view_as(saliency)


def binarise(saliency: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Boolean map ``saliency >= threshold`` (applied after :func:`minmax_normalise` in the Table 3 protocol)."""
    _check_map(saliency)
    return saliency >= threshold


def class_activation_map(
    model: VGG16GAP,
    x: torch.Tensor,
    class_index: int = 1,
    upsample: bool = False,
) -> torch.Tensor:
    """CAM of VGG-16-GAP: the class's row of classifier weights times the pool-5 features.

    Args:
        model: a :class:`~attnmel.models.VGG16GAP` (anything with ``features_map`` and a linear ``classifier``).
        x: (N, 3, H, W) input batch.
        class_index: the class to explain (1 = melanoma).
        upsample: bring the map to the input size (bilinear, align_corners=False).

    Returns (N, 1, H/32, W/32), or (N, 1, H, W) with ``upsample``. Not normalised; gradients flow.
    """
    num_classes = model.classifier.out_features
    if not 0 <= class_index < num_classes:
        raise ValueError(f"class_index must be in [0, {num_classes}), got {class_index}")
    features = model.features_map(x)  # (N, 512, h, w)
    weights = model.classifier.weight[class_index]  # (512,)
    cam = torch.einsum("nchw,c->nhw", features, weights)[:, None]  # (N, 1, h, w)
    return upsample_map(cam, tuple(x.shape[-2:])) if upsample else cam
