"""Scores of saliency maps with one protocol for every map: Jaccard (Table 3), pointing game, deletion curves,
attention share on a region, and overlays. The maps themselves (attention, CAM, Grad-CAM) are made in
:mod:`attnmel.saliency`; ``grad_cam`` is re-exported here for older imports.

The paper (Sect. 3.3, Table 3) re-normalises each attention map to [0, 1], binarises it at 0.5 and computes
the Jaccard index against the ground-truth lesion segmentation, per image, averaged over the test set; CAM
of VGG-16-GAP goes through "the same procedure". The authors' code upsamples the map bilinearly to the input
size *before* the min-max normalisation, except for CAM, which it thresholded at 7x7. Here every map (pool-3
and pool-4 attention, CAM, Grad-CAM) goes through the same steps, in this order:

1. bilinear upsampling (``align_corners=False``) to the mask/input size,
2. min-max normalisation per image (a constant map becomes all zeros),
3. threshold: ``normalised >= 0.5`` (so a constant map is all False: it points nowhere).

The three steps are those of :mod:`attnmel.saliency` (``upsample_map``, ``minmax_normalise``, ``binarise``),
so the protocol has a single implementation; this module adds the shape handling and the scores.

Maps are ``(N, 1, h, w)`` tensors (``(N, h, w)`` is accepted); masks are ``(N, 1, H, W)`` or ``(N, H, W)``,
bool or float (a float mask is foreground where ``> 0.5``). Per-image results are CPU tensors of shape
``(N,)``. Images without a lesion mask must be excluded by the caller (``has_mask`` from the dataset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from attnmel.saliency import _logits, binarise, minmax_normalise, upsample_map
from attnmel.saliency import grad_cam as grad_cam  # moved to saliency; re-exported for older imports

__all__ = [
    "upsample",
    "minmax",
    "binarise_map",
    "jaccard",
    "mean_jaccard",
    "pointing_game",
    "attention_report",
    "grad_cam",
    "DeletionCurve",
    "deletion_curve",
    "deletion_auc",
    "share_on_region",
    "overlay",
    "to_uint8_image",
]

Size = int | Sequence[int]


# --------------------------------------------------------------------------------------------------------
# Shape handling and the normalisation protocol


def _maps(x: Any, name: str = "map") -> Tensor:
    """Return a float ``(N, 1, h, w)`` tensor from ``(N, 1, h, w)`` or ``(N, h, w)`` input."""
    t = x.detach() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4 or t.shape[1] != 1:
        raise ValueError(f"{name} must have shape (N, 1, h, w) or (N, h, w), got {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.float()
    return t


def _masks(x: Any, name: str = "mask") -> Tensor:
    """Return a bool ``(N, H, W)`` tensor from ``(N, 1, H, W)`` or ``(N, H, W)`` bool/float/int input."""
    t = x.detach() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim == 4:
        if t.shape[1] != 1:
            raise ValueError(f"{name} must have shape (N, 1, H, W) or (N, H, W), got {tuple(t.shape)}")
        t = t[:, 0]
    if t.ndim != 3:
        raise ValueError(f"{name} must have shape (N, 1, H, W) or (N, H, W), got {tuple(t.shape)}")
    return t if t.dtype == torch.bool else t > 0.5


def _size(size: Size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(s) for s in size)
    return h, w


def upsample(maps: Any, size: Size) -> Tensor:
    """Bilinear upsampling (``align_corners=False``) of ``(N, 1, h, w)`` maps to ``(N, 1, H, W)``."""
    m = _maps(maps)
    size = _size(size)
    if tuple(m.shape[-2:]) == size:
        return m  # bilinear resampling to the same size is the identity
    return upsample_map(m, size)


def minmax(maps: Any) -> Tensor:
    """Min-max normalise each ``(1, H, W)`` map to [0, 1]; a constant map becomes all zeros."""
    return minmax_normalise(_maps(maps))


def binarise_map(maps: Any, size: Size, threshold: float = 0.5) -> Tensor:
    """The Table 3 protocol: upsample to ``size``, min-max per image, ``>= threshold`` -> bool ``(N, H, W)``.

    A constant map (no spatial preference) gives an all-False mask.
    """
    return binarise(minmax(upsample(maps, size)), threshold)[:, 0]


def jaccard(pred: Any, mask: Any) -> Tensor:
    """Per-image Jaccard index ``|P & M| / |P | M|`` of two binary masks -> float ``(N,)``.

    When both are empty the index is 1.0 (they agree perfectly); callers evaluating lesion overlap exclude
    images without a lesion mask beforehand, so this case only arises for genuinely empty masks.
    """
    m = _masks(mask, "mask")
    p = _masks(pred, "pred").to(m.device)
    if p.shape != m.shape:
        raise ValueError(f"pred and mask shapes differ: {tuple(p.shape)} vs {tuple(m.shape)}")
    inter = (p & m).flatten(1).sum(1).double()
    union = (p | m).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).float().cpu()


def _select(values: Tensor, has_mask: Any) -> Tensor:
    if has_mask is None:
        return values
    keep = torch.as_tensor(has_mask).bool().cpu()
    if keep.shape != values.shape:
        raise ValueError(f"has_mask must have shape {tuple(values.shape)}, got {tuple(keep.shape)}")
    return values[keep]


def mean_jaccard(maps: Any, mask: Any, has_mask: Any = None, threshold: float = 0.5) -> float:
    """Mean Jaccard of binarised maps against lesion masks over the images where ``has_mask`` is true.

    Raises ``ValueError`` when no image has a mask.
    """
    m = _masks(mask)
    values = _select(jaccard(binarise_map(maps, m.shape[-2:], threshold), m), has_mask)
    if values.numel() == 0:
        raise ValueError("mean_jaccard: no image has a lesion mask (has_mask is all False)")
    return float(values.mean())


def pointing_game(maps: Any, mask: Any, tolerance: float = 0.0) -> Tensor:
    """Pointing game: a hit when the maximum of the upsampled map lies in the lesion -> bool ``(N,)``.

    The map is upsampled to the mask size; ties go to the first maximum in raster order. With
    ``tolerance > 0`` a hit also counts when a lesion pixel lies within ``tolerance`` pixels (Euclidean) of
    the maximum. A constant map counts as a miss (it points nowhere).
    """
    m = _masks(mask)
    up = upsample(maps, m.shape[-2:]).to(m.device)[:, 0]  # (N, H, W)
    n, h, w = up.shape
    flat = up.flatten(1)
    arg = flat.argmax(dim=1)  # (N,)
    y0, x0 = arg // w, arg % w
    if tolerance <= 0:
        hit = m[torch.arange(n, device=m.device), y0, x0]
    else:
        yy = torch.arange(h, device=m.device).view(1, h, 1)
        xx = torch.arange(w, device=m.device).view(1, 1, w)
        near = (yy - y0.view(n, 1, 1)) ** 2 + (xx - x0.view(n, 1, 1)) ** 2 <= tolerance**2  # (N, H, W)
        hit = (near & m).flatten(1).any(dim=1)
    constant = flat.max(dim=1).values <= flat.min(dim=1).values
    return (hit & ~constant).cpu()


def attention_report(maps: Mapping[str, Any], mask: Any, has_mask: Any = None) -> dict[str, dict[str, float]]:
    """Jaccard (mean, std) and pointing-game hit rate for several maps of the same images, JSON-ready.

    ``maps`` maps a name (``"pool3"``, ``"pool4"``, ``"cam"``, ``"gradcam"``...) to ``(N, 1, h, w)``.
    Only images with ``has_mask`` count; ``n`` is their number.
    """
    m = _masks(mask)
    report = {}
    for name, value in maps.items():
        jac = _select(jaccard(binarise_map(value, m.shape[-2:]), m), has_mask)
        hits = _select(pointing_game(value, m), has_mask)
        if jac.numel() == 0:
            raise ValueError("attention_report: no image has a lesion mask (has_mask is all False)")
        report[name] = {
            "jaccard_mean": float(jac.mean()),
            "jaccard_std": float(jac.std(correction=0)),
            "pointing_rate": float(hits.float().mean()),
            "n": int(jac.numel()),
        }
    return report


# --------------------------------------------------------------------------------------------------------
# Deletion curve


def _class_prob(logits: Tensor, class_index: int) -> Tensor:
    """Probability of ``class_index``: softmax over classes, or sigmoid for a single-logit model."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, classes), got {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits.float(), dim=1)[:, class_index]


class DeletionCurve(NamedTuple):
    """Result of :func:`deletion_curve` (unpacks as a tuple)."""

    fractions: np.ndarray  # (S+1,) fraction of pixels removed, 0 ... 1
    mean_prob: np.ndarray  # (S+1,) class probability averaged over images
    probs: np.ndarray  # (N, S+1) per-image class probability


def _baseline(images: Tensor, kind: str) -> Tensor:
    """The image that deleted pixels are replaced with: ``(N, C, H, W)``."""
    if kind == "zero":
        return torch.zeros_like(images)
    if kind == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    if kind == "blur":
        from torchvision.transforms.v2.functional import gaussian_blur

        sigma = max(images.shape[-2:]) / 32
        kernel = 2 * math.ceil(3 * sigma) + 1
        return gaussian_blur(images, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
    raise ValueError(f"baseline must be 'mean', 'zero' or 'blur', got {kind!r}")


@torch.no_grad()
def deletion_curve(
    model: nn.Module,
    images: Tensor,
    saliency: Any,
    steps: int = 10,
    baseline: str = "mean",
    class_index: int = 1,
    batch_size: int | None = None,
) -> DeletionCurve:
    """Deletion curve (Petsiuk et al., RISE, BMVC 2018): delete the most salient pixels first.

    For fractions ``0, 1/steps, ..., 1`` of the pixels, ranked by the saliency upsampled to the image size
    (ties in raster order), the top pixels are replaced by the ``baseline`` (``"mean"``: each image's
    per-channel mean; ``"zero"``: 0, i.e. the dataset mean for normalised inputs; ``"blur"``: a Gaussian-blurred
    copy) and the class probability (``softmax(logits)[:, class_index]``) is recorded. A faithful map makes
    the probability drop fast (small :func:`deletion_auc`).

    Args:
        images: ``(N, C, H, W)`` model inputs. saliency: ``(N, 1, h, w)``.
        batch_size: images per forward pass (default: all ``N``).
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    sal = upsample(saliency, (h, w)).to(images.device)  # (N, 1, H, W)
    if sal.shape[0] != n:
        raise ValueError(f"saliency has {sal.shape[0]} maps for {n} images")
    base = _baseline(images, baseline)
    order = torch.argsort(sal.flatten(1), dim=1, descending=True, stable=True)  # (N, HW)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=order.device).expand(n, -1))
    rank = rank.view(n, 1, h, w)  # 0 = most salient pixel
    fractions = np.linspace(0.0, 1.0, int(steps) + 1)
    batch_size = batch_size or n
    was_training = model.training
    model.eval()
    try:
        probs = torch.empty(n, len(fractions))
        for j, frac in enumerate(fractions):
            removed = rank < int(round(frac * h * w))  # (N, 1, H, W)
            x = torch.where(removed, base, images)
            for s in range(0, n, batch_size):
                logits = _logits(model(x[s : s + batch_size]))
                probs[s : s + batch_size, j] = _class_prob(logits, class_index).float().cpu()
    finally:
        model.train(was_training)
    p = probs.numpy().astype(np.float64)
    return DeletionCurve(fractions, p.mean(axis=0), p)


def deletion_auc(fractions: Any, probs: Any) -> float | np.ndarray:
    """Area under a deletion curve by the trapezoid rule: a float for ``(S+1,)`` probs, ``(N,)`` for
    ``(N, S+1)``. Lower means the map found the evidence the model uses."""
    f = np.asarray(fractions, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[-1] != f.shape[0]:
        raise ValueError(f"probs last dimension {p.shape[-1]} does not match {f.shape[0]} fractions")
    area = np.sum((p[..., 1:] + p[..., :-1]) / 2 * np.diff(f), axis=-1)
    return float(area) if area.ndim == 0 else area


# --------------------------------------------------------------------------------------------------------
# Attention share on a region


def share_on_region(maps: Any, region: Any) -> Tensor:
    """Fraction of each image's attention mass inside ``region`` -> float ``(N,)`` in [0, 1].

    The map is upsampled to the region size, negative values are clipped to 0 and it is normalised to sum
    to 1; the share is the mass on the region's pixels. Used to measure shortcut attention on an artifact
    (e.g. a ruler or colour patch). A map with no positive mass gives NaN.
    """
    r = _masks(region, "region")
    up = upsample(maps, r.shape[-2:]).to(r.device)[:, 0].clamp_min(0)  # (N, H, W)
    total = up.flatten(1).sum(1).double()
    inside = (up * r).flatten(1).sum(1).double()
    return (
        torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, math.nan))
        .float()
        .cpu()
    )


# --------------------------------------------------------------------------------------------------------
# Overlay


def to_uint8_image(image: Any, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    """``(H, W, 3)`` uint8 from uint8 ``(H, W, 3)`` or float ``(3, H, W)`` / ``(H, W, 3)`` in [0, 1]
    (or normalised, undone with ``mean`` and ``std``)."""
    arr = image.detach().float().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"image must be (H, W, 3) or (3, H, W), got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype == np.uint8:
        if mean is not None or std is not None:
            raise ValueError("mean/std undo a normalisation; a uint8 image is not normalised")
        return arr
    arr = arr.astype(np.float32)
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ValueError("give both mean and std to undo the normalisation")
        arr = arr * np.asarray(std, dtype=np.float32) + np.asarray(mean, dtype=np.float32)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def overlay(
    image: Any,
    attention: Any,
    alpha: float = 0.4,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """Heat-map overlay as in the paper's figures: ``(1 - alpha) image + alpha jet(minmax(up(map)))``.

    Args:
        image: uint8 ``(H, W, 3)``, or float ``(3, H, W)`` / ``(H, W, 3)`` in [0, 1]; with ``mean`` and
            ``std`` a normalised float image is first brought back to [0, 1].
        attention: ``(h, w)`` or ``(1, h, w)`` map; upsampled bilinearly to ``(H, W)`` and min-max normalised.
        alpha: weight of the heat map (0.4: 0.6 image + 0.4 map).

    Returns:
        uint8 ``(H, W, 3)``.
    """
    import matplotlib

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    img = to_uint8_image(image, mean, std)
    a = attention.detach() if isinstance(attention, Tensor) else torch.as_tensor(np.asarray(attention))
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"attention must be (h, w) or (1, h, w), got shape {tuple(a.shape)}")
    heat01 = minmax(upsample(a.float().cpu()[None, None], img.shape[:2]))[0, 0].numpy()  # (H, W) in [0, 1]
    heat = matplotlib.colormaps["jet"](heat01)[..., :3]  # (H, W, 3) float in [0, 1]
    blended = (1.0 - alpha) * img.astype(np.float32) / 255.0 + alpha * heat
    return (np.clip(blended, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
