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
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnmel.io import atomic_write_bytes
from attnmel.progress import bar

from .dataset import read_sample
from .images import decode_jpegs, is_plain_jpeg
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
        return self._store(entry, key, self.preprocess(read_sample(sample, dermo=dermo)))

    def fill(
        self,
        samples: Sequence[Sample],
        *,
        dermo: bool = False,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        progress: bool = True,
        threads: int | None = None,
    ) -> dict[str, Any]:
        """Create the missing entries of ``samples`` now, decoding JPEGs in batches on ``device``.

        With ``device="cuda"`` the 8-bit colour / grey JPEGs are decoded by nvJPEG and cropped and resized on
        the GPU (the optional GPU decoding of the training pipeline); other files (PNG, BMP, TIFF, CMYK JPEG)
        and the masks are read on the CPU by :func:`~attnmel.data.images.load_rgb`, as :meth:`load` does.
        Entries are the same as :meth:`load` would write, up to the decoders' rounding (IDCT and resampling
        differ by a few grey levels between libjpeg-turbo, nvJPEG and PIL). Returns counts: ``present``
        (already cached), ``decoded`` (JPEGs decoded on ``device``), ``other`` (read on the CPU) and
        ``seconds``. ``progress``: a bar over the new entries on stderr when someone watches
        (:func:`attnmel.progress.watching`). ``threads`` (default: the CPU count, at most 8) read the masks,
        preprocess and write the entries while the next batch of JPEGs is decoded; the first error (a
        DataError naming the file) stops the fill.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = torch.device(device)
        start = time.perf_counter()
        todo, present, seen = [], 0, set()
        for sample in samples:
            key = self.key(sample, dermo=dermo)
            if key in seen:  # an oversampled list names a sample several times
                continue
            seen.add(key)
            if self.path(key).is_file() and self._read(self.path(key), key, dermo) is not None:
                present += 1
            else:
                todo.append((sample, key))
        jpegs, others = [], []
        for item in todo:  # by header: CMYK / YCCK JPEGs take the CPU way, for load_rgb's colour rules
            (jpegs if is_plain_jpeg(item[0].image_path) else others).append(item)
        threads = threads or min(8, os.cpu_count() or 1)

        def entry(sample: Sample, key: str, image: torch.Tensor | None) -> None:
            parts = self.preprocess(read_sample(sample, dermo=dermo, image=image))
            self._store(self.path(key), key, {name: t.cpu() for name, t in parts.items()})

        with (
            bar(
                total=len(todo), desc="preprocess cache", unit="img", enabled=progress and bool(todo)
            ) as filled,
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="attnmel-cache") as pool,
        ):
            pending: list[Future] = []
            try:
                for first in range(0, len(jpegs), batch_size):
                    chunk = jpegs[first : first + batch_size]
                    images = decode_jpegs([sample.image_path for sample, _ in chunk], device=device)
                    pending += [
                        pool.submit(entry, s, k, image) for (s, k), image in zip(chunk, images, strict=True)
                    ]
                    _finish(pending, filled.update, keep=2 * threads)  # bounds the decoded images held
                pending += [pool.submit(entry, s, k, None) for s, k in others]
                _finish(pending, filled.update, keep=0)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        self.misses += len(todo)
        return {
            "present": present,
            "decoded": len(jpegs),
            "other": len(others),
            "device": str(device),
            "seconds": time.perf_counter() - start,
        }

    def _store(self, entry: Path, key: str, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Write one entry atomically (uint8 arrays + its key) and return its tensors."""
        arrays = {name: t.as_subclass(torch.Tensor).numpy() for name, t in parts.items()}
        buffer = io.BytesIO()
        np.savez(buffer, key=np.frombuffer(key.encode(), dtype=np.uint8), **arrays)
        # no fsync: an entry is checked when read (key, arrays) and recomputed when torn, so atomic is enough
        atomic_write_bytes(entry, buffer.getvalue(), durable=False)
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


def _finish(pending: list[Future], done: Callable[[int], Any], keep: int) -> None:
    """Wait for the oldest of ``pending`` until at most ``keep`` remain (raising the first error), counting each."""
    while len(pending) > keep:
        pending.pop(0).result()
        done(1)
