"""Tables that describe a dataset: class balance per split, masks and dermoscopic features available.

Used by the data chapter and by ``attnmel evaluate`` to say what a split holds before any number is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .samples import SampleList

__all__ = ["split_summary", "artifact_table"]


def split_summary(splits: Mapping[str, SampleList]) -> list[dict[str, Any]]:
    """One row per split: images, melanoma / other counts, melanoma share, lesion masks and Task 2 files."""
    rows = []
    for name, samples in splits.items():
        counts = samples.class_counts()
        n = len(samples)
        rows.append(
            {
                "split": name,
                "images": n,
                "melanoma": counts.get(1, 0),
                "other": counts.get(0, 0),
                "melanoma_share": counts.get(1, 0) / n if n else float("nan"),
                "lesion_masks": sum(s.lesion_mask_path is not None for s in samples),
                "dermo_features": sum(s.has_dermo for s in samples),
            }
        )
    return rows


def artifact_table(splits: Mapping[str, SampleList]) -> list[dict[str, Any]]:
    """For the synthetic set: the share of images with the spurious artifact, by split and class.

    Empty when no sample records ``meta["artifact"]`` (real data).
    """
    rows = []
    for name, samples in splits.items():
        flagged = [s for s in samples if "artifact" in s.meta]
        if not flagged:
            continue
        row: dict[str, Any] = {"split": name}
        for label, key in ((1, "melanoma"), (0, "other")):
            group = [s for s in flagged if s.label == label]
            with_artifact = sum(int(float(s.meta["artifact"])) for s in group)
            row[f"artifact_share_{key}"] = with_artifact / len(group) if group else float("nan")
        rows.append(row)
    return rows
