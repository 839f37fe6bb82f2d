"""Samples and sample lists: what a dataset reader returns.

A :class:`Sample` names the files of one dermoscopy image (image, lesion mask, ISIC 2017 Task 2 superpixels and
feature JSON) and its binary label (1 = melanoma / malignant). Readers pair these files by image id, never by
sorted order, and return a :class:`SampleList` that remembers which dataset and split it came from, how many
samples were skipped for missing files, and (in ``meta``) anything a run should record, such as which ids a
seeded validation split assigned where.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from attnmel.io import atomic_write_json

__all__ = ["DataError", "Sample", "SampleList", "unwrap_worker_error"]


class DataError(ValueError):
    """Input data is missing or malformed; the message names the file and what is wrong with it."""


# the last line of the worker's traceback: "attnmel.data.samples.DataError: <the original message>"
_WORKER_ORIGINAL = re.compile(r"^(?:[\w.]+\.)?DataError: ", re.MULTILINE)


def unwrap_worker_error(err: BaseException) -> BaseException:
    """The DataError a DataLoader worker raised, without the worker's traceback around its message.

    A worker's exception reaches the main process as ``DataError("Caught DataError in DataLoader worker
    process 0. Original Traceback ...: <message>")`` (2 KB, the useful part last). Any other error is returned
    as it is.
    """
    text = str(err)
    if not isinstance(err, DataError) or "DataLoader worker process" not in text:
        return err
    starts = list(_WORKER_ORIGINAL.finditer(text))
    if not starts:
        return err
    return DataError(text[starts[-1].end() :].strip())


@dataclass(frozen=True)
class Sample:
    """One image and its annotation files.

    Attributes:
        image_id: the dataset's id, e.g. ``ISIC_0000000`` or ``IMD003``.
        image_path: the RGB image.
        label: 1 = melanoma (ISIC 2017, PH2) / malignant (ISIC 2016), 0 = anything else.
        lesion_mask_path: binary lesion segmentation (0/255), or None when the dataset has none for this image.
        superpixels_path: ISIC 2017 Task 2 superpixel map (index = R + (G << 8) + (B << 16)), or None.
        features_path: ISIC 2017 Task 2 ``<id>_features.json``, or None.
        meta: extra per-image facts (e.g. ``seborrheic_keratosis``, ``age_approximate``); not used for training.
    """

    image_id: str
    image_path: Path
    label: int
    lesion_mask_path: Path | None = None
    superpixels_path: Path | None = None
    features_path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("image_path", "lesion_mask_path", "superpixels_path", "features_path"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))  # accept str paths; frozen, so bypass __setattr__
        if self.label not in (0, 1):
            raise DataError(f"sample {self.image_id!r}: label must be 0 or 1, got {self.label!r}")

    @property
    def has_dermo(self) -> bool:
        """True when both Task 2 files (superpixels and features JSON) are known."""
        return self.superpixels_path is not None and self.features_path is not None


class SampleList(Sequence[Sample]):
    """An ordered, read-only list of samples with the dataset name, split and bookkeeping.

    Attributes:
        name: dataset name (``"isic2017"``, ``"isic2016"``, ``"ph2"``, ...).
        split: split name (``"Training"``, ``"Test_v2"``, ...).
        n_skipped: how many samples the reader skipped (``missing="skip"``) because files were missing.
        skipped: ``(image_id, reason)`` for each skipped sample.
        meta: reader facts worth recording with a run (e.g. the ISIC 2016 validation assignment).
    """

    def __init__(
        self,
        samples: Iterable[Sample],
        *,
        name: str = "",
        split: str = "",
        n_skipped: int = 0,
        skipped: Sequence[tuple[str, str]] = (),
        meta: dict[str, Any] | None = None,
    ) -> None:
        self._samples: tuple[Sample, ...] = tuple(samples)
        self.name = name
        self.split = split
        self.skipped: tuple[tuple[str, str], ...] = tuple(skipped)
        self.n_skipped = max(n_skipped, len(self.skipped))
        self.meta: dict[str, Any] = dict(meta or {})

    @overload
    def __getitem__(self, index: int) -> Sample: ...
    @overload
    def __getitem__(self, index: slice) -> SampleList: ...
    def __getitem__(self, index: int | slice) -> Sample | SampleList:
        if isinstance(index, slice):
            return self.derive(self._samples[index])
        return self._samples[index]

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __repr__(self) -> str:
        counts = self.class_counts()
        return (
            f"SampleList(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"positives={counts.get(1, 0)}, negatives={counts.get(0, 0)}, n_skipped={self.n_skipped})"
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SampleList):
            return self._samples == other._samples and (self.name, self.split) == (other.name, other.split)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def ids(self) -> list[str]:
        return [s.image_id for s in self._samples]

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self._samples]

    def class_counts(self) -> dict[int, int]:
        """``{0: negatives, 1: positives}``."""
        counts = Counter(self.labels)
        return {0: counts.get(0, 0), 1: counts.get(1, 0)}

    def derive(self, samples: Iterable[Sample], **meta: Any) -> SampleList:
        """A new list with the same name, split and bookkeeping, other samples, and ``meta`` updated."""
        return SampleList(
            samples,
            name=self.name,
            split=self.split,
            n_skipped=self.n_skipped,
            skipped=self.skipped,
            meta={**self.meta, **meta},
        )

    def subset(self, ids: Iterable[str]) -> SampleList:
        """The samples with these ids, in this list's order; an unknown id is an error."""
        wanted = set(ids)
        unknown = wanted - set(self.ids)
        if unknown:
            raise DataError(f"{self.name}/{self.split}: unknown image ids {sorted(unknown)[:5]}")
        return self.derive(s for s in self._samples if s.image_id in wanted)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: names, counts, ids with labels, skipped ids and ``meta``."""
        return {
            "name": self.name,
            "split": self.split,
            "n": len(self),
            "class_counts": {str(k): v for k, v in self.class_counts().items()},
            "n_skipped": self.n_skipped,
            "skipped": [list(item) for item in self.skipped],
            "samples": [{"image_id": s.image_id, "label": s.label} for s in self._samples],
            "meta": self.meta,
        }

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` atomically (e.g. into a run folder, so the split is inspectable later)."""
        return atomic_write_json(path, self.to_dict())
