"""From a TrainConfig to samples, datasets and DataLoaders: the one place that builds data.

The trainer, evaluation, prediction, the chapters' interpretation code and the experiments all build their data
here, so evaluation does not depend on training. Dataset facts (reader, splits, normalisation) come from the
dataset table, :mod:`attnmel.data.registry`.

A model keeps the input normalisation of the dataset it was trained on: evaluating an ISIC 2017 model on PH2 or
ISIC 2016 normalises with ISIC 2017's statistics (``normalise_as``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from attnmel.config import TrainConfig
from attnmel.data.registry import get_dataset

__all__ = [
    "normalisation",
    "ensure_synthetic",
    "load_split",
    "make_dataset",
    "check_gpu_decode",
    "fill_cache_on_gpu",
    "epoch_seed",
    "train_sampler",
    "make_loader",
    "split_loader",
]


def normalisation(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of models trained on ``dataset`` (the authors' per-dataset statistics)."""
    spec = get_dataset(dataset)
    return tuple(spec.mean), tuple(spec.std)


def ensure_synthetic(config: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """The dataset folder; for a generated (synthetic) dataset without data_root, make the set once (atomically)."""
    root = config.resolved_data_root()
    if not get_dataset(config.dataset).generated or config.data_root is not None:
        return root
    if (root / "ISIC-2017_Training_Part3_GroundTruth.csv").is_file():
        return root
    from attnmel.data import make_synthetic

    log(f"generating the synthetic set ({config.synthetic_n} images, {config.synthetic_size} px) in {root}")
    try:  # make_synthetic builds the set in a staging folder and moves it into place in one step
        make_synthetic(
            root,
            n=config.synthetic_n,
            size=config.synthetic_size,
            seed=config.synthetic_seed,
            artifact_bias=config.synthetic_artifact_bias,
            difficulty=config.synthetic_difficulty,
        )
    except Exception:
        if not (
            root / "ISIC-2017_Training_Part3_GroundTruth.csv"
        ).is_file():  # not just another process first
            raise
    return root


def load_split(config: TrainConfig, root: Path, split: str, limit: int | None = None) -> Any:
    """Read one split as a SampleList; ``limit`` keeps a seeded random subset of that size (order kept)."""
    samples = get_dataset(config.dataset).read(root, split, missing=config.missing)
    if limit is not None and limit < len(samples):
        rng = random.Random(f"{config.seed}-{split}")
        keep = sorted(rng.sample(range(len(samples)), limit))
        samples = samples.derive([samples[i] for i in keep], subset_of=len(samples))
    return samples


def check_gpu_decode(device: torch.device) -> None:
    if device.type != "cuda":
        raise ValueError(
            f"gpu_jpeg_decode=True needs a CUDA device; this run uses {device} (set it to False)"
        )


def fill_cache_on_gpu(device: torch.device, datasets: Sequence[Any], log: Callable[[str], None]) -> None:
    """``gpu_jpeg_decode``: create the datasets' missing cache entries with nvJPEG before the first epoch.

    Decoding the full-size JPEGs is the slow part of the data pipeline (``benchmarks/bench_data.py``); done
    once on the GPU, every epoch after reads the small cached crops on the CPU workers.
    """
    check_gpu_decode(device)
    for dataset in datasets:
        counts = dataset.cache.fill(dataset.samples, dermo=dataset.roi == "dermo", device=device)
        log(
            f"cache: {counts['decoded']} JPEG(s) decoded on {counts['device']}, {counts['other']} other file(s) "
            f"on the CPU, {counts['present']} already cached ({counts['seconds']:.1f} s)"
        )


def make_dataset(config: TrainConfig, samples: Any, *, train: bool, normalise_as: str | None = None) -> Any:
    """A LesionDataset with the train (random crop, rotations, flips) or eval (centre crop) transform.

    ``normalise_as``: the dataset whose statistics normalise the input (default ``config.dataset``); pass the
    training dataset when a model is evaluated on another one.
    """
    from attnmel import data

    mean, std = normalisation(normalise_as or config.dataset)
    if train:
        transform = data.train_transform(
            config.image_size,
            config.resize,
            mean,
            std,
            crop_scale=config.crop_scale,
            color_jitter=config.color_jitter,
        )
    else:
        transform = data.eval_transform(config.image_size, config.resize, mean, std)
    cache = None
    cache_dir = config.resolved_cache_dir()
    if cache_dir is not None:
        cache = data.PreprocessCache(cache_dir, resize=config.resize)
    return data.LesionDataset(samples, transform, roi=config.roi if train else None, cache=cache)


def epoch_seed(config: TrainConfig, epoch: int, rank: int) -> int:
    """The seed of epoch ``epoch`` on process ``rank``: data order and augmentation depend on nothing else."""
    return (config.seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2**63 - 1)


def train_sampler(config: TrainConfig, dataset: Any, labels: list[int], epoch: int, info: Any) -> Sampler:
    """This epoch's order: ``passes`` x the list, shuffled from (seed, epoch); sharded under DDP."""
    passes = config.epoch_passes
    n = len(dataset)
    if info.enabled:
        if config.sampler == "weighted":
            raise ValueError("sampler='weighted' is not supported under DDP; use 'oversample' or 'none'")
        sampler = DistributedSampler(
            _Repeat(n, passes), num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed
        )
        sampler.set_epoch(epoch)
        return _Modulo(sampler, n)
    gen = torch.Generator().manual_seed(epoch_seed(config, epoch, 0))
    if config.sampler == "weighted":
        from attnmel.data.sampling import weighted_sampler

        return weighted_sampler(labels, num_samples=n * passes, generator=gen)
    return RandomSampler(range(n), num_samples=n * passes, generator=gen)


class _Repeat:
    """A length-only stand-in for ``passes`` copies of a dataset (what DistributedSampler needs)."""

    def __init__(self, n: int, passes: int) -> None:
        self.n, self.passes = n, passes

    def __len__(self) -> int:
        return self.n * self.passes


class _Modulo(Sampler):
    """Map indices over the repeated list back to dataset indices."""

    def __init__(self, inner: Sampler, n: int) -> None:
        self.inner, self.n = inner, n

    def __iter__(self):
        return (i % self.n for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def make_loader(
    config: TrainConfig, dataset: Any, *, sampler: Sampler, batch_size: int, device: torch.device, seed: int
) -> DataLoader:
    """The DataLoader of the trainer: ``config.num_workers`` workers seeded from ``seed``, pinned memory on CUDA."""
    workers = config.num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=config.pin_memory and device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),  # seeds the worker processes' RNGs
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )


def split_loader(
    config: TrainConfig,
    split: str,
    *,
    limit: int | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    device: torch.device | None = None,
    normalise_as: str | None = None,
) -> DataLoader:
    """An ordered loader over ``split`` of ``config``'s dataset with the eval transform (centre crop).

    ``limit`` keeps a seeded subset of that many samples (``config.seed``); memory is pinned for CUDA;
    ``normalise_as`` as in :func:`make_dataset`.
    """
    samples = load_split(config, config.resolved_data_root(), split, limit)
    data = make_dataset(config, samples, train=False, normalise_as=normalise_as)
    pin = device is not None and device.type == "cuda"
    return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin)
