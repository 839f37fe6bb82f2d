"""Test-time augmentation (TTA): the melanoma probability averaged over the 8 dihedral views of the input.

A dermoscopy image has no preferred orientation, so the eight symmetries of the square (the identity, the
rotations by 90, 180 and 270 degrees, and the same four after a horizontal flip) are all plausible views of
the same lesion. :func:`tta_probabilities` runs the model on each view and averages the softmax melanoma
probabilities (not the logits), so the result is the plain mean of the 8 probabilities one would get by
transforming the image by hand. The saliency maps of a TTA evaluation are those of the untransformed view.

Used by ``attnmel evaluate --tta`` / ``attnmel predict --tta`` (library keyword ``tta=True`` of
:func:`attnmel.evaluate.evaluate_checkpoint` and :func:`attnmel.predict.predict_images`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["DIHEDRAL", "dihedral_views", "tta_probabilities"]


def _view(k: int, flip: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(x: torch.Tensor) -> torch.Tensor:  # x (N, C, H, W) -> (N, C, H, W) (H, W swapped for odd k)
        y = torch.flip(x, dims=(-1,)) if flip else x
        return torch.rot90(y, k, dims=(-2, -1)) if k else y

    apply.__name__ = f"{'flip_' if flip else ''}rot{90 * k}"
    return apply


# The dihedral group of the square: rot90 by k = 0..3, without and with a horizontal flip first.
DIHEDRAL: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = tuple(
    _view(k, flip) for flip in (False, True) for k in range(4)
)


def dihedral_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 dihedral views of a batch ``x`` (N, C, H, W), identity first."""
    return [view(x) for view in DIHEDRAL]


def tta_probabilities(model: nn.Module, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
    """Melanoma probability ``(N,)`` float64, the mean of ``softmax(model(view(x)))[:, 1]`` over the 8 views.

    ``logits``: the model's logits on ``x`` itself when already computed (the identity view is then not run
    again). Call under ``torch.inference_mode()`` / autocast as for a plain forward pass.
    """
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for i, view in enumerate(DIHEDRAL):
        z = logits if (i == 0 and logits is not None) else model(view(x)).logits
        total += torch.softmax(z.float(), dim=1)[:, 1].double()
    return total / len(DIHEDRAL)
