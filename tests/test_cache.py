"""PreprocessCache: identical to the uncached path, reused when warm, rebuilt when stale or corrupt, atomic."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from attnmel.data import LesionDataset, PreprocessCache, eval_transform, isic2017, train_transform
from attnmel.data import cache as cache_module


def _items_equal(a, b):
    return (
        all(torch.equal(a[k], b[k]) for k in ("image", "mask", "roi", "label"))
        and a["has_mask"] == b["has_mask"]
    )


@pytest.mark.parametrize("roi", ["lesion", "dermo"])
def test_cached_items_equal_uncached_items(isic2017_root, tmp_path, roi):
    samples = isic2017(isic2017_root)
    cache = PreprocessCache(tmp_path / "cache", resize=20)
    plain = LesionDataset(samples, eval_transform(16, 20), roi=roi)
    cached = LesionDataset(samples, eval_transform(16, 20), roi=roi, cache=cache)
    for i in range(len(samples)):
        assert _items_equal(plain[i], cached[i])  # cold
        assert _items_equal(plain[i], cached[i])  # warm
    assert (cache.misses, cache.hits) == (6, 6)
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 6


def test_warm_entries_are_not_decoded_again(isic2017_root, tmp_path, monkeypatch):
    samples = isic2017(isic2017_root)
    dataset = LesionDataset(
        samples, train_transform(16, 20), cache=PreprocessCache(tmp_path / "c", resize=20)
    )
    for i in range(len(dataset)):
        dataset[i]

    def fail(*args, **kwargs):
        raise AssertionError("decoded a source file although the cache is warm")

    monkeypatch.setattr(cache_module, "read_sample", fail)
    assert all(dataset[i]["image"].shape == (3, 16, 16) for i in range(len(dataset)))


def test_a_changed_source_is_processed_again(isic2017_root, tmp_path):
    samples = isic2017(isic2017_root)
    cache = PreprocessCache(tmp_path / "c", resize=20)
    before = cache.load(samples[1])["image"].clone()
    key = cache.key(samples[1])
    path = samples[1].image_path
    Image.new("RGB", (40, 30), (250, 10, 10)).save(path, quality=95)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cache.key(samples[1]) != key
    after = cache.load(samples[1])["image"]
    assert cache.misses == 2 and not torch.equal(before, after)
    assert abs(int(after[0].float().mean()) - 250) <= 3


def test_a_corrupt_entry_is_recomputed(isic2017_root, tmp_path):
    samples = isic2017(isic2017_root)
    cache = PreprocessCache(tmp_path / "c", resize=20)
    good = cache.load(samples[0])
    entry = cache.path(cache.key(samples[0]))
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    again = cache.load(samples[0])
    assert cache.rebuilt == 1 and torch.equal(again["image"], good["image"])
    np.savez(
        entry, key=np.frombuffer(b"another key", dtype=np.uint8), image=good["image"].numpy()
    )  # wrong key
    assert torch.equal(cache.load(samples[0])["image"], good["image"]) and cache.rebuilt == 2
    assert cache.load(samples[0])["mask"].shape == (1, 20, 20) and cache.hits == 1


def test_a_failed_write_leaves_no_entry_and_no_temp_file(isic2017_root, tmp_path, monkeypatch):
    samples = isic2017(isic2017_root)
    cache = PreprocessCache(tmp_path / "c", resize=20)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.load(samples[0])
    monkeypatch.undo()
    assert [p for p in (tmp_path / "c").rglob("*") if p.is_file()] == []
    # a stray temporary file from a killed writer is never taken for an entry
    entry = cache.path(cache.key(samples[0]))
    (entry.parent / f".{entry.name}.abc.tmp").write_bytes(b"half")
    assert cache.load(samples[0])["image"].shape == (3, 20, 20) and cache.misses == 2 and cache.hits == 0


def test_keys_depend_on_resize_and_components(isic2017_root, tmp_path):
    sample = isic2017(isic2017_root)[0]
    small, large = PreprocessCache(tmp_path, resize=20), PreprocessCache(tmp_path, resize=24)
    assert small.key(sample) != large.key(sample)
    assert small.key(sample) != small.key(sample, dermo=True)
    assert large.load(sample, dermo=True)["dermo"].shape == (1, 24, 24)


def test_cache_and_transform_must_agree(isic2017_root, tmp_path):
    samples = isic2017(isic2017_root)
    with pytest.raises(ValueError, match="resize=20.*resize=24"):
        LesionDataset(samples, eval_transform(16, 20), cache=PreprocessCache(tmp_path, resize=24))
    with pytest.raises(ValueError, match="starts with Preprocess"):
        LesionDataset(samples, lambda parts: parts, cache=PreprocessCache(tmp_path, resize=20))
