"""ISIC 2017 Task 2 dermoscopic features -> the binary Dermo ROI of AttnMel-CNN-Dermo (paper, Sec. 3 and fn. 2).

Task 2 gives, per image, a superpixel map ``<id>_superpixels.png`` whose pixel colour encodes a superpixel index
``R + (G << 8) + (B << 16)``, and ``<id>_features.json``: an object with keys ``pigment_network``,
``negative_network``, ``milia_like_cyst`` and ``streaks``, each a list holding one value per superpixel. The paper
converts superpixel labels to pixel labels as Kawahara and Hamarneh did (each pixel takes its superpixel's label)
and uses the union over the four features as the reference map of Eq. 4.

Threshold: a superpixel belongs to the Dermo ROI when **any** of the four feature values is ``>= 0.5``. The
official annotations are 0/1, so this equals "any feature present"; 0.5 also makes soft (averaged) labels behave
like a majority vote.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .images import load_rgb
from .samples import DataError

__all__ = [
    "FEATURE_NAMES",
    "DERMO_THRESHOLD",
    "decode_superpixels",
    "load_superpixels",
    "load_features",
    "dermo_roi",
]

FEATURE_NAMES = ("pigment_network", "negative_network", "milia_like_cyst", "streaks")
DERMO_THRESHOLD = 0.5


def decode_superpixels(rgb: np.ndarray) -> np.ndarray:
    """Superpixel index of each pixel: uint8 (H, W, 3) -> int64 (H, W), ``R + (G << 8) + (B << 16)``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)


def load_superpixels(path: str | os.PathLike) -> np.ndarray:
    """Read a Task 2 superpixel PNG. Returns int64 (H, W) superpixel indices."""
    return decode_superpixels(load_rgb(path))


def load_features(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate a Task 2 features JSON. Returns ``{name: float64 (n_superpixels,)}`` for the 4 features."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: features JSON not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(
            f"{path}: expected a JSON object with keys {list(FEATURE_NAMES)}, got {type(obj).__name__}"
        )
    missing = [k for k in FEATURE_NAMES if k not in obj]
    if missing:
        raise DataError(f"{path}: missing feature keys {missing} (found {sorted(obj)})")
    features: dict[str, np.ndarray] = {}
    for name in FEATURE_NAMES:
        values = obj[name]
        if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            raise DataError(f"{path}: {name!r} must be a list of finite numbers")
        arr = np.asarray(values, dtype=np.float64)
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise DataError(f"{path}: {name!r} has values outside [0, 1] (min {arr.min()}, max {arr.max()})")
        features[name] = arr
    lengths = {name: len(arr) for name, arr in features.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{path}: feature lists differ in length {lengths}")
    return features


def dermo_roi(
    superpixels_path: str | os.PathLike,
    features_path: str | os.PathLike,
    threshold: float = DERMO_THRESHOLD,
) -> np.ndarray:
    """Union of the four dermoscopic features as a pixel mask. Returns uint8 (H, W) in {0, 1}.

    A superpixel is in the ROI when any feature value is ``>= threshold`` (default 0.5).
    """
    index = load_superpixels(superpixels_path)  # (H, W)
    features = load_features(features_path)
    per_superpixel = np.zeros(len(features[FEATURE_NAMES[0]]), dtype=bool)  # (n_superpixels,)
    for values in features.values():
        per_superpixel |= values >= threshold
    top = int(index.max())
    if top >= len(per_superpixel):
        raise DataError(
            f"{superpixels_path}: superpixel index {top} is out of range for {features_path}, "
            f"which lists {len(per_superpixel)} superpixels"
        )
    return per_superpixel[index].astype(np.uint8)
