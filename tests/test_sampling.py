"""Class balance: the paper's 4x oversampling list, a balanced weighted sampler, a stratified split."""

from __future__ import annotations

import pytest
import torch

from attnmel.data import Sample, SampleList, class_weights, oversample, stratified_split, weighted_sampler


def _samples(labels):
    return SampleList(
        [Sample(f"ISIC_{i:07d}", f"/nowhere/{i}.jpg", y) for i, y in enumerate(labels)],
        name="t",
        split="Training",
    )


def test_oversample_lists_each_positive_four_times():
    samples = _samples([0, 1, 0, 0, 1])
    out = oversample(samples)
    assert out.ids == [
        "ISIC_0000000",
        *["ISIC_0000001"] * 4,
        "ISIC_0000002",
        "ISIC_0000003",
        *["ISIC_0000004"] * 4,
    ]
    assert out.class_counts() == {0: 3, 1: 8} and out.meta["oversample_factor"] == 4 and out.name == "t"
    assert oversample(samples, factor=1).ids == samples.ids
    with pytest.raises(ValueError, match="factor"):
        oversample(samples, factor=0)


def test_weighted_sampler_balances_classes():
    labels = [1] * 10 + [0] * 90
    weights = class_weights(labels)
    assert weights[0] == pytest.approx(0.1) and weights[-1] == pytest.approx(1 / 90)
    sampler = weighted_sampler(labels, num_samples=4000, generator=torch.Generator().manual_seed(0))
    drawn = torch.tensor([labels[i] for i in sampler])
    assert len(drawn) == 4000
    assert 0.46 < drawn.float().mean().item() < 0.54  # ~ 0.5, against 0.1 without the sampler
    assert len(list(weighted_sampler(labels))) == 100
    with pytest.raises(ValueError, match="empty"):
        class_weights([])


def test_stratified_split_is_seeded_and_keeps_class_ratios():
    ids = [f"id{i}" for i in range(50)]
    labels = [int(i % 5 == 0) for i in range(50)]  # 10 positives, 40 negatives
    kept, held = stratified_split(ids, labels, 0.2, seed=3)
    assert sorted(kept + held) == sorted(ids) and not set(kept) & set(held)
    assert sum(labels[ids.index(i)] for i in held) == 2 and len(held) == 10
    assert stratified_split(ids, labels, 0.2, seed=3) == (kept, held)
    assert stratified_split(ids, labels, 0.2, seed=4) != (kept, held)
    assert held == [i for i in ids if i in set(held)]  # input order kept
    with pytest.raises(ValueError, match="unique"):
        stratified_split(["a", "a"], [0, 1], 0.5)
