"""The readers on the real ISIC data in ../shared/data (skipped when it is absent).

Counts are those of the data README: ISIC 2017 Training 2000 (374 melanoma), Validation 150 (30),
Test_v2 600 (117); ISIC 2016 Training 749 (144 malignant), Test 305 (63).
"""

from __future__ import annotations

import pytest
import torch

from attnmel.data import (
    ISIC2017_MEAN,
    ISIC2017_STD,
    LesionDataset,
    PreprocessCache,
    eval_transform,
    isic2016,
    isic2017,
    normalisation_stats,
    train_transform,
)


@pytest.fixture
def isic2017_dir(shared_data):
    root = shared_data / "isic2017"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return root


@pytest.fixture
def isic2016_dir(shared_data):
    root = shared_data / "isic2016"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return root


@pytest.mark.parametrize(
    ("split", "n", "melanoma", "masks"),
    [
        ("Training", 2000, 374, 2000),
        ("Validation", 150, 30, 150),
        ("Test_v2", 600, 117, 0),
    ],
)
def test_isic2017_counts(isic2017_dir, split, n, melanoma, masks):
    samples = isic2017(isic2017_dir, split)
    assert len(samples) == n and sum(samples.labels) == melanoma and samples.n_skipped == 0
    assert sum(s.lesion_mask_path is not None for s in samples) == masks
    assert len(set(samples.ids)) == n


def test_isic2016_counts_and_validation_partition(isic2016_dir):
    train, val = isic2016(isic2016_dir, "Training"), isic2016(isic2016_dir, "Validation")
    test = isic2016(isic2016_dir, "Test")
    assert len(train) + len(val) == 749 and sum(train.labels) + sum(val.labels) == 144
    assert len(val) == 150 and set(train.ids).isdisjoint(val.ids)
    assert len(test) == 305 and sum(test.labels) == 63
    # three training images have no Part 1 mask in this copy; pairing by id leaves them maskless
    assert train.meta["n_without_mask"] + val.meta["n_without_mask"] == 3


def test_real_items_through_the_pipeline(isic2017_dir, tmp_path):
    samples = isic2017(isic2017_dir, "Training")[:4]
    cached = LesionDataset(
        samples, eval_transform(64, 73), roi="lesion", cache=PreprocessCache(tmp_path, resize=73)
    )
    plain = LesionDataset(samples, eval_transform(64, 73), roi="lesion")
    for i in range(4):
        a, b = cached[i], plain[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert a["has_mask"] and 0 < a["mask"].mean() < 1
    batch = LesionDataset(samples, train_transform(64, 73), roi="background")[0]
    assert batch["image"].shape == (3, 64, 64) and torch.equal(batch["roi"], 1 - batch["mask"])


def test_fullres_images_decode(shared_data, tmp_path):
    root = shared_data / "isic2017-fullres"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    samples = isic2017(root, "Training")
    assert len(samples) == 60 and sum(samples.labels) == 30
    largest = max(samples, key=lambda s: s.image_path.stat().st_size)
    item = LesionDataset(
        [largest], eval_transform(64, 73), roi="lesion", cache=PreprocessCache(tmp_path, resize=73)
    )[0]
    assert item["image"].shape == (3, 64, 64) and item["has_mask"]


def test_normalisation_stats_land_near_the_authors(isic2017_dir):
    samples = isic2017(isic2017_dir, "Training")[::25]  # 80 images: a smoke check of the recipe
    stats = normalisation_stats(samples, size=64, resize=73, seed=0)
    assert stats.n_images == 80
    assert torch.allclose(torch.tensor(stats.mean), torch.tensor(ISIC2017_MEAN), atol=0.07)
    assert torch.allclose(torch.tensor(stats.std), torch.tensor(ISIC2017_STD), atol=0.03)
    assert all(s < p for s, p in zip(stats.std, stats.pooled_std, strict=True))  # per-image std < pooled std
