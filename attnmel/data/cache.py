"""PreprocessCache: the paper's centre crop (0.8 x min side) and resize, done once per image and stored.

Decoding a full-size ISIC JPEG (up to 3072 x 2304, ~ 7 M pixels) every epoch dominates the data pipeline; the
crop + resize result is small (256 x 256). Each entry is one uncompressed ``.npz`` holding the uint8 image
(3, R, R) and, when present, the lesion mask and Dermo ROI (1, R, R) in {0, 1}, all through the same
:class:`~attnmel.data.transforms.Preprocess` as the uncached path, so cached and uncached items are identical.

Key: SHA-256 of the absolute path, ``mtime_ns`` and size of every source file (image, mask, Task 2 files), plus
``resize``, the crop fraction and a format version; a changed source gives a new key and is processed again.
Entries are written atomically (:mod:`attnmel.io`), so a half-written entry is never visible under its name;
an entry that fails to load or whose contents do not match the key is recomputed and overwritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from attnmel.io import atomic_write_bytes

from .dataset import read_sample
from .samples import Sample
from .transforms import CROP_FRACTION, Preprocess

__all__ = ["PreprocessCache"]

CACHE_VERSION = 1


class PreprocessCache:
    """A folder of preprocessed samples. Safe to share between DataLoader workers and processes.

    Args:
        folder: where entries live (created on demand), as ``<folder>/<key[:2]>/<key>.npz``.
        resize: side after the crop (must match the transform's :class:`Preprocess`).
        fraction: centre-crop fraction of the shorter side.

    Attributes:
        hits, misses, rebuilt: counters for this process (rebuilt = unreadable entries recomputed).
    """

    def __init__(self, folder: str | os.PathLike, resize: int = 256, fraction: float = CROP_FRACTION) -> None:
        self.folder = Path(folder)
        self.resize = resize
        self.fraction = fraction
        self.preprocess = Preprocess(resize, fraction)
        self.hits = self.misses = self.rebuilt = 0

    def __repr__(self) -> str:
        return f"PreprocessCache({str(self.folder)!r}, resize={self.resize}, fraction={self.fraction})"

    def key(self, sample: Sample, *, dermo: bool = False) -> str:
        """The entry key: hash of the source files' absolute paths, mtimes and sizes, and the preprocessing."""
        sources = [sample.image_path, sample.lesion_mask_path]
        if dermo:
            sources += [sample.superpixels_path, sample.features_path]
        stats = []
        for path in sources:
            if path is None:
                stats.append(None)
                continue
            st = os.stat(path)
            stats.append([os.path.abspath(path), st.st_mtime_ns, st.st_size])
        description = {
            "version": CACHE_VERSION,
            "resize": self.resize,
            "fraction": self.fraction,
            "dermo": dermo,
            "sources": stats,
        }
        return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def load(self, sample: Sample, *, dermo: bool = False) -> dict[str, torch.Tensor]:
        """Preprocessed uint8 tensors: ``image`` (3, R, R), ``mask`` (1, R, R) if the sample has one,
        ``dermo`` (1, R, R) if requested. Computed and stored on a miss."""
        key = self.key(sample, dermo=dermo)
        entry = self.path(key)
        if entry.is_file():
            parts = self._read(entry, key, dermo)
            if parts is not None:
                self.hits += 1
                return parts
            self.rebuilt += 1
        self.misses += 1
        parts = self.preprocess(read_sample(sample, dermo=dermo))
        arrays = {name: t.as_subclass(torch.Tensor).numpy() for name, t in parts.items()}
        buffer = io.BytesIO()
        np.savez(buffer, key=np.frombuffer(key.encode(), dtype=np.uint8), **arrays)
        atomic_write_bytes(entry, buffer.getvalue())
        return {name: torch.from_numpy(a) for name, a in arrays.items()}

    def _read(self, entry: Path, key: str, dermo: bool) -> dict[str, torch.Tensor] | None:
        """The entry's tensors, or None when it is unreadable or inconsistent (then it is recomputed)."""
        try:
            with np.load(entry, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
            return None
        if bytes(arrays.pop("key", np.zeros(0, np.uint8))).decode(errors="replace") != key:
            return None
        side = self.resize
        expected = {"image": (3, side, side), "mask": (1, side, side), "dermo": (1, side, side)}
        if "image" not in arrays or (dermo and "dermo" not in arrays):
            return None
        for name, array in arrays.items():
            if name not in expected or array.shape != expected[name] or array.dtype != np.uint8:
                return None
        return {name: torch.from_numpy(a) for name, a in arrays.items()}
