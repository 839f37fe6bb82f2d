"""The training loss of AttnMel-CNN (Yan et al., IPMI 2019, Sec. 2.2, Eq. 4-5).

    L = L_focal + lambda_1 L_D(A3, A3_ref) + lambda_2 L_D(A4, A4_ref)                     (Eq. 5)
    L_D(A, A_ref) = 1 - 2 sum_i a_i a_ref_i / sum_i (a_i + a_ref_i)                       (Eq. 4)

- Focal loss (Lin et al. 2017), ``-(1 - p_t)^gamma log p_t`` with gamma = 2, mean over the batch, computed from
  ``log_softmax`` so huge logits stay finite.
- The Dice term is computed over the whole batch as one tensor (the paper: per image would divide by zero
  for images without ROI pixels). Reference masks are brought to each attention grid by adaptive average
  pooling (soft values), as in the authors' code. There is no epsilon: an all-empty batch of masks gives
  ``1 - 0 / sum(a) = 1`` (constant, zero gradient). Only when the attention *and* the masks are all zero is
  the ratio 0/0; we define the Dice of two empty maps as 1, so the loss is 0 there, with zero gradient.
- lambda_1 = 0.001 on pool-3 and lambda_2 = 0.01 on pool-4 (called ``lambda3``/``lambda4`` here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .models.networks import AttnMelOutput

__all__ = ["focal_loss", "dice_attention_loss", "LossParts", "AttnMelLoss"]


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss, mean over the batch: ``-alpha_t (1 - p_t)^gamma log p_t``.

    Args:
        logits: (N, K) raw scores.
        target: (N,) class indices, or (N, K) class probabilities (label smoothing, mixup): then the loss is
            ``-sum_k q_k alpha_k (1 - p_k)^gamma log p_k``, which equals the above for one-hot rows.
        gamma: focusing parameter (0 gives cross-entropy).
        alpha: None (no weighting, the paper), a float in [0, 1] weighting class 1 by alpha and class 0 by
            1 - alpha (binary only), or K per-class weights.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got {tuple(logits.shape)}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if target.ndim == 2:
        if target.shape != logits.shape:
            raise ValueError(
                f"soft targets must be (N, K) = {tuple(logits.shape)}, got {tuple(target.shape)}"
            )
        log_p = F.log_softmax(logits, dim=1)  # (N, K)
        one_minus_p = -torch.expm1(log_p)
        modulating = one_minus_p.clamp(min=torch.finfo(logits.dtype).tiny) ** gamma if gamma else 1.0
        per_class = -modulating * log_p  # (N, K)
        if alpha is not None:
            per_class = per_class * _alpha_weights(alpha, logits.shape[1], logits)[None]
        return (target.to(per_class.dtype) * per_class).sum(dim=1).mean()
    if target.shape != logits.shape[:1]:
        raise ValueError(f"target must be (N,) = ({logits.shape[0]},), got {tuple(target.shape)}")
    target = target.long()
    log_p_t = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)  # (N,)
    one_minus_p_t = -torch.expm1(log_p_t)  # (N,) 1 - p_t, accurate when p_t is near 1
    # clamp: a finite gradient of (1 - p_t)^gamma at p_t = 1 even for gamma < 1
    modulating = one_minus_p_t.clamp(min=torch.finfo(logits.dtype).tiny) ** gamma if gamma else 1.0
    loss = -modulating * log_p_t  # (N,)
    if alpha is not None:
        loss = loss * _alpha_weights(alpha, logits.shape[1], logits)[target]
    return loss.mean()


def _alpha_weights(
    alpha: float | Sequence[float] | torch.Tensor, num_classes: int, like: torch.Tensor
) -> torch.Tensor:
    if isinstance(alpha, (int, float)):
        if num_classes != 2 or not 0.0 <= alpha <= 1.0:
            raise ValueError(
                f"a scalar alpha must lie in [0, 1] and needs 2 classes; got {alpha}, K={num_classes}"
            )
        return torch.tensor([1.0 - alpha, alpha], dtype=like.dtype, device=like.device)
    weights = torch.as_tensor(alpha, dtype=like.dtype, device=like.device)
    if weights.shape != (num_classes,):
        raise ValueError(
            f"alpha must hold one weight per class ({num_classes}), got shape {tuple(weights.shape)}"
        )
    return weights


def dice_attention_loss(attn: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
    """Eq. 4 over the whole batch: ``1 - 2 sum(a r) / (sum(a) + sum(r))`` with r the pooled reference map.

    Args:
        attn: (N, 1, h, w) attention map A in [0, 1].
        roi: (N, 1, H, W) reference map in [0, 1]; adaptive-average-pooled to (h, w).

    Returns a scalar in [0, 1]. All-empty masks give 1 (no gradient); attention and masks all zero give 0.
    """
    if attn.ndim != 4 or attn.shape[1] != 1:
        raise ValueError(f"attn must be (N, 1, h, w), got {tuple(attn.shape)}")
    if roi.ndim != 4 or roi.shape[:2] != attn.shape[:2]:
        raise ValueError(f"roi must be (N, 1, H, W) with N = {attn.shape[0]}, got {tuple(roi.shape)}")
    ref = F.adaptive_avg_pool2d(roi.to(attn.dtype), attn.shape[-2:])  # (N, 1, h, w)
    overlap = 2.0 * (attn * ref).sum()
    total = attn.sum() + ref.sum()
    empty = total <= 0
    dice = torch.where(
        empty, torch.ones_like(total), overlap / torch.where(empty, torch.ones_like(total), total)
    )
    return 1.0 - dice


class LossParts(NamedTuple):
    """The terms of Eq. 5: ``total = focal + lambda3 * dice3 + lambda4 * dice4`` (dice terms unweighted)."""

    total: torch.Tensor
    focal: torch.Tensor
    dice3: torch.Tensor
    dice4: torch.Tensor


def soft_targets(target: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Class indices (N,) as one-hot rows (N, K); soft targets (N, K), e.g. mixup's, pass through unchanged."""
    if target.ndim == 2:
        return target.to(dtype)
    return F.one_hot(target.long(), num_classes).to(dtype)


class AttnMelLoss(nn.Module):
    """The combined loss of Eq. 5: focal loss plus Dice regularisers on the pool-3 and pool-4 attention.

    Args:
        gamma, alpha: focal loss parameters.
        lambda3: weight of the pool-3 Dice term (lambda_1 = 0.001 in the paper).
        lambda4: weight of the pool-4 Dice term (lambda_2 = 0.01 in the paper).
        label_smoothing: epsilon of label smoothing, ``q = (1 - eps) q + eps / K`` (0 in the paper).
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        lambda3: float = 0.001,
        lambda4: float = 0.01,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.gamma, self.alpha, self.lambda3, self.lambda4 = gamma, alpha, lambda3, lambda4
        self.label_smoothing = label_smoothing

    def forward(
        self, output: AttnMelOutput, target: torch.Tensor, roi: torch.Tensor | None = None
    ) -> LossParts:
        """``target``: (N,) class indices or (N, K) probabilities (mixup). Dice terms are zero tensors when
        ``roi`` is None or the model has no attention maps."""
        if self.label_smoothing > 0:
            k = output.logits.shape[1]
            target = soft_targets(target, k, output.logits.dtype) * (1.0 - self.label_smoothing) + (
                self.label_smoothing / k
            )
        focal = focal_loss(output.logits, target, self.gamma, self.alpha)
        zero = focal.new_zeros(())
        dice3 = (
            dice_attention_loss(output.attn3, roi) if roi is not None and output.attn3 is not None else zero
        )
        dice4 = (
            dice_attention_loss(output.attn4, roi) if roi is not None and output.attn4 is not None else zero
        )
        total = focal + self.lambda3 * dice3 + self.lambda4 * dice4
        return LossParts(total, focal, dice3, dice4)

    def extra_repr(self) -> str:
        smoothing = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"gamma={self.gamma}, alpha={self.alpha}, lambda3={self.lambda3}, lambda4={self.lambda4}{smoothing}"
