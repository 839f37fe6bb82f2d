"""Data: readers for the official ISIC 2016 / 2017 and PH2 layouts, transforms, caching, class balance.

See ``docs/DESIGN.md`` (Data) for the contracts: readers return a :class:`SampleList` of frozen
:class:`Sample` records paired by image id; :class:`LesionDataset` turns them into dicts of tensors.
"""

from .cache import PreprocessCache
from .dataset import ROI_KINDS, LesionDataset, read_sample
from .dermo import DERMO_THRESHOLD, FEATURE_NAMES, dermo_roi, load_features, load_superpixels
from .images import image_size, load_mask, load_rgb
from .isic import ISIC2016_SPLITS, ISIC2017_SPLITS, isic2016, isic2017, isic2017_splits
from .ph2 import ph2
from .preview import preview_sample, training_views
from .samples import DataError, Sample, SampleList, unwrap_worker_error
from .sampling import class_weights, oversample, stratified_split, weighted_sampler
from .stats import NormStats, normalisation_stats
from .summary import artifact_table, split_summary
from .synthetic import make_synthetic
from .transforms import (
    ISIC2016_MEAN,
    ISIC2016_STD,
    ISIC2017_MEAN,
    ISIC2017_STD,
    BinariseMasks,
    CentreCropFraction,
    Preprocess,
    RandomRotate90,
    default_resize,
    eval_geometry,
    eval_transform,
    preprocess_transform,
    split_preprocess,
    train_geometry,
    train_transform,
)

__all__ = [
    "preview_sample",
    "training_views",
    "split_summary",
    "artifact_table",
    "train_geometry",
    "eval_geometry",
    "DataError",
    "unwrap_worker_error",
    "Sample",
    "SampleList",
    "isic2017",
    "isic2016",
    "isic2017_splits",
    "ISIC2017_SPLITS",
    "ISIC2016_SPLITS",
    "ph2",
    "make_synthetic",
    "LesionDataset",
    "read_sample",
    "ROI_KINDS",
    "PreprocessCache",
    "dermo_roi",
    "load_features",
    "load_superpixels",
    "FEATURE_NAMES",
    "DERMO_THRESHOLD",
    "load_rgb",
    "load_mask",
    "image_size",
    "oversample",
    "weighted_sampler",
    "class_weights",
    "stratified_split",
    "NormStats",
    "normalisation_stats",
    "ISIC2017_MEAN",
    "ISIC2017_STD",
    "ISIC2016_MEAN",
    "ISIC2016_STD",
    "train_transform",
    "eval_transform",
    "preprocess_transform",
    "default_resize",
    "split_preprocess",
    "Preprocess",
    "CentreCropFraction",
    "RandomRotate90",
    "BinariseMasks",
]
