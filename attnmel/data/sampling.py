"""Class balance: the paper's offline oversampling, a weighted sampler, and a stratified seeded split.

Melanoma is about 19% of ISIC 2017 training images. The authors list each positive 4 times in the training list
(an offline list, no sampler); :func:`oversample` reproduces that. :func:`weighted_sampler` is the usual
alternative: draw with replacement so that each class is drawn equally often in expectation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from .samples import SampleList

__all__ = ["oversample", "weighted_sampler", "class_weights", "stratified_split"]


def oversample(samples: SampleList, factor: int = 4) -> SampleList:
    """The list with every positive (label 1) repeated ``factor`` times in place; negatives once."""
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    out = [s for s in samples for _ in range(factor if s.label == 1 else 1)]
    return samples.derive(out, oversample_factor=factor)


def class_weights(labels: Sequence[int]) -> torch.Tensor:
    """Per-sample weight ``1 / count(class of the sample)``. Returns float64 (N,)."""
    counts = Counter(int(y) for y in labels)
    if not counts:
        raise ValueError("labels is empty")
    return torch.tensor([1.0 / counts[int(y)] for y in labels], dtype=torch.float64)


def weighted_sampler(
    labels: Sequence[int], num_samples: int | None = None, generator: torch.Generator | None = None
) -> WeightedRandomSampler:
    """A sampler drawing ``num_samples`` (default ``len(labels)``) indices with replacement, classes balanced."""
    weights = class_weights(labels)
    return WeightedRandomSampler(
        weights, num_samples=num_samples or len(labels), replacement=True, generator=generator
    )


def stratified_split(
    ids: Sequence[str], labels: Sequence[int], fraction: float, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split ids into ``(kept, held_out)``: ``round(n_c * fraction)`` of each class ``c`` held out, seeded.

    The draw depends only on the ids in each class (sorted first), ``fraction`` and ``seed``; both lists come
    back in the input order.
    """
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids but {len(labels)} labels")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for label in sorted(set(labels)):
        members = sorted(i for i, y in zip(ids, labels, strict=True) if y == label)
        n_held = int(round(len(members) * fraction))
        order = rng.permutation(len(members))
        held.update(members[k] for k in order[:n_held])
    return [i for i in ids if i not in held], [i for i in ids if i in held]
