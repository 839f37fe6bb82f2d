"""The attention module of AttnMel-CNN (Yan et al., IPMI 2019, Sec. 2.1, Fig. 2, Eq. 1-3).

An intermediate feature map F (pool-3 or pool-4) is weighted by a one-channel attention map computed under
the "global guidance" of the last feature map G (pool-5)::

    R = W * ReLU(W_f * F + up(W_g * G))      (Eq. 1; '*' a 1x1 convolution, up() bilinear)
    A = Sigmoid(R)                           (Eq. 2)
    f_hat_i = a_i f_i                        (Eq. 3)

and the pooled feature is the global average of F_hat over positions. As in the authors' code, G is the
spatial pool-5 map (not a vector), W_f and W_g have 256 filters and no bias, W has a bias, and the upsampling
is bilinear with ``align_corners=False``. We upsample to the exact size of F rather than by a fixed factor
(x4 for pool-3, x2 for pool-4 at 224 px; the same numbers there), so any input size works.

The softmax option normalises R over the positions of each image (the map sums to 1) and pools by the sum
of a_i f_i, which is then a weighted average.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttentionBlock", "Normalize"]

Normalize = Literal["sigmoid", "softmax"]
_NORMALIZE = ("sigmoid", "softmax")


class AttentionBlock(nn.Module):
    """Grid attention on a local feature map F guided by a global feature map G (Eq. 1-3).

    Args:
        local_channels: channels C_f of F (256 for pool-3, 512 for pool-4).
        global_channels: channels C_g of G (512 for pool-5).
        inter_channels: filters of W_f and W_g (256 in the paper).
        normalize: ``"sigmoid"`` (Eq. 2, the paper's default) or ``"softmax"`` over positions.
    """

    def __init__(
        self,
        local_channels: int,
        global_channels: int,
        inter_channels: int = 256,
        normalize: Normalize = "sigmoid",
    ) -> None:
        super().__init__()
        if normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
        self.normalize = normalize
        self.W_f = nn.Conv2d(local_channels, inter_channels, kernel_size=1, bias=False)
        self.W_g = nn.Conv2d(global_channels, inter_channels, kernel_size=1, bias=False)
        self.W = nn.Conv2d(inter_channels, 1, kernel_size=1, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming normal (fan_in, ReLU) weights and zero bias, as in the authors' code."""
        for conv in (self.W_f, self.W_g, self.W):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def response(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The one-channel response R of Eq. 1: (N, C_f, h, w), (N, C_g, h', w') -> (N, 1, h, w)."""
        g_up = F.interpolate(
            self.W_g(g), size=f.shape[-2:], mode="bilinear", align_corners=False
        )  # (N, 256, h, w)
        return self.W(F.relu(self.W_f(f) + g_up))  # (N, 1, h, w)

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the pooled attended feature (N, C_f) and the attention map A (N, 1, h, w)."""
        r = self.response(f, g)  # (N, 1, h, w)
        n, _, h, w = r.shape
        if self.normalize == "sigmoid":
            a = torch.sigmoid(r)  # (N, 1, h, w), Eq. 2
            pooled = (a * f).mean(dim=(2, 3))  # (N, C_f): global average of a_i f_i (Eq. 3)
        else:
            a = torch.softmax(r.reshape(n, 1, h * w), dim=2).reshape(n, 1, h, w)  # sums to 1 per image
            pooled = (a * f).sum(dim=(2, 3))  # (N, C_f): attention-weighted average
        return pooled, a

    def extra_repr(self) -> str:
        return f"normalize={self.normalize!r}"
