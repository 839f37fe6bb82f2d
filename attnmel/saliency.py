"""Every saliency map-maker, in one place: attention maps, class activation maps (CAM) and Grad-CAM.

Which maps a model has is declared once, in :mod:`attnmel.models.registry` (``model.saliency_maps``: key ->
display label); :func:`compute_maps` makes them and :func:`map_labels` names them, for ``predict``,
``evaluate`` and ``interpret`` alike. Keys: attention maps are keyed by their backbone tap (``"pool3"``,
``"pool4"`` on VGG; ``"layer2"``, ``"layer3"`` on ResNet-50), ``"cam"`` is the CAM (Zhou et al., CVPR 2016)
of the GAP model, ``"gradcam"`` Grad-CAM (Selvaraju et al., ICCV 2017) at the global tap, for any model.

Table 3 of Yan et al. (IPMI 2019) compares attention maps (Eq. 2) with the CAM of VGG-16-GAP. We use one
protocol for both (docs/REFERENCE.md, Attention evaluation): upsample the map bilinearly (``align_corners=False``) to the input size,
min-max normalise per image, then binarise at 0.5. The released code thresholded CAM on its 7x7 grid before
upsampling; we do not. The scores (Jaccard, pointing game, deletion) live in :mod:`attnmel.attention_eval`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CAM",
    "GRADCAM",
    "upsample_map",
    "minmax_normalise",
    "binarise",
    "class_activation_map",
    "grad_cam",
    "model_grad_cam",
    "map_labels",
    "attention_keys",
    "compute_maps",
]

CAM = "cam"
GRADCAM = "gradcam"


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
    model: nn.Module,
    x: torch.Tensor,
    class_index: int = 1,
    upsample: bool = False,
) -> torch.Tensor:
    """CAM of a GAP model: the class's row of classifier weights times the global-tap features.

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
    features = model.features_map(x)  # (N, C_g, h, w)
    weights = model.classifier.weight[class_index]  # (C_g,)
    cam = torch.einsum("nchw,c->nhw", features, weights)[:, None]  # (N, 1, h, w)
    return upsample_map(cam, tuple(x.shape[-2:])) if upsample else cam


# --------------------------------------------------------------------------------------------------------
# Grad-CAM


def _logits(output: Any) -> Tensor:
    """The logits of a model output: ``AttnMelOutput`` (``.logits``) or a plain ``(N, classes)`` tensor."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    raise TypeError(f"model output must be a tensor or have a .logits tensor, got {type(output).__name__}")


def grad_cam(
    model: nn.Module,
    images: Tensor,
    target_layer: nn.Module,
    class_index: int = 1,
    select: str | int | None = None,
) -> Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017) of class ``class_index`` at ``target_layer`` -> ``(N, 1, h, w)``.

    ``L = relu(sum_k alpha_k A_k)`` with ``A = target_layer(...)`` of shape ``(N, K, h, w)`` and
    ``alpha_k`` the spatial mean of ``d logit_c / d A_k``. A forward hook keeps ``A``; the gradient is taken
    with ``torch.autograd.grad`` with respect to ``A`` only, so no ``.grad`` is left on any parameter, and
    frozen models work (the input is made to require grad). The model runs in eval mode (BatchNorm with
    running statistics, so images do not interact) and its previous mode is restored; hooks are removed
    even on error. Pick a layer whose output is not changed in place afterwards (the ReLU itself, not a conv
    followed by an in-place ReLU). For a network ending in conv -> ReLU -> global average pooling -> linear,
    Grad-CAM at the ReLU equals ``relu(CAM) / (h w)``.

    Args:
        model: returns ``AttnMelOutput`` (``.logits``) or a logits tensor ``(N, classes)``.
        images: ``(N, C, H, W)`` model inputs.
        target_layer: a module of ``model`` whose output (or its ``select`` field) is ``(N, K, h, w)``.
        class_index: the class to explain (1 = melanoma).
        select: field name or index when ``target_layer`` returns a tuple, e.g. ``"pool5"`` for the
            ``VGGFeatures`` of ``model.features`` in the VGG models (see :func:`model_grad_cam`).
    """
    saved: list[Tensor] = []

    def keep(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if select is not None:
            output = getattr(output, select) if isinstance(select, str) else output[select]
        if not isinstance(output, Tensor) or output.ndim != 4:
            raise TypeError(
                f"grad_cam: target_layer must output an (N, K, h, w) tensor, got {type(output).__name__}"
            )
        saved.append(output)

    was_training = model.training
    handle = target_layer.register_forward_hook(keep)
    try:
        model.eval()
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)  # (N, 3, H, W): puts every activation in the graph
            logits = _logits(model(x))  # (N, classes)
            if not saved:
                raise RuntimeError("grad_cam: target_layer was not called during the forward pass")
            activation = saved[-1]  # (N, K, h, w)
            score = logits[:, class_index].sum()  # images are independent in eval mode
            (grad,) = torch.autograd.grad(score, activation)  # (N, K, h, w)
        alpha = grad.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
        return torch.relu((alpha * activation.detach()).sum(dim=1, keepdim=True))  # (N, 1, h, w)
    finally:
        handle.remove()
        model.train(was_training)


def model_grad_cam(model: nn.Module, images: Tensor, class_index: int = 1) -> Tensor:
    """Grad-CAM of an :mod:`attnmel.models` network at its backbone's global tap (VGG pool-5, ResNet layer4)."""
    tap = model.features.feature_info.global_tap
    return grad_cam(model, images, model.features, class_index=class_index, select=tap.name).detach()


# --------------------------------------------------------------------------------------------------------
# The maps a model declares


def map_labels(model: nn.Module, gradcam: bool = False) -> dict[str, str]:
    """Key -> display label of ``model``'s maps (``model.saliency_maps``), plus Grad-CAM with ``gradcam``."""
    labels = dict(model.saliency_maps)
    if gradcam:
        labels[GRADCAM] = f"Grad-CAM ({model.features.feature_info.global_tap.label})"
    return labels


def attention_keys(model: nn.Module) -> tuple[str, ...]:
    """Keys of ``model``'s attention maps, shallow first (``()`` without attention)."""
    return tuple(k for k in model.saliency_maps if k != CAM)


def compute_maps(
    model: nn.Module,
    x: Tensor,
    output: Any = None,
    *,
    gradcam: bool = False,
    class_index: int = 1,
) -> dict[str, Tensor]:
    """``model``'s declared maps of the batch ``x`` (N, 3, H, W), each (N, 1, h, w), keyed as in :func:`map_labels`.

    Attention maps come from ``output`` (the model's :class:`~attnmel.models.AttnMelOutput` for ``x``; the model
    is run when it is None), CAM from the classifier and the global tap, Grad-CAM (with ``gradcam``, fp32, a
    backward pass, detached) at the global tap. Call it under ``torch.inference_mode`` unless ``gradcam``.
    """
    declared = model.saliency_maps
    maps: dict[str, Tensor] = {}
    keys = attention_keys(model)
    if keys:
        if output is None:
            output = model(x)
        for key, attn in zip(keys, (output.attn3, output.attn4), strict=True):
            maps[key] = attn  # (N, 1, h, w)
    if CAM in declared:
        maps[CAM] = class_activation_map(model, x, class_index=class_index)  # (N, 1, H/32, W/32)
    if gradcam:
        with torch.inference_mode(False):
            maps[GRADCAM] = model_grad_cam(model, x.clone(), class_index=class_index)
    return maps
