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


# ------------------------------------------------------------------ fill(): batched decoding (nvJPEG on CUDA)
def _entries(cache, samples, dermo=False):
    return [cache.load(s, dermo=dermo) for s in samples]


def test_fill_writes_the_entries_that_load_then_reads(isic2017_root, tmp_path):
    samples = isic2017(isic2017_root)
    filled = PreprocessCache(tmp_path / "filled", resize=20)
    counts = filled.fill(list(samples) + list(samples[:2]), dermo=True, batch_size=4)  # duplicates: once
    assert (counts["present"], counts["decoded"], counts["other"], counts["device"]) == (0, 6, 0, "cpu")
    reader = PreprocessCache(tmp_path / "filled", resize=20)
    got = _entries(reader, samples, dermo=True)
    assert (reader.hits, reader.misses) == (6, 0)  # every entry was there and valid
    expected = _entries(PreprocessCache(tmp_path / "pil", resize=20), samples, dermo=True)
    for a, b in zip(got, expected, strict=True):
        assert a.keys() == b.keys() == {"image", "mask", "dermo"}
        assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["dermo"], b["dermo"])  # masks: same PNGs
        assert (a["image"].int() - b["image"].int()).abs().max() <= 2  # two JPEG decoders, flat colours
    assert filled.fill(samples, dermo=True)["present"] == 6  # a second fill has nothing to do


def test_a_bad_file_stops_the_fill_with_its_name_and_leaves_no_partial_entry(tmp_path, monkeypatch):
    from attnmel.data import DataError, Sample

    samples = []
    for i in range(12):  # more than a batch and more than the threads, so the bad one is mid-way
        path = tmp_path / f"lesion{i}.jpg"
        Image.fromarray(np.full((30, 40, 3), 20 * i, np.uint8)).save(path, quality=90)
        mask = tmp_path / f"lesion{i}_segmentation.png"
        Image.fromarray(np.zeros((30 if i != 7 else 31, 40), np.uint8)).save(mask)  # lesion 7: wrong size
        samples.append(Sample(image_id=f"lesion{i}", image_path=path, label=0, lesion_mask_path=mask))
    fsyncs = []
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd))
    cache = PreprocessCache(tmp_path / "cache", resize=16)
    with pytest.raises(DataError, match=r"lesion7_segmentation.png: mask size 40x31 differs from image"):
        cache.fill(samples, batch_size=4, threads=3)
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix == ".tmp"]
    assert leftovers == []  # every entry on disk is whole; the fill can simply be run again
    assert fsyncs == []  # cache entries are recomputable and checked on read: atomic, but not fsynced
    del samples[7]
    counts = cache.fill(samples, threads=3)
    assert counts["present"] + counts["decoded"] == 11 and counts["other"] == 0


def test_fill_reads_other_formats_on_the_cpu_exactly_as_load(tmp_path):
    from attnmel.data import Sample

    path = tmp_path / "lesion.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    sample = Sample(image_id="lesion", image_path=path, label=1)
    counts = PreprocessCache(tmp_path / "a", resize=16).fill([sample])
    assert (counts["decoded"], counts["other"]) == (0, 1)
    assert torch.equal(
        PreprocessCache(tmp_path / "a", resize=16).load(sample)["image"],
        PreprocessCache(tmp_path / "b", resize=16).load(sample)["image"],
    )


def test_textured_jpegs_decode_within_a_few_grey_levels_of_pil(tmp_path):
    from attnmel.data import Sample

    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(60, 220, (12, 16, 3)), np.ones((25, 25, 1)))  # (300, 400, 3) blocks
    noisy = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "lesion.jpg"
    Image.fromarray(noisy).save(path, quality=90)
    sample = Sample(image_id="lesion", image_path=path, label=0)
    PreprocessCache(tmp_path / "tv", resize=64).fill([sample])
    a = PreprocessCache(tmp_path / "tv", resize=64).load(sample)["image"].int()
    b = PreprocessCache(tmp_path / "pil", resize=64).load(sample)["image"].int()
    difference = (a - b).abs().float()
    assert difference.mean() < 1.0 and difference.max() <= 8, (difference.mean(), difference.max())


def test_decode_jpegs_names_the_bad_file(tmp_path):
    from attnmel.data import DataError
    from attnmel.data.images import decode_jpegs

    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(good, quality=90)
    assert [tuple(t.shape) for t in decode_jpegs([good, good])] == [(3, 20, 30)] * 2
    png = tmp_path / "mask.jpg"  # a PNG behind a .jpg name
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png, format="PNG")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match="mask.jpg: not a JPEG"):
        decode_jpegs([good, png])
    with pytest.raises(DataError, match="missing.jpg: image file not found"):
        decode_jpegs([tmp_path / "missing.jpg"])
    with pytest.raises(DataError, match="cut.jpg"):
        decode_jpegs([good, truncated])


def test_read_sample_checks_a_given_image_against_the_mask(isic2017_root):
    from attnmel.data import DataError
    from attnmel.data.dataset import read_sample

    sample = isic2017(isic2017_root)[0]
    height, width = read_sample(sample)["image"].shape[-2:]
    with pytest.raises(DataError, match="mask size"):
        read_sample(sample, image=torch.zeros(3, height + 1, width, dtype=torch.uint8))
    with pytest.raises(DataError, match="uint8 \\(3, H, W\\)"):
        read_sample(sample, image=torch.zeros(height, width, 3, dtype=torch.uint8))
