"""The one table of dataset facts: reader, splits, normalisation, annotations, default passes per epoch.

Every other module asks this table instead of spelling a dataset out: the config validates ``dataset`` against
:func:`list_datasets`, the trainer, evaluation, prediction and the CLI read splits, statistics and readers from
:func:`get_dataset`. Adding a dataset is one :func:`register_dataset` call here plus its reader module.

This module imports nothing heavy (no torch, no PIL): ``attnmel.config`` and the CLI read it at start-up. Readers
are named as ``"module:function"`` and imported on first use.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ISIC2016_MEAN",
    "ISIC2016_STD",
    "ISIC2017_MEAN",
    "ISIC2017_STD",
    "DatasetSpec",
    "get_dataset",
    "list_datasets",
    "register_dataset",
]

# The authors' per-dataset statistics (their data loaders; docs/REFERENCE.md, Normalisation), [0, 1] scale.
ISIC2017_MEAN = (0.6820, 0.5312, 0.4736)
ISIC2017_STD = (0.0840, 0.1140, 0.1282)
ISIC2016_MEAN = (0.7012, 0.5517, 0.4875)
ISIC2016_STD = (0.0942, 0.1331, 0.1521)


@dataclass(frozen=True)
class DatasetSpec:
    """What the package knows about one dataset.

    Attributes:
        name: the key used in configs and on the command line.
        title: for tables and messages.
        reader: ``"module:function"`` with the signature ``fn(root, split, *, missing, verify) -> SampleList``.
        train_split, val_split: None for a test-only dataset (PH2).
        eval_splits: what a finished run is evaluated on by default.
        splits: every split the reader accepts.
        mean, std: input normalisation of models trained on this dataset.
        masks: annotations it has: ``"lesion"`` masks, ``"dermo"`` (Task 2 superpixels), ``"artifact"`` masks.
        default_passes: the authors' "epoch" in passes over the (oversampled) training list.
        generated: made by ``attnmel synth`` when no ``data_root`` is given (the synthetic set).
        source: where to get it.
    """

    name: str
    title: str
    reader: str
    train_split: str | None
    val_split: str | None
    eval_splits: tuple[str, ...]
    splits: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    masks: tuple[str, ...]
    default_passes: int = 1
    generated: bool = False
    source: str = ""

    @property
    def trainable(self) -> bool:
        return self.train_split is not None and self.val_split is not None

    def read(
        self, root: str | os.PathLike, split: str, *, missing: str = "error", verify: bool = False
    ) -> Any:
        """The split's SampleList (a DataError for a split this dataset does not have)."""
        from attnmel.data.samples import DataError

        if split not in self.splits:
            raise DataError(f"{self.name} has no split {split!r}; its splits are {list(self.splits)}")
        module, _, function = self.reader.partition(":")
        reader = getattr(importlib.import_module(module), function)
        return reader(root, split, missing=missing, verify=verify)


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the table (a ValueError if the name is taken)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    if spec.trainable and not (spec.train_split in spec.splits and spec.val_split in spec.splits):
        raise ValueError(f"dataset {spec.name!r}: its training and validation splits must be in splits")
    _REGISTRY[spec.name] = spec
    return spec


def list_datasets(*, trainable: bool | None = None) -> tuple[str, ...]:
    """Registered names in registration order; ``trainable=True`` keeps those with training splits."""
    return tuple(n for n, s in _REGISTRY.items() if trainable is None or s.trainable == trainable)


def get_dataset(name: str) -> DatasetSpec:
    """The spec of ``name``; a ValueError naming the known datasets (and the closest) otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown dataset {name!r}{hint}; datasets are {list(_REGISTRY)}") from None


register_dataset(
    DatasetSpec(
        name="synthetic",
        title="synthetic dermoscopy (attnmel synth)",
        reader="attnmel.data.isic:isic2017",  # written in the ISIC 2017 layout
        train_split="Training",
        val_split="Validation",
        eval_splits=("Validation", "Test_v2", "Test_shift"),
        splits=("Training", "Validation", "Test_v2", "Test_shift"),
        mean=ISIC2017_MEAN,  # the set imitates ISIC 2017 and uses its statistics
        std=ISIC2017_STD,
        masks=("lesion", "dermo", "artifact"),
        default_passes=1,
        generated=True,
        source="generated by `attnmel synth` (attnmel.data.synthetic)",
    )
)
register_dataset(
    DatasetSpec(
        name="isic2017",
        title="ISIC 2017",
        reader="attnmel.data.isic:isic2017",
        train_split="Training",
        val_split="Validation",
        eval_splits=("Validation", "Test_v2"),
        splits=("Training", "Validation", "Test_v2"),
        mean=ISIC2017_MEAN,
        std=ISIC2017_STD,
        masks=("lesion", "dermo"),
        default_passes=2,
        source="https://challenge.isic-archive.com/data/#2017",
    )
)
register_dataset(
    DatasetSpec(
        name="isic2016",
        title="ISIC 2016",
        reader="attnmel.data.isic:isic2016",
        train_split="Training",
        val_split="Validation",
        eval_splits=("Validation", "Test"),
        splits=("Training", "Validation", "Test"),
        mean=ISIC2016_MEAN,
        std=ISIC2016_STD,
        masks=("lesion",),
        default_passes=5,
        source="https://challenge.isic-archive.com/data/#2016",
    )
)
register_dataset(
    DatasetSpec(
        name="ph2",
        title="PH2 (external test set)",
        reader="attnmel.data.ph2:ph2_split",
        train_split=None,  # 200 images, no training split: the whole set is the test split
        val_split=None,
        eval_splits=("Test",),
        splits=("Test",),
        mean=ISIC2017_MEAN,  # only used if something normalises by the evaluation set; models keep their own
        std=ISIC2017_STD,
        masks=("lesion",),
        source="https://www.fc.up.pt/addi/ph2%20database.html",
    )
)
