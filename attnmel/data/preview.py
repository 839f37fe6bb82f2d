"""Display copies of samples: the preprocessed image and masks as uint8/bool arrays, and training views.

They go through the very transforms the trainer uses (:mod:`attnmel.data.transforms`), minus the float
conversion and normalisation, so what the book shows is what the network sees.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

from .dataset import read_sample
from .samples import Sample
from .transforms import Preprocess, train_augmentation

__all__ = ["preview_sample", "training_views"]


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def preview_sample(sample: Sample, resize: int = 256, dermo: bool = False) -> dict[str, Any]:
    """``{"image": uint8 (R, R, 3), "mask": bool (R, R) | None, "dermo": bool (R, R) | None}`` after preprocessing."""
    parts = read_sample(sample, dermo=dermo and sample.has_dermo)
    out = Preprocess(resize)(parts)
    return {
        "image": _hwc(out["image"]),
        "mask": out["mask"][0].numpy() > 0 if "mask" in out else None,
        "dermo": out["dermo"][0].numpy() > 0 if "dermo" in out else None,
    }


def training_views(
    sample: Sample,
    size: int,
    resize: int,
    n: int = 4,
    seed: int = 0,
    *,
    crop_scale: float = 1.0,
    color_jitter: float = 0.0,
    color_constancy: float = 0.0,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The full-size image and ``n`` random training views (crop, 90-degree rotation, flips) with their masks;
    ``crop_scale``, ``color_jitter`` and ``color_constancy`` add the from-scratch recipe's scale and colour
    jitter and its Shades of Gray correction."""
    parts = read_sample(sample)
    if "mask" not in parts:
        parts["mask"] = torch.zeros((1, *parts["image"].shape[-2:]), dtype=torch.uint8)
    geometry = v2.Compose(
        train_augmentation(
            size, resize, crop_scale=crop_scale, color_jitter=color_jitter, color_constancy=color_constancy
        )
    )
    torch.manual_seed(seed)
    views, masks = [], []
    for _ in range(n):
        out = geometry(parts)
        views.append(_hwc(out["image"]))
        masks.append(out["mask"][0].numpy() > 0)
    return _hwc(parts["image"]), views, masks
