"""Data: readers for the official ISIC 2016 / 2017 and PH2 layouts, transforms, caching, class balance.

See ``docs/DESIGN.md`` (Data) for the contracts: readers return a :class:`SampleList` of frozen
:class:`Sample` records paired by image id; :class:`LesionDataset` turns them into dicts of tensors.

Names are imported on first use (PEP 562), so ``attnmel.data.registry`` and ``attnmel.config`` stay cheap to
import: nothing here pulls in torch until a reader, dataset or transform is used.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "PreprocessCache": "cache",
    "ROI_KINDS": "dataset",
    "LesionDataset": "dataset",
    "read_sample": "dataset",
    "DERMO_THRESHOLD": "dermo",
    "FEATURE_NAMES": "dermo",
    "dermo_roi": "dermo",
    "load_features": "dermo",
    "load_superpixels": "dermo",
    "image_size": "images",
    "load_mask": "images",
    "load_rgb": "images",
    "ISIC2016_SPLITS": "isic",
    "ISIC2017_SPLITS": "isic",
    "isic2016": "isic",
    "isic2017": "isic",
    "isic2017_splits": "isic",
    "ph2": "ph2",
    "preview_sample": "preview",
    "training_views": "preview",
    "DataError": "samples",
    "Sample": "samples",
    "SampleList": "samples",
    "unwrap_worker_error": "samples",
    "class_weights": "sampling",
    "oversample": "sampling",
    "stratified_split": "sampling",
    "weighted_sampler": "sampling",
    "NormStats": "stats",
    "normalisation_stats": "stats",
    "artifact_table": "summary",
    "split_summary": "summary",
    "make_synthetic": "synthetic",
    "ISIC2016_MEAN": "registry",
    "ISIC2016_STD": "registry",
    "ISIC2017_MEAN": "registry",
    "ISIC2017_STD": "registry",
    "BinariseMasks": "transforms",
    "CentreCropFraction": "transforms",
    "Preprocess": "transforms",
    "RandomRotate90": "transforms",
    "default_resize": "transforms",
    "eval_geometry": "transforms",
    "eval_transform": "transforms",
    "preprocess_transform": "transforms",
    "split_preprocess": "transforms",
    "train_geometry": "transforms",
    "train_augmentation": "transforms",
    "colour_jitter": "transforms",
    "ShadesOfGray": "transforms",
    "shades_of_gray": "transforms",
    "train_transform": "transforms",
    "DatasetSpec": "registry",
    "get_dataset": "registry",
    "list_datasets": "registry",
    "register_dataset": "registry",
    "ph2_split": "ph2",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
