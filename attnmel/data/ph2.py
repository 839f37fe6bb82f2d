"""Reader for the PH2 dermoscopy set (Mendonca et al., 2013), used as an external test set.

Layout::

    PH2_dataset.txt                                               the label table (below)
    PH2 Dataset images/IMD003/IMD003_Dermoscopic_Image/IMD003.bmp
    PH2 Dataset images/IMD003/IMD003_lesion/IMD003_lesion.bmp     lesion mask

``PH2_dataset.txt`` is a wiki-style table: a header ``||   Name || Histological Diagnosis || Clinical Diagnosis
|| Asymmetry | ...`` and rows ``|| IMD003 ||  || 0 || 0 | T | A | ... ||``, followed by legend lines that are not
samples. Cells are split on ``||``; the columns are found by their header names, and a sample row is one whose
Name cell is ``IMD`` followed by digits. Clinical Diagnosis 0 = common nevus, 1 = atypical nevus, 2 = melanoma;
label 1 = melanoma. Images and masks may also be PNG, JPEG or TIFF (the suffixes of ``isic.IMAGE_SUFFIXES``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .isic import (
    Missing,
    Row,
    assemble,
    check_duplicates,
    check_missing_arg,
    check_root,
    describe_folder,
    find_image,
)
from .samples import DataError, SampleList

__all__ = ["ph2", "ph2_split", "PH2_TABLE", "PH2_IMAGES"]

PH2_TABLE = "PH2_dataset.txt"
PH2_IMAGES = "PH2 Dataset images"
_NAME = re.compile(r"^IMD\d+$")
_DIAGNOSES = {"0": "common nevus", "1": "atypical nevus", "2": "melanoma"}


def _cells(line: str) -> list[str]:
    """Cells of a ``|| a || b || c | d ||`` line, split on ``||`` and stripped (outer empties dropped)."""
    parts = [p.strip() for p in line.strip().split("||")]
    if parts and parts[0] == "":
        parts = parts[1:]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    return parts


def _read_ph2_table(path: Path) -> list[Row]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    header: list[str] | None = None
    rows: list[Row] = []
    for number, line in enumerate(lines, start=1):
        if not line.lstrip().startswith("||"):
            continue  # legend and blank lines
        cells = _cells(line)
        if header is None:
            if cells and cells[0] == "Name":
                header = cells
                for column in ("Clinical Diagnosis",):
                    if column not in header:
                        raise DataError(f"{path}: line {number}: header has no {column!r} column: {header}")
            continue
        if not cells or not _NAME.match(cells[0]):
            continue  # legend row in table form
        name_col, clin_col = header.index("Name"), header.index("Clinical Diagnosis")
        if len(cells) <= clin_col:
            raise DataError(
                f"{path}: line {number}: row for {cells[0]} has no Clinical Diagnosis cell: {line!r}"
            )
        diagnosis = cells[clin_col]
        if diagnosis not in _DIAGNOSES:
            raise DataError(
                f"{path}: line {number}: Clinical Diagnosis of {cells[name_col]} is {diagnosis!r}; expected 0, 1 or 2"
            )
        meta: dict[str, Any] = {"clinical_diagnosis": int(diagnosis)}
        if "Histological Diagnosis" in header and len(cells) > header.index("Histological Diagnosis"):
            meta["histological_diagnosis"] = cells[header.index("Histological Diagnosis")]
        rows.append(Row(cells[name_col], int(diagnosis == "2"), number, meta))
    if header is None:
        raise DataError(f"{path}: no header line starting with '|| Name ||' found")
    if not rows:
        raise DataError(f"{path}: no sample rows (lines like '|| IMD003 ||  || 0 || ...') found")
    check_duplicates(rows, path)
    return rows


def ph2(root: str | os.PathLike, *, missing: Missing = "error", verify: bool = False) -> SampleList:
    """Read PH2 (200 images: 80 common nevi, 80 atypical nevi, 40 melanomas) as one ``Test`` split.

    Args:
        root: the ``PH2Dataset`` folder holding ``PH2_dataset.txt`` and ``PH2 Dataset images/``.
        missing: as for :func:`attnmel.data.isic2017`.
        verify: also open every image and mask header and check that the sizes agree.

    Returns:
        A :class:`SampleList` (label 1 = melanoma, i.e. Clinical Diagnosis 2), with lesion masks.
    """
    check_missing_arg(missing)
    root = check_root(root, "PH2")
    table, image_root = root / PH2_TABLE, root / PH2_IMAGES
    absent = [name for name, p in ((PH2_TABLE, table), (PH2_IMAGES + "/", image_root)) if not p.exists()]
    if absent:
        nested = [p.name for p in root.iterdir() if p.is_dir() and (p / PH2_TABLE).is_file()]
        hint = f"; did you mean {root / nested[0]}?" if nested else ""
        raise DataError(
            f"{root} is not a PH2 folder: missing {', '.join(absent)}; {describe_folder(root)}{hint}"
        )
    rows = _read_ph2_table(table)
    images: dict[str, Path] = {}
    for folder in sorted(image_root.iterdir()):
        if folder.is_dir() and _NAME.match(folder.name):
            image = find_image(folder / f"{folder.name}_Dermoscopic_Image", folder.name, ".bmp")
            if image is not None:
                images[folder.name] = image

    def files_for(image_id: str) -> dict[str, Path | None]:
        mask_folder = image_root / image_id / f"{image_id}_lesion"
        return {"lesion_mask_path": find_image(mask_folder, f"{image_id}_lesion", ".bmp")}

    return assemble(
        rows,
        images,
        name="ph2",
        split="Test",
        table=table,
        image_folder=image_root,
        missing=missing,
        files_for=files_for,
        meta={"root": str(root)},
        verify=verify,
    )


def ph2_split(
    root: str | os.PathLike, split: str = "Test", *, missing: Missing = "error", verify: bool = False
) -> SampleList:
    """:func:`ph2` with the ``(root, split)`` signature of the other readers; PH2's only split is ``Test``."""
    if split != "Test":
        raise DataError(f"PH2 has one split, 'Test' (the whole set); got {split!r}")
    return ph2(root, missing=missing, verify=verify)
