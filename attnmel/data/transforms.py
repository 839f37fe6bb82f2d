"""Image + mask transforms (torchvision.transforms.v2), following the paper's preprocessing (Sec. 3).

Preprocessing: centre crop to a square of side ``0.8 * min(H, W)``, resize to ``resize`` (256 in the paper;
bilinear with antialias for the image, nearest for masks). Training then takes a random ``size`` crop (224), a
rotation by a random multiple of 90 degrees, horizontal and vertical flips (p = 0.5 each), converts to float in
[0, 1] and normalises with per-dataset statistics; evaluation takes the centre ``size`` crop.

Image and masks travel together as ``tv_tensors.Image`` / ``tv_tensors.Mask`` through one ``v2.Compose``, so
every random draw applies to all of them. Inputs are uint8: image (3, H, W), masks (1, H, W) in {0, 1}; the
outputs are float32, masks binarised to {0, 1} by :class:`BinariseMasks`.

The first step of the pipelines is a :class:`Preprocess`; :func:`split_preprocess` separates it so a
:class:`~attnmel.data.cache.PreprocessCache` can do that step once per image and store the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

# The authors' per-dataset statistics live in the dataset table; re-exported for the transforms' defaults.
from .registry import ISIC2016_MEAN, ISIC2016_STD, ISIC2017_MEAN, ISIC2017_STD

__all__ = [
    "ISIC2017_MEAN",
    "ISIC2017_STD",
    "ISIC2016_MEAN",
    "ISIC2016_STD",
    "CROP_FRACTION",
    "default_resize",
    "CentreCropFraction",
    "RandomRotate90",
    "BinariseMasks",
    "Preprocess",
    "preprocess_transform",
    "train_transform",
    "train_geometry",
    "train_augmentation",
    "colour_jitter",
    "ShadesOfGray",
    "shades_of_gray",
    "eval_transform",
    "eval_geometry",
    "split_preprocess",
]

CROP_FRACTION = 0.8


def default_resize(size: int) -> int:
    """The pre-crop resize that keeps the paper's 224 / 256 ratio: ``round(size * 256 / 224)`` (128 -> 146)."""
    return int(round(size * 256 / 224))


class CentreCropFraction(v2.Transform):
    """Centre crop to a square of side ``round(fraction * min(H, W))``."""

    def __init__(self, fraction: float = CROP_FRACTION) -> None:
        super().__init__()
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        return {"side": max(1, int(round(self.fraction * min(height, width))))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.center_crop, inpt, output_size=[params["side"], params["side"]])


class RandomRotate90(v2.Transform):
    """Rotate by ``k * 90`` degrees, ``k`` uniform in {0, 1, 2, 3} (an exact pixel permutation, no resampling)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": int(torch.randint(0, 4, ()).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor):
            raise TypeError(
                f"RandomRotate90 works on tensors (tv_tensors.Image / Mask), got {type(inpt).__name__}"
            )
        if params["k"] == 0:
            return inpt
        return tv_tensors.wrap(torch.rot90(inpt, params["k"], dims=(-2, -1)), like=inpt)


class BinariseMasks(v2.Transform):
    """Masks -> float32 {0, 1} (``> 0`` is foreground); images pass through unchanged."""

    _transformed_types = (tv_tensors.Mask,)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return tv_tensors.wrap((inpt > 0).to(torch.float32), like=inpt)


def _check_shades_p(p: float) -> None:
    """Shades of Gray's norm must be a number >= 1 (NaN refused too)."""
    if not p >= 1:
        raise ValueError(f"Shades of Gray needs p >= 1, got {p}")


def shades_of_gray(image: torch.Tensor, p: float = 6.0) -> torch.Tensor:
    """Shades of Gray colour constancy (Finlayson & Trezzi 2004) of ``(..., 3, H, W)`` images, uint8 or float
    in [0, 1]: each channel is divided by its share of the illuminant, estimated as the channel's L^p mean.

    A grey-balanced image is left as it is; a colour cast of the dermoscope's light is removed, so lesions taken
    under different lights look alike. ``p = 1`` is grey world, large ``p`` tends to max-RGB; 6 is the value of
    Barata et al. (2015) for dermoscopy. An all-black channel keeps gain 1. The dtype is kept (uint8 rounds).
    """
    _check_shades_p(p)
    if image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(f"Shades of Gray needs (..., 3, H, W) RGB images, got shape {tuple(image.shape)}")
    integer = image.dtype == torch.uint8
    if not (integer or image.is_floating_point()):
        raise TypeError(f"Shades of Gray needs uint8 or float images, got {image.dtype}")
    x = image.to(torch.float32) / 255.0 if integer else image.to(torch.float32)
    illuminant = x.pow(p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / p)  # (..., 3, 1, 1)
    white = illuminant.square().sum(dim=-3, keepdim=True).sqrt() / 3**0.5  # a grey light of the same norm
    gain = torch.where(illuminant > 0, white / illuminant.clamp_min(1e-12), torch.ones_like(illuminant))
    out = (x * gain).clamp(0.0, 1.0)
    return (out * 255.0).round().to(torch.uint8) if integer else out.to(image.dtype)


class ShadesOfGray(v2.Transform):
    """:func:`shades_of_gray` as a pipeline step: images are colour-corrected, masks pass through."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, p: float = 6.0) -> None:
        super().__init__()
        _check_shades_p(p)  # at construction, so a bad pipeline fails before the first image
        self.p = p

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return tv_tensors.wrap(shades_of_gray(inpt, self.p), like=inpt)


def _constancy(p: float) -> list[v2.Transform]:
    """The colour-constancy step after preprocessing (none when ``p`` is 0): train and eval share it."""
    return [ShadesOfGray(p)] if p > 0 else []


class Preprocess(v2.Compose):
    """The deterministic, once-per-image step: centre crop ``fraction * min(H, W)``, resize to ``resize``."""

    def __init__(self, resize: int = 256, fraction: float = CROP_FRACTION) -> None:
        if resize < 1:
            raise ValueError(f"resize must be positive, got {resize}")
        super().__init__([CentreCropFraction(fraction), v2.Resize((resize, resize), antialias=True)])
        self.resize = resize
        self.fraction = fraction


def preprocess_transform(resize: int = 256, fraction: float = CROP_FRACTION) -> Preprocess:
    return Preprocess(resize, fraction)


def _check_sizes(size: int, resize: int | None) -> int:
    resize = default_resize(size) if resize is None else resize
    if not 0 < size <= resize:
        raise ValueError(f"need 0 < size <= resize, got size={size}, resize={resize}")
    return resize


def _finish(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
        BinariseMasks(),
    ]


def train_transform(
    size: int = 224,
    resize: int | None = 256,
    mean: Sequence[float] = ISIC2017_MEAN,
    std: Sequence[float] = ISIC2017_STD,
    *,
    crop_scale: float = 1.0,
    color_jitter: float = 0.0,
    color_constancy: float = 0.0,
) -> v2.Compose:
    """Training pipeline: preprocess, random crop ``size``, random 90-degree rotation, flips, float, normalise.

    Args:
        size: output side (224 in the paper; e.g. 128 for CPU runs).
        resize: side after the 0.8 centre crop; None -> :func:`default_resize` (``size`` 128 -> 146).
        mean, std: per-channel normalisation (:data:`ISIC2017_MEAN` / :data:`ISIC2017_STD` by default).
        crop_scale, color_jitter: the from-scratch recipe's augmentation (:func:`train_geometry`,
            :func:`colour_jitter`); the defaults are the paper's pipeline.
        color_constancy: the ``p`` of :class:`ShadesOfGray`, applied to the whole preprocessed image before the
            crop (as in :func:`eval_transform`); 0 = off, the paper's pipeline.
    """
    augmentation = train_augmentation(
        size, resize, crop_scale=crop_scale, color_jitter=color_jitter, color_constancy=color_constancy
    )
    return v2.Compose([*augmentation, *_finish(mean, std)])


def train_augmentation(
    size: int = 224,
    resize: int | None = 256,
    *,
    crop_scale: float = 1.0,
    color_jitter: float = 0.0,
    color_constancy: float = 0.0,
) -> list[v2.Transform]:
    """The uint8 part of the training pipeline (what previews show): preprocess, colour constancy, the geometry
    of :func:`train_geometry`, colour jitter (arguments as :func:`train_transform`)."""
    jitter = [colour_jitter(color_jitter)] if color_jitter > 0 else []
    preprocess, *geometry = train_geometry(size, resize, crop_scale=crop_scale)
    return [preprocess, *_constancy(color_constancy), *geometry, *jitter]


def train_geometry(
    size: int = 224, resize: int | None = 256, *, crop_scale: float = 1.0
) -> list[v2.Transform]:
    """The geometric part of the training pipeline (uint8 in, uint8 out): what previews show the network.

    ``crop_scale`` < 1 replaces the fixed-size random crop by a RandomResizedCrop over ``crop_scale`` to all of
    the preprocessed image's area, aspect 3/4 to 4/3 (scale jitter for training from scratch); masks follow.
    """
    resize = _check_sizes(size, resize)
    if not 0.0 < crop_scale <= 1.0:
        raise ValueError(f"crop_scale must lie in (0, 1], got {crop_scale}")
    crop = (
        v2.RandomCrop(size)
        if crop_scale == 1.0
        else v2.RandomResizedCrop(size, scale=(crop_scale, 1.0), ratio=(3 / 4, 4 / 3), antialias=True)
    )
    return [
        Preprocess(resize),
        crop,
        RandomRotate90(),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomVerticalFlip(0.5),
    ]


def colour_jitter(strength: float) -> v2.ColorJitter:
    """Brightness, contrast and saturation x [1 - s, 1 + s] and hue +- s/10: illumination and camera changes
    within what dermoscopes produce (a hue shift of s/10 keeps lesions brown-blue, not green). Images only."""
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"colour jitter strength must lie in [0, 1), got {strength}")
    return v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=strength / 10)


def eval_transform(
    size: int = 224,
    resize: int | None = 256,
    mean: Sequence[float] = ISIC2017_MEAN,
    std: Sequence[float] = ISIC2017_STD,
    *,
    color_constancy: float = 0.0,
) -> v2.Compose:
    """Evaluation pipeline: preprocess, centre crop ``size``, float, normalise (arguments as :func:`train_transform`)."""
    preprocess, *geometry = eval_geometry(size, resize)
    return v2.Compose([preprocess, *_constancy(color_constancy), *geometry, *_finish(mean, std)])


def eval_geometry(size: int = 224, resize: int | None = 256) -> list[v2.Transform]:
    """The geometric part of the evaluation pipeline (uint8 in, uint8 out): preprocess, centre crop ``size``."""
    resize = _check_sizes(size, resize)
    return [Preprocess(resize), v2.CenterCrop(size)]


def split_preprocess(transform: Any) -> tuple[Preprocess | None, Any]:
    """``(preprocess, rest)`` when ``transform`` is a ``v2.Compose`` starting with :class:`Preprocess`.

    Otherwise ``(None, transform)``: the transform has no separable preprocessing step, so it cannot be cached.
    """
    if (
        isinstance(transform, v2.Compose)
        and transform.transforms
        and isinstance(transform.transforms[0], Preprocess)
    ):
        return transform.transforms[0], v2.Compose(list(transform.transforms[1:]))
    return None, transform
