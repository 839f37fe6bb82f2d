"""Per-dataset normalisation statistics, computed the way the authors did (docs/REFERENCE.md, Data).

The authors normalise with statistics of their own training set, not ImageNet's: the channel mean over all
pixels, and as "std" the **mean of the per-image channel standard deviations**, both measured on the augmented
training images (after the 0.8 centre crop, resize, random crop, rotation and flips; values in [0, 1]). The
per-image-std average is smaller than the pooled std, because it leaves out the variation between images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader

from .dataset import LesionDataset
from .samples import Sample
from .transforms import train_transform

if TYPE_CHECKING:
    from .cache import PreprocessCache

__all__ = ["NormStats", "normalisation_stats"]


@dataclass(frozen=True)
class NormStats:
    """Channel statistics in [0, 1] units: ``mean`` of pixels, ``std`` = mean of per-image stds, and the
    pooled pixel std for comparison."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pooled_std: tuple[float, float, float]
    n_images: int


def normalisation_stats(
    samples: Sequence[Sample],
    *,
    size: int = 224,
    resize: int | None = 256,
    seed: int = 0,
    batch_size: int = 32,
    num_workers: int = 0,
    cache: PreprocessCache | None = None,
) -> NormStats:
    """Statistics over one augmented pass of ``samples`` (seeded), see the module docstring.

    Args:
        samples: the training samples (e.g. ``isic2017(root, "Training")``).
        size, resize: as for :func:`train_transform`.
        seed: seeds the augmentation draws.
        batch_size, num_workers: DataLoader settings.
        cache: an optional :class:`PreprocessCache` with the same ``resize``.
    """
    if len(samples) == 0:
        raise ValueError("samples is empty")
    transform = train_transform(size, resize, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # identity normalise
    dataset = LesionDataset(samples, transform, cache=cache)
    generator = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the v2 random transforms draw from the global generator in the main process
    try:
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, generator=generator)
        n = 0
        mean_sum = torch.zeros(3, dtype=torch.float64)
        std_sum = torch.zeros(3, dtype=torch.float64)
        sq_sum = torch.zeros(3, dtype=torch.float64)
        for batch in loader:
            images = batch["image"].to(torch.float64)  # (B, 3, S, S) in [0, 1]
            flat = images.flatten(2)  # (B, 3, S*S)
            mean_sum += flat.mean(dim=2).sum(dim=0)
            std_sum += flat.std(dim=2).sum(dim=0)
            sq_sum += (flat**2).mean(dim=2).sum(dim=0)
            n += images.shape[0]
    finally:
        torch.random.set_rng_state(torch_state)
    mean = mean_sum / n
    pooled = (sq_sum / n - mean**2).clamp_min(0).sqrt()
    return NormStats(
        mean=tuple(round(v, 4) for v in mean.tolist()),  # type: ignore[arg-type]
        std=tuple(round(v, 4) for v in (std_sum / n).tolist()),  # type: ignore[arg-type]
        pooled_std=tuple(round(v, 4) for v in pooled.tolist()),  # type: ignore[arg-type]
        n_images=n,
    )
