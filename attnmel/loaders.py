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
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler, get_worker_info

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
    "item_seed",
    "EpochLoader",
    "close_loader",
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
            color_constancy=config.color_constancy,
        )
    else:
        transform = data.eval_transform(
            config.image_size, config.resize, mean, std, color_constancy=config.color_constancy
        )
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


def item_seed(epoch_seed: int, position: int) -> int:
    """The seed of the item at ``position`` in an epoch's order: its augmentation depends on nothing else."""
    return (epoch_seed * 0x9E3779B97F4A7C15 + position) % (2**63 - 1)


class _EpochOrder(Sampler):
    """The sampler of an :class:`EpochLoader`: this epoch's order, each index paired with its item's seed.

    It lives in the main process, so setting the next epoch's order reaches persistent workers: they receive
    ``(index, seed)`` keys, never the sampler.
    """

    def __init__(self) -> None:
        self.order: Sampler | None = None
        self.seed = 0

    def set(self, order: Sampler, seed: int) -> None:
        self.order, self.seed = order, seed

    def __iter__(self):
        if self.order is None:
            raise RuntimeError("EpochLoader.epoch(order, seed) must be called before iterating the loader")
        return ((int(i), item_seed(self.seed, k)) for k, i in enumerate(self.order))

    def __len__(self) -> int:
        return 0 if self.order is None else len(self.order)


class _SeededItems(Dataset):
    """``dataset[index]`` drawn with the CPU RNG seeded to the item's own seed.

    In a worker the RNG serves this loader alone; in the main process (no workers) its state is put back
    afterwards, so mixup and the model's own draws are untouched.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        generator = torch.default_generator  # the CPU RNG the transforms draw from (not CUDA's)
        if get_worker_info() is not None:
            generator.manual_seed(seed)
            return self.dataset[index]
        state = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            generator.set_state(state)


class EpochLoader:
    """The training DataLoader of a whole run: its workers start once and serve every epoch.

    Starting ``num_workers`` processes each epoch cost more than a short epoch's steps on a GPU (issue 12), so
    the workers persist. :meth:`epoch` sets an epoch's order and seed; each item is augmented from
    :func:`item_seed` of that seed and its position in the order. The views therefore depend on (seed, epoch)
    only, not on the number of workers or which worker drew an item, and a resumed epoch repeats exactly.
    """

    def __init__(self, config: TrainConfig, dataset: Any, *, batch_size: int, device: torch.device) -> None:
        self.order = _EpochOrder()
        workers = config.num_workers
        self.loader = DataLoader(
            _SeededItems(dataset),
            batch_size=batch_size,
            sampler=self.order,
            num_workers=workers,
            pin_memory=config.pin_memory and device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            generator=torch.Generator().manual_seed(0),  # its own base-seed draws, not the global RNG's
        )

    def epoch(self, order: Sampler, seed: int) -> DataLoader:
        """The loader, set to yield ``order``'s items (dataset indices) augmented from ``seed``."""
        self.order.set(order, seed)
        return self.loader

    def close(self) -> None:
        close_loader(self.loader)


def close_loader(loader: DataLoader) -> None:
    """Stop a loader's persistent workers now, not whenever the garbage collector finds them."""
    iterator = getattr(loader, "_iterator", None)  # where DataLoader keeps a persistent worker pool
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


def make_loader(
    config: TrainConfig,
    dataset: Any,
    *,
    sampler: Sampler,
    batch_size: int,
    device: torch.device,
    seed: int,
    persistent: bool = False,
) -> DataLoader:
    """A DataLoader with ``config.num_workers`` workers seeded from ``seed``, pinned memory on CUDA.

    ``persistent``: the workers outlive each pass (for a loader iterated every epoch, such as validation's);
    stop them with :func:`close_loader`.
    """
    workers = config.num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=config.pin_memory and device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),  # seeds the worker processes' RNGs
        persistent_workers=persistent and workers > 0,
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
