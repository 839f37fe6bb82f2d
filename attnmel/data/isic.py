"""Readers for the official ISIC 2017 (Task 3, with Task 1 masks and Task 2 features) and ISIC 2016 layouts.

Samples are paired with their masks and feature files **by image id** (the authors' code paired by sorted
order, so one missing mask shifted every later pair). Labels: ISIC 2017 melanoma = 1 (nevus and seborrheic
keratosis = 0); ISIC 2016 malignant = 1. ISIC 2016 has no official validation split: :func:`isic2016` draws a
stratified, seeded one from the official training set and records the assignment in ``SampleList.meta``.

Layouts (file names exactly as distributed by the challenges)::

    ISIC-2017_<Split>_Part3_GroundTruth.csv      image_id,melanoma,seborrheic_keratosis   (0.0 / 1.0, CRLF)
    ISIC-2017_<Split>_Data/<id>.jpg              (+ <id>_superpixels.png, ISIC-2017_<Split>_Data_metadata.csv)
    ISIC-2017_<Split>_artifacts.csv              synthetic sets only: image_id,artifact -> Sample.meta
    ISIC-2017_<Split>_Part1_GroundTruth/<id>_segmentation.png
    ISIC-2017_<Split>_Part2_GroundTruth/<id>_features.json

    ISBI2016_ISIC_Part3_<Split>_GroundTruth.csv  no header; ISIC_0000000,benign|malignant  or  ,0.0|1.0
    ISBI2016_ISIC_Part3_<Split>_Data/<id>.jpg
    ISBI2016_ISIC_Part1_<Split>_GroundTruth/<id>_Segmentation.png

Images, masks and superpixel maps may have any suffix of :data:`IMAGE_SUFFIXES` (.jpg .jpeg .png .bmp .tif
.tiff); a listed image found only under another suffix is reported as such, not as "not found".
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .images import image_size
from .samples import DataError, Sample, SampleList

__all__ = ["isic2017", "isic2016", "ISIC2017_SPLITS", "ISIC2016_SPLITS", "isic2017_splits"]

ISIC2017_SPLITS = ("Training", "Validation", "Test_v2")
ISIC2016_SPLITS = ("Training", "Validation", "Test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")  # any case; all read by load_rgb
Missing = Literal["error", "skip"]
_SHOW = 5  # ids listed in an error message


@dataclass
class Row:
    """One labelled row of a ground-truth table."""

    image_id: str
    label: int
    line: int
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- helpers
def check_missing_arg(missing: str) -> None:
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")


def check_root(root: str | os.PathLike, dataset: str) -> Path:
    """The root as an absolute Path; a DataError when it does not exist or is not a folder."""
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise DataError(f"{dataset} root folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{dataset} root {root} is not a folder")
    return root


def describe_folder(root: Path, limit: int = 8) -> str:
    """A short listing of what a folder holds, for error messages."""
    entries = sorted(
        p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if not p.name.startswith(".")
    )
    if not entries:
        return "the folder is empty"
    more = f" ... ({len(entries)} entries)" if len(entries) > limit else ""
    return "it holds " + ", ".join(entries[:limit]) + more


def parse_binary(value: str) -> int | None:
    """``0`` / ``1`` / ``0.0`` / ``1.0`` -> 0 / 1; anything else -> None."""
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if number == 0.0:
        return 0
    if number == 1.0:
        return 1
    return None


def read_table(path: Path) -> list[tuple[int, list[str]]]:
    """CSV rows as ``(line number, cells)``; CRLF or LF, a BOM and a missing final newline are all accepted."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc})") from exc
    lines = text.splitlines()
    rows = []
    for number, cells in enumerate(csv.reader(lines), start=1):
        if not cells or all(not c.strip() for c in cells):
            continue  # blank line
        rows.append((number, [c.strip() for c in cells]))
    return rows


def check_duplicates(rows: Sequence[Row], path: Path) -> None:
    seen: dict[str, int] = {}
    for row in rows:
        if row.image_id in seen:
            raise DataError(
                f"{path}: duplicate image id {row.image_id!r} on lines {seen[row.image_id]} and {row.line}"
            )
        seen[row.image_id] = row.line


def list_images(folder: Path, exclude: Callable[[str], bool] = lambda name: False) -> dict[str, Path]:
    """``{image id: path}`` for the images in ``folder`` (:data:`IMAGE_SUFFIXES`, any case), one file per id."""
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if exclude(path.name):
            continue
        if path.stem in images:
            raise DataError(
                f"{folder}: duplicate image id {path.stem!r}: {images[path.stem].name} and {path.name}"
            )
        images[path.stem] = path
    return images


def find_image(folder: Path, stem: str, preferred: str = ".png") -> Path | None:
    """``<folder>/<stem><suffix>`` for the first suffix that exists, ``preferred`` first, then the others of
    :data:`IMAGE_SUFFIXES` (each in lower or upper case); None when there is none."""
    for suffix in dict.fromkeys((preferred, *IMAGE_SUFFIXES)):
        for variant in dict.fromkeys((suffix, suffix.upper())):
            path = folder / f"{stem}{variant}"
            if path.is_file():
                return path
    return None


def unread_files(folder: Path, ids: Iterable[str]) -> dict[str, list[str]]:
    """For ids without an image: ``{id: names}`` of the files under ``folder`` with that stem but a suffix
    that is not read (e.g. ``.webp``), so the error can say so instead of "not found"."""
    wanted = set(ids)
    found: dict[str, list[str]] = {}
    if wanted and folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.stem in wanted and path.suffix.lower() not in IMAGE_SUFFIXES and path.is_file():
                found.setdefault(path.stem, []).append(path.name)
    return found


def unread_hint(names: Iterable[str]) -> str:
    names = list(names)
    return f"; found {show(names)} but only {'/'.join(IMAGE_SUFFIXES)} files are read" if names else ""


def show(ids: Iterable[str]) -> str:
    ids = list(ids)
    more = f" and {len(ids) - _SHOW} more" if len(ids) > _SHOW else ""
    return ", ".join(ids[:_SHOW]) + more


def assemble(
    rows: Sequence[Row],
    images: dict[str, Path],
    *,
    name: str,
    split: str,
    table: Path,
    image_folder: Path,
    missing: Missing,
    files_for: Callable[[str], dict[str, Path | None]],
    all_row_ids: Iterable[str] | None = None,
    meta: dict[str, Any] | None = None,
    verify: bool = False,
) -> SampleList:
    """Pair labelled rows with their image (and other files) by id; enforce the ``missing`` policy.

    ``all_row_ids`` are every id the table labels (default: the ids of ``rows``); an image whose id is not among
    them has no label: an error, or a warning with ``missing="skip"``.
    """
    labelled = set(all_row_ids) if all_row_ids is not None else {r.image_id for r in rows}
    unlabelled = sorted(set(images) - labelled)
    if unlabelled:
        message = f"{image_folder}: {len(unlabelled)} image(s) have no row in {table}: {show(unlabelled)}"
        if missing == "error":
            raise DataError(
                message + " (pass missing='skip', or --missing skip on the command line, to ignore them)"
            )
        warnings.warn(message + "; ignored", stacklevel=3)
    absent = [r.image_id for r in rows if r.image_id not in images]
    unread = unread_files(image_folder, absent)
    if absent and missing == "error":
        hint = unread_hint(name for names in unread.values() for name in names)
        raise DataError(
            f"{table}: {len(absent)} listed image(s) not found in {image_folder}: {show(absent)}{hint} "
            "(pass missing='skip', or --missing skip on the command line, to skip them)"
        )
    samples, skipped = [], []
    for row in rows:
        if row.image_id not in images:
            hint = unread_hint(unread.get(row.image_id, []))
            skipped.append((row.image_id, f"image not found in {image_folder}{hint}"))
            continue
        files = files_for(row.image_id)
        sample = Sample(
            image_id=row.image_id, image_path=images[row.image_id], label=row.label, meta=row.meta, **files
        )
        if verify:
            verify_sample(sample)
        samples.append(sample)
    if skipped:
        warnings.warn(
            f"{name}/{split}: skipped {len(skipped)} sample(s) with missing files: {show(i for i, _ in skipped)}",
            stacklevel=3,
        )
    meta = dict(meta or {})
    meta["n_without_mask"] = sum(s.lesion_mask_path is None for s in samples)
    meta["n_unlabelled_images"] = len(unlabelled)
    return SampleList(samples, name=name, split=split, skipped=skipped, meta=meta)


def verify_sample(sample: Sample) -> None:
    """Header-level check: the image and every mask open, and masks match the image size.

    A header that claims too many pixels (a possible decompression bomb) is a DataError naming the file.
    """
    size = image_size(sample.image_path)
    for path in (sample.lesion_mask_path, sample.superpixels_path):
        if path is not None and image_size(path) != size:
            raise DataError(
                f"{path}: size {image_size(path)} differs from its image {sample.image_path} size {size}"
            )


def existing(path: Path) -> Path | None:
    return path if path.is_file() else None


# ------------------------------------------------------------------------------------------------- ISIC 2017
_SPLIT_2017 = re.compile(r"^ISIC-2017_(.+)_Part3_GroundTruth\.csv$")


def isic2017_splits(root: str | os.PathLike) -> list[str]:
    """The splits present under ``root`` (those with an ``ISIC-2017_<split>_Part3_GroundTruth.csv``)."""
    root = Path(root)
    found = [m.group(1) for p in sorted(root.iterdir()) if (m := _SPLIT_2017.match(p.name)) and p.is_file()]
    order = {s: i for i, s in enumerate(ISIC2017_SPLITS)}
    return sorted(found, key=lambda s: (order.get(s, len(order)), s))


def _read_isic2017_table(path: Path) -> list[Row]:
    table = read_table(path)
    if not table:
        raise DataError(f"{path}: empty file (expected header image_id,melanoma,seborrheic_keratosis)")
    header_line, header = table[0]
    if "image_id" not in header or "melanoma" not in header:
        raise DataError(
            f"{path}: line {header_line}: expected a header with image_id and melanoma, got {header}"
        )
    columns = {name: i for i, name in enumerate(header)}
    label_columns = [c for c in ("melanoma", "seborrheic_keratosis") if c in columns]
    rows = []
    for line, cells in table[1:]:
        if len(cells) != len(header):
            raise DataError(f"{path}: line {line}: expected {len(header)} fields, got {len(cells)}: {cells}")
        image_id = cells[columns["image_id"]]
        if not image_id:
            raise DataError(f"{path}: line {line}: empty image_id")
        values = {}
        for column in label_columns:
            value = parse_binary(cells[columns[column]])
            if value is None:
                raise DataError(
                    f"{path}: line {line}: {column} for {image_id} is {cells[columns[column]]!r}; "
                    "expected 0, 1, 0.0 or 1.0"
                )
            values[column] = value
        if values.get("melanoma") and values.get("seborrheic_keratosis"):
            raise DataError(
                f"{path}: line {line}: {image_id} is labelled both melanoma and seborrheic keratosis"
            )
        meta = (
            {"seborrheic_keratosis": values["seborrheic_keratosis"]}
            if "seborrheic_keratosis" in values
            else {}
        )
        rows.append(Row(image_id, values["melanoma"], line, meta))
    check_duplicates(rows, path)
    return rows


def _read_isic2017_extras(path: Path) -> dict[str, dict[str, Any]]:
    """An optional per-image CSV with an ``image_id`` column -> ``{id: {column: value}}`` (integers as int).

    Used for ``ISIC-2017_<Split>_Data_metadata.csv`` (age_approximate, sex) and the synthetic generator's
    ``ISIC-2017_<Split>_artifacts.csv`` (artifact 0/1).
    """
    if not path.is_file():
        return {}
    table = read_table(path)
    if not table or "image_id" not in table[0][1]:
        warnings.warn(f"{path}: no image_id header; ignored", stacklevel=3)
        return {}
    header = table[0][1]
    out: dict[str, dict[str, Any]] = {}
    for _, cells in table[1:]:
        raw = dict(zip(header, cells, strict=False))
        image_id = raw.pop("image_id", "")
        if image_id:
            out[image_id] = {k: int(v) if v.isdigit() else v for k, v in raw.items()}
    return out


def isic2017(
    root: str | os.PathLike, split: str = "Training", *, missing: Missing = "error", verify: bool = False
) -> SampleList:
    """Read one split of the ISIC 2017 challenge (or a synthetic set in its layout).

    Args:
        root: the folder holding ``ISIC-2017_<split>_Part3_GroundTruth.csv`` and ``ISIC-2017_<split>_Data/``.
        split: ``Training``, ``Validation``, ``Test_v2``, or any other split whose Part 3 CSV exists
            (the synthetic generator writes ``Test_shift``).
        missing: ``"error"`` (default) fails on a listed image that is absent or an image with no label row;
            ``"skip"`` skips such samples, warns, and counts them in ``SampleList.n_skipped``.
        verify: also open every image and mask header and check that the sizes agree (slower).

    Returns:
        A :class:`SampleList` (label 1 = melanoma). Lesion masks (Task 1) and Task 2 superpixels / features are
        filled in where the files exist, else None.
    """
    check_missing_arg(missing)
    root = check_root(root, "ISIC 2017")
    table = root / f"ISIC-2017_{split}_Part3_GroundTruth.csv"
    if not table.is_file():
        found = isic2017_splits(root)
        if not found:
            nested = [p.name for p in root.iterdir() if p.is_dir() and isic2017_splits(p)]
            hint = f"; did you mean {root / nested[0]}?" if nested else ""
            raise DataError(
                f"{root} is not an ISIC 2017 folder: expected {table.name} and ISIC-2017_{split}_Data/; "
                f"{describe_folder(root)}{hint}"
            )
        raise DataError(f"{root}: no split {split!r} ({table.name} not found); splits found: {found}")
    image_folder = root / f"ISIC-2017_{split}_Data"
    if not image_folder.is_dir():
        raise DataError(f"{root}: image folder {image_folder.name}/ for split {split!r} is missing")
    rows = _read_isic2017_table(table)
    for extras in (
        _read_isic2017_extras(image_folder / f"ISIC-2017_{split}_Data_metadata.csv"),
        _read_isic2017_extras(root / f"ISIC-2017_{split}_artifacts.csv"),
    ):
        for row in rows:
            row.meta.update({k: v for k, v in extras.get(row.image_id, {}).items() if k not in row.meta})
    images = list_images(image_folder, exclude=lambda name: Path(name).stem.endswith("_superpixels"))
    mask_folder = root / f"ISIC-2017_{split}_Part1_GroundTruth"
    feature_folder = root / f"ISIC-2017_{split}_Part2_GroundTruth"

    def files_for(image_id: str) -> dict[str, Path | None]:
        return {
            "lesion_mask_path": find_image(mask_folder, f"{image_id}_segmentation"),
            "superpixels_path": find_image(image_folder, f"{image_id}_superpixels"),
            "features_path": existing(feature_folder / f"{image_id}_features.json"),
        }

    return assemble(
        rows,
        images,
        name="isic2017",
        split=split,
        table=table,
        image_folder=image_folder,
        missing=missing,
        files_for=files_for,
        meta={"root": str(root)},
        verify=verify,
    )


# ------------------------------------------------------------------------------------------------- ISIC 2016
def _parse_isic2016_label(value: str) -> int | None:
    lowered = value.strip().lower()
    if lowered == "benign":
        return 0
    if lowered == "malignant":
        return 1
    return parse_binary(value)


def _read_isic2016_table(path: Path) -> list[Row]:
    rows = []
    for line, cells in read_table(path):
        if line == 1 and cells[0].lower() in ("image_id", "name", "id"):
            continue  # tolerate a header row added by a third-party copy
        if len(cells) != 2:
            raise DataError(f"{path}: line {line}: expected 2 fields (id,label), got {len(cells)}: {cells}")
        image_id, value = cells
        if not image_id:
            raise DataError(f"{path}: line {line}: empty image id")
        label = _parse_isic2016_label(value)
        if label is None:
            raise DataError(
                f"{path}: line {line}: label for {image_id} is {value!r}; expected benign, malignant, 0, 1, 0.0 or 1.0"
            )
        rows.append(Row(image_id, label, line))
    if not rows:
        raise DataError(f"{path}: no rows (expected lines like ISIC_0000000,benign)")
    check_duplicates(rows, path)
    return rows


def isic2016(
    root: str | os.PathLike,
    split: str = "Training",
    *,
    missing: Missing = "error",
    val_fraction: float = 0.2,
    seed: int = 0,
    verify: bool = False,
) -> SampleList:
    """Read one split of ISIC 2016 (ISBI 2016 Part 3), with Part 1 lesion masks where present.

    Args:
        root: the folder holding ``ISBI2016_ISIC_Part3_{Training,Test}_GroundTruth.csv`` and the ``_Data`` folders.
        split: ``Training``, ``Validation`` or ``Test``. ``Training`` and ``Validation`` partition the official
            training set: ``val_fraction`` of each class (rounded) goes to Validation, drawn with ``seed``. The
            assignment depends only on the CSV, ``val_fraction`` and ``seed``, and is recorded in
            ``meta["validation_split"]`` (write it with ``SampleList.to_json``). ``val_fraction=0`` gives the
            whole official training set as ``Training``.
        missing: as for :func:`isic2017`.
        verify: also open every image and mask header and check that the sizes agree.

    Returns:
        A :class:`SampleList` (label 1 = malignant).
    """
    from .sampling import stratified_split

    check_missing_arg(missing)
    if split not in ISIC2016_SPLITS:
        raise ValueError(f"ISIC 2016 split must be one of {ISIC2016_SPLITS}, got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if split == "Validation" and val_fraction == 0.0:
        raise ValueError("split='Validation' needs val_fraction > 0")
    root = check_root(root, "ISIC 2016")
    official = "Test" if split == "Test" else "Training"
    table = root / f"ISBI2016_ISIC_Part3_{official}_GroundTruth.csv"
    image_folder = root / f"ISBI2016_ISIC_Part3_{official}_Data"
    absent = [p.name + ("/" if p.suffix != ".csv" else "") for p in (table, image_folder) if not p.exists()]
    if absent:
        raise DataError(
            f"{root} is not an ISIC 2016 folder for split {split!r}: missing {', '.join(absent)}; "
            f"{describe_folder(root)}"
        )
    rows = _read_isic2016_table(table)
    all_ids = [r.image_id for r in rows]
    meta: dict[str, Any] = {"root": str(root)}
    if official == "Training":
        train_ids, val_ids = stratified_split(all_ids, [r.label for r in rows], val_fraction, seed)
        meta["validation_split"] = {
            "source": table.name,
            "val_fraction": val_fraction,
            "seed": seed,
            "method": "stratified by label; per class, round(n * val_fraction) ids by numpy default_rng(seed)",
            "Training": train_ids,
            "Validation": val_ids,
        }
        keep = set(val_ids if split == "Validation" else train_ids)
        rows = [r for r in rows if r.image_id in keep]
    images = list_images(image_folder)
    mask_folder = root / f"ISBI2016_ISIC_Part1_{official}_GroundTruth"

    def files_for(image_id: str) -> dict[str, Path | None]:
        return {"lesion_mask_path": find_image(mask_folder, f"{image_id}_Segmentation")}

    return assemble(
        rows,
        images,
        name="isic2016",
        split=split,
        table=table,
        image_folder=image_folder,
        missing=missing,
        files_for=files_for,
        all_row_ids=all_ids,
        meta=meta,
        verify=verify,
    )
