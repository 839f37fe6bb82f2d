"""A seeded synthetic dermoscopy set in the official ISIC 2017 layout: the embedded default data.

The book and the tests must run without the real ISIC archive, so :func:`make_synthetic` draws a small,
fully labelled data set that the ISIC 2017 reader (``attnmel.data.isic2017(root, split)``) loads like the
real one: images, Part 1 lesion masks, Part 2 (Task 2) dermoscopic-feature superpixels and JSON, and the
Part 3 label CSV. Every image is a dermoscopy-like picture:

* **Skin**: a skin tone with low-frequency colour variation (uneven redness and brightness) and fine
  texture noise; seen through the **dark circular vignette** of a dermoscope, with the bluish-white rim
  of the lens towards its edge; a few dark, curved **hairs** on top of everything in about half the images.
* **Lesion**: a blob whose border is a polar radius with random Fourier harmonics,
  ``r(theta) = r0 * (1 + sum_k a_k cos(k theta + phi_k))``, rotated, scaled and shifted at random for both
  classes, with internal mottling.

Class cues come from one latent "atypia" score per image, ``s`` in [0, 1]: benign lesions draw ``s`` from
the low end, melanomas from the high end, and the two ranges overlap (a dysplastic-looking nevus, a
featureless melanoma), so the cues are learnable but not trivial.

* **Benign** (nevus; seborrheic keratosis for about 15% of them): nearly centrally symmetric, smooth
  border (even harmonics, small amplitudes), one uniform light or medium brown with a symmetric radial
  shading, often a **regular pigment network** (a honeycomb of thin lines that fades towards the border).
  Seborrheic keratoses carry white **milia-like cysts**.
* **Melanoma**: asymmetric (odd harmonics) with an irregular, jagged border (larger and higher harmonics),
  **several colours** in blotches (dark brown, black, red-brown, light brown, grey-blue), a **blue-white
  veil**, **atypical dots** of uneven size clustered off-centre, **streaks** along one arc of the border,
  an **atypical pigment network** (warped, thick, patchy) and sometimes a **negative network**.

Part 2 annotations follow the drawing: a superpixel (a jittered-grid Voronoi cell of about 1/16 of the
image side) is positive for a feature when at least max(2 px, 5% of it) is covered by that drawn structure
and at least half of it lies inside the lesion mask, so the paper's Dermo ROI (the union of the four
features) lies inside the lesion. Dots and the veil are not among the four ISIC 2017 Task 2 features, as
in the real challenge.

**Spurious artifact protocol.** About half the images carry an artifact outside the lesion, as in real
ISIC images: a coloured round sticker or a purple skin-marker ink stroke. In Training, Validation and
Test_v2 the artifact is correlated with the label by ``artifact_bias`` (b in [0, 1]):
exactly ``round(p * n_class)`` images of each class carry it, with ``p = 0.5 + b/2`` for melanoma and
``p = 0.5 - b/2`` for benign images (b = 0: independent; b = 1: artifact if and only if melanoma). The
extra split **Test_shift** (new lesions, as many as Test_v2 unless ``n_shift`` is given) puts the artifact
on exactly half of each class, so it carries no information there: a model that learned the shortcut
loses accuracy on Test_shift. Which images carry it is written to ``ISIC-2017_<Split>_artifacts.csv``
(``image_id,artifact`` with 0/1) and its pixels to ``ISIC-2017_<Split>_Artifact_Masks/<id>_artifact.png``
(0/255, all zero without an artifact), so the book can measure the share of attention on the artifact.
The artifact is drawn from its own random stream: the same seed with a different ``artifact_bias`` gives
the same lesions, labels and hairs, and only moves the artifacts.

Layout written under ``root`` for each split in Training, Validation, Test_v2, Test_shift::

    ISIC-2017_<Split>_Data/<id>.jpg                     JPEG, quality 92
    ISIC-2017_<Split>_Data/<id>_superpixels.png         index = R + (G << 8) + (B << 16)
    ISIC-2017_<Split>_Part1_GroundTruth/<id>_segmentation.png      uint8 0/255
    ISIC-2017_<Split>_Part2_GroundTruth/<id>_features.json         4 lists of per-superpixel 0/1
    ISIC-2017_<Split>_Part3_GroundTruth.csv             image_id,melanoma,seborrheic_keratosis (CRLF)
    ISIC-2017_<Split>_artifacts.csv                     image_id,artifact (CRLF)
    ISIC-2017_<Split>_Artifact_Masks/<id>_artifact.png  uint8 0/255
    synthetic.json                                      the generator's parameters and counts

Ids are ``ISIC_9000000`` upwards (no clash with real ISIC ids). Each image is drawn from its own
``numpy.random.Generator`` seeded by ``(seed, index)``, so the set is byte-identical for a seed and does
not depend on the order or the number of worker processes; the whole set is written to a temporary
sibling folder and renamed into place, so ``root`` is never half-written.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from attnmel.progress import bar

__all__ = [
    "SyntheticSummary",
    "make_synthetic",
    "render",
    "generative_examples",
    "encode_superpixels",
    "SPLITS",
    "FEATURES",
    "ID_START",
    "MANIFEST",
]

SPLITS: tuple[str, ...] = ("Training", "Validation", "Test_v2", "Test_shift")
FEATURES: tuple[str, ...] = ("pigment_network", "negative_network", "milia_like_cyst", "streaks")
ID_START = 9_000_000  # first synthetic id: ISIC_9000000
MANIFEST = "synthetic.json"
JPEG_QUALITY = 92
SK_FRACTION = 0.15  # share of benign images labelled seborrheic keratosis

# Random-stream tags: every stream is SeedSequence([seed, TAG, index]), so streams never collide.
_TAG_IMAGE, _TAG_ARTIFACT, _TAG_SPLIT = 1, 2, 3

# Colours, RGB in [0, 1].
_SKIN = np.array(
    [[0.93, 0.82, 0.79], [0.91, 0.77, 0.74], [0.89, 0.79, 0.72], [0.86, 0.73, 0.66], [0.80, 0.65, 0.56]],
    dtype=np.float32,
)
_BENIGN_BROWNS = np.array(
    [[0.72, 0.52, 0.36], [0.60, 0.40, 0.26], [0.50, 0.31, 0.19], [0.66, 0.47, 0.30]], dtype=np.float32
)
_MEL_COLOURS = np.array(
    [
        [0.30, 0.17, 0.11],  # dark brown
        [0.11, 0.08, 0.08],  # black
        [0.56, 0.24, 0.19],  # red-brown
        [0.62, 0.43, 0.28],  # light brown
        [0.40, 0.40, 0.50],  # grey-blue
    ],
    dtype=np.float32,
)
_STICKER_COLOURS = np.array(
    [[0.95, 0.55, 0.10], [0.20, 0.70, 0.30], [0.15, 0.45, 0.90], [0.95, 0.85, 0.15], [0.90, 0.20, 0.25]],
    dtype=np.float32,
)
_INK = np.array([0.42, 0.22, 0.55], dtype=np.float32)  # gentian-violet skin marker


@dataclass(frozen=True)
class SyntheticSummary:
    """What :func:`make_synthetic` wrote: per-split image, melanoma and artifact counts, and the time."""

    root: Path
    counts: dict[str, int]
    n_melanoma: dict[str, int]
    n_artifact: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Item:
    """One image to draw: where it goes and what it must show."""

    split: str
    index: int  # global index over all splits; the image's random stream
    kind: str  # "melanoma" | "nevus" | "seborrheic_keratosis"
    artifact: bool

    @property
    def image_id(self) -> str:
        return f"ISIC_{ID_START + self.index:07d}"


# --------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------


def make_synthetic(
    root: str | os.PathLike,
    *,
    n: int = 600,
    size: int = 256,
    seed: int = 0,
    artifact_bias: float = 0.0,
    difficulty: float = 0.0,
    melanoma_fraction: float = 0.3,
    splits: Sequence[float] = (0.7, 0.1, 0.2),
    n_shift: int | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> SyntheticSummary:
    """Write a seeded synthetic dermoscopy set in the ISIC 2017 layout (see the module docstring).

    Args:
        root: folder to create. It must not exist or be empty, unless ``overwrite`` is set and it holds a
            set made by this function (it has ``synthetic.json``); any other folder is never deleted.
        n: images in Training + Validation + Test_v2 together.
        size: side of the square images in pixels (>= 32).
        seed: seed of every random choice; the same seed gives byte-identical files.
        artifact_bias: b in [0, 1]; P(artifact | melanoma) = 0.5 + b/2, P(artifact | benign) = 0.5 - b/2 in
            Training, Validation and Test_v2 (exact counts per class). Test_shift always uses 0.5.
        difficulty: d in [0, 1]: how hard the lesion cues are. It widens the overlap of the classes' latent
            atypia (more subtle melanomas, more atypical nevi), gives a share d of the atypical benign
            lesions melanoma's cues (mimics), and draws the artifact (1 + 1.5 d) times larger, so that it
            becomes the easier cue. 0 is the original set, byte for byte.
        melanoma_fraction: share of melanoma images in every split (exact count, rounded).
        splits: fractions of ``n`` for Training, Validation, Test_v2; positive, summing to 1.
        n_shift: images in Test_shift; defaults to the size of Test_v2.
        overwrite: replace an existing synthetic set at ``root``.
        workers: processes that draw images; None picks 1 for small sets and up to 2 otherwise.
        progress: a progress bar on stderr when someone watches (:func:`attnmel.progress.watching`).

    Returns:
        A :class:`SyntheticSummary` with per-split counts and the wall time in seconds.
    """
    start = time.perf_counter()
    root = Path(root)
    counts = _validate(n, size, seed, artifact_bias, melanoma_fraction, splits, n_shift, workers)
    if not (isinstance(difficulty, int | float) and 0.0 <= difficulty <= 1.0):
        raise ValueError(f"difficulty must be a number in [0, 1], got {difficulty!r}")
    _check_root(root, overwrite)
    items = _plan(counts, seed, artifact_bias, melanoma_fraction)

    root.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        for split in SPLITS:
            for sub in ("Data", "Part1_GroundTruth", "Part2_GroundTruth", "Artifact_Masks"):
                (stage / f"ISIC-2017_{split}_{sub}").mkdir()
        jobs = [(str(stage), item, seed, size, float(difficulty)) for item in items]
        if workers is None:
            workers = 1 if len(items) * size * size < 100 * 256 * 256 else min(2, os.cpu_count() or 1)
        with bar(total=len(jobs), desc="synthetic images", unit="img", enabled=progress) as images:
            if workers > 1:
                with _pool_context().Pool(workers) as pool:
                    for _ in pool.imap_unordered(_draw_and_write_star, jobs, chunksize=8):
                        images.update(1)
            else:
                for job in jobs:
                    _draw_and_write_star(job)
                    images.update(1)
        _write_tables(stage, items)
        summary = SyntheticSummary(
            root=root,
            counts={s: sum(it.split == s for it in items) for s in SPLITS},
            n_melanoma={s: sum(it.split == s and it.kind == "melanoma" for it in items) for s in SPLITS},
            n_artifact={s: sum(it.split == s and it.artifact for it in items) for s in SPLITS},
        )
        manifest = {
            "generator": "attnmel.data.synthetic.make_synthetic",
            "n": n,
            "size": size,
            "seed": seed,
            "artifact_bias": artifact_bias,
            "difficulty": difficulty,
            "melanoma_fraction": melanoma_fraction,
            "splits": list(splits),
            "n_shift": counts["Test_shift"],
            "counts": summary.counts,
            "n_melanoma": summary.n_melanoma,
            "n_artifact": summary.n_artifact,
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _move_into_place(stage, root)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return SyntheticSummary(
        root=root,
        counts=summary.counts,
        n_melanoma=summary.n_melanoma,
        n_artifact=summary.n_artifact,
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------------------
# Arguments, plan, files
# --------------------------------------------------------------------------------------------------------


def _validate(
    n: int,
    size: int,
    seed: int,
    artifact_bias: float,
    melanoma_fraction: float,
    splits: Sequence[float],
    n_shift: int | None,
    workers: int | None,
) -> dict[str, int]:
    """Check the arguments; return the number of images per split."""
    for name, value in (("n", n), ("size", size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if not (isinstance(artifact_bias, int | float) and 0.0 <= artifact_bias <= 1.0):
        raise ValueError(f"artifact_bias must be a number in [0, 1], got {artifact_bias!r}")
    if not (isinstance(melanoma_fraction, int | float) and 0.0 < melanoma_fraction < 1.0):
        raise ValueError(f"melanoma_fraction must be a number in (0, 1), got {melanoma_fraction!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    fractions = tuple(float(f) for f in splits)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"splits must be three positive fractions (Training, Validation, Test_v2) summing to 1, "
            f"got {tuple(splits)!r}"
        )
    n_train = round(n * fractions[0])
    n_val = round(n * fractions[1])
    counts = {"Training": n_train, "Validation": n_val, "Test_v2": n - n_train - n_val}
    if n_shift is not None and (isinstance(n_shift, bool) or not isinstance(n_shift, int | np.integer)):
        raise ValueError(f"n_shift must be an integer or None, got {n_shift!r}")
    counts["Test_shift"] = counts["Test_v2"] if n_shift is None else int(n_shift)
    for split, count in counts.items():
        n_mel = _n_melanoma(count, melanoma_fraction)
        if count < 2 or not 1 <= n_mel <= count - 1:
            what = "n_shift" if split == "Test_shift" and n_shift is not None else f"n={n}"
            raise ValueError(
                f"{what} is too small for splits={fractions} and melanoma_fraction={melanoma_fraction}: "
                f"the {split} split would get {count} image(s); every split needs at least one melanoma "
                f"and one benign image"
            )
    return counts


def _n_melanoma(count: int, fraction: float) -> int:
    return min(max(round(count * fraction), 1), count - 1) if count >= 2 else 0


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork where the platform has it (workers start at once and need no re-import: they only use numpy
    and PIL); spawn elsewhere."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _check_root(root: Path, overwrite: bool) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise ValueError(f"root {root} exists and is not a folder")
    if not any(root.iterdir()):
        return
    if not overwrite:
        raise ValueError(f"root folder {root} exists and is not empty; pass overwrite=True to replace it")
    if not (root / MANIFEST).is_file():
        raise ValueError(
            f"refusing to overwrite {root}: it is not empty and has no {MANIFEST}, so it is not a synthetic "
            f"set written by make_synthetic"
        )


def _plan(counts: dict[str, int], seed: int, artifact_bias: float, melanoma_fraction: float) -> list[_Item]:
    """Labels and artifacts per image, with exact per-class counts, from per-split random streams."""
    items: list[_Item] = []
    index = 0
    for split_no, split in enumerate(SPLITS):
        count = counts[split]
        rng = np.random.default_rng([seed, _TAG_SPLIT, split_no])
        n_mel = _n_melanoma(count, melanoma_fraction)
        order = rng.permutation(count)
        is_mel = np.zeros(count, dtype=bool)
        is_mel[order[:n_mel]] = True
        n_sk = round((count - n_mel) * SK_FRACTION)
        is_sk = np.zeros(count, dtype=bool)
        is_sk[order[n_mel : n_mel + n_sk]] = True
        bias = 0.0 if split == "Test_shift" else float(artifact_bias)
        has_artifact = np.zeros(count, dtype=bool)
        for members, p in (
            (np.flatnonzero(is_mel), 0.5 + bias / 2),
            (np.flatnonzero(~is_mel), 0.5 - bias / 2),
        ):
            chosen = rng.permutation(members)[: round(p * len(members))]
            has_artifact[chosen] = True
        for i in range(count):
            kind = "melanoma" if is_mel[i] else "seborrheic_keratosis" if is_sk[i] else "nevus"
            items.append(_Item(split, index, kind, bool(has_artifact[i])))
            index += 1
    return items


def _write_tables(stage: Path, items: list[_Item]) -> None:
    """Part 3 label CSVs and artifact CSVs, CRLF like the official files."""
    for split in SPLITS:
        rows = [it for it in items if it.split == split]
        labels = ["image_id,melanoma,seborrheic_keratosis"] + [
            f"{it.image_id},{float(it.kind == 'melanoma'):.1f},{float(it.kind == 'seborrheic_keratosis'):.1f}"
            for it in rows
        ]
        artifacts = ["image_id,artifact"] + [f"{it.image_id},{int(it.artifact)}" for it in rows]
        (stage / f"ISIC-2017_{split}_Part3_GroundTruth.csv").write_bytes(
            ("\r\n".join(labels) + "\r\n").encode()
        )
        (stage / f"ISIC-2017_{split}_artifacts.csv").write_bytes(("\r\n".join(artifacts) + "\r\n").encode())


def _move_into_place(stage: Path, root: Path) -> None:
    """Rename the finished staging folder to ``root``, replacing an old set only once the new one exists."""
    old = None
    if root.exists():
        if any(root.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
            os.replace(root, old)  # rename over the fresh empty folder
        else:
            root.rmdir()
    os.replace(stage, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _draw_and_write_star(job: tuple[str, _Item, int, int, float]) -> None:
    _draw_and_write(*job)


def _draw_and_write(stage: str, item: _Item, seed: int, size: int, difficulty: float = 0.0) -> None:
    """Draw one image and write its five files into the staging folder."""
    out = render(item.kind, item.artifact, seed=seed, index=item.index, size=size, difficulty=difficulty)
    base = Path(stage)
    split, image_id = item.split, item.image_id
    buf = io.BytesIO()
    Image.fromarray(out["image"]).save(buf, format="JPEG", quality=JPEG_QUALITY)
    (base / f"ISIC-2017_{split}_Data" / f"{image_id}.jpg").write_bytes(buf.getvalue())
    Image.fromarray(encode_superpixels(out["superpixels"])).save(
        base / f"ISIC-2017_{split}_Data" / f"{image_id}_superpixels.png"
    )
    _save_mask(out["lesion"], base / f"ISIC-2017_{split}_Part1_GroundTruth" / f"{image_id}_segmentation.png")
    _save_mask(out["artifact"], base / f"ISIC-2017_{split}_Artifact_Masks" / f"{image_id}_artifact.png")
    features = {name: [int(v) for v in out["features"][name]] for name in FEATURES}
    (base / f"ISIC-2017_{split}_Part2_GroundTruth" / f"{image_id}_features.json").write_text(
        json.dumps(features, sort_keys=True), encoding="utf-8"
    )


def _save_mask(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(path)


def encode_superpixels(index: np.ndarray) -> np.ndarray:
    """(H, W) int superpixel index -> (H, W, 3) uint8 RGB with index = R + (G << 8) + (B << 16)."""
    index = index.astype(np.int64)
    return np.stack([index & 255, (index >> 8) & 255, (index >> 16) & 255], axis=-1).astype(np.uint8)


# --------------------------------------------------------------------------------------------------------
# Drawing one image
# --------------------------------------------------------------------------------------------------------


def render(kind: str, artifact: bool, *, seed: int, index: int, size: int, difficulty: float = 0.0) -> dict:
    """Draw one synthetic dermoscopy image and its annotations (pure function of its arguments).

    ``difficulty`` in [0, 1] (see :func:`make_synthetic`) widens the overlap of the two classes' atypia and
    lets benign lesions with high atypia borrow melanoma's cues; 0 draws exactly the images it always drew.

    Returns a dict with ``image`` (S, S, 3) uint8, ``lesion`` (S, S) bool, ``artifact`` (S, S) bool,
    ``field`` (S, S) bool (the dermoscope's field of view), ``superpixels`` (S, S) int32 indices 0..K-1,
    ``features`` {name: (K,) uint8}, and the latent ``atypia`` score and ``mimic`` flag it was drawn with.
    """
    if kind not in ("melanoma", "nevus", "seborrheic_keratosis"):
        raise ValueError(f"kind must be 'melanoma', 'nevus' or 'seborrheic_keratosis', got {kind!r}")
    rng = np.random.default_rng([seed, _TAG_IMAGE, index])
    S = size
    k = S / 256.0  # length scale: every size below is given for a 256 px image
    melanoma = kind == "melanoma"
    d = float(difficulty)
    # Latent atypia: benign low, melanoma high, overlapping in (0.3, 0.55); difficulty makes more melanomas
    # subtle (and subtler) and more benign lesions atypical.
    if melanoma:
        s = rng.uniform(0.3 - 0.2 * d, 0.6) if rng.random() < 0.15 + 0.45 * d else rng.uniform(0.5, 1.0)
    else:
        s = rng.uniform(0.3, 0.55 + 0.3 * d) if rng.random() < 0.12 + 0.3 * d else rng.uniform(0.0, 0.35)
    # A mimic: a benign lesion drawn with melanoma's cues (veil, blotches of colour, atypical dots, streaks,
    # asymmetry), only ever at difficulty > 0 (no extra random draw at 0, so those sets stay byte-identical).
    mimic = not melanoma and d > 0 and s > 0.3 and rng.random() < d
    atypical = melanoma or mimic

    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5  # (S, S) pixel centres

    # Dermoscope field of view: disc of radius R_v around a slightly shifted centre.
    vx, vy = (float(v) for v in S / 2 + rng.uniform(-0.03, 0.03, 2) * S)  # python floats keep float32
    radius_v = S * rng.uniform(0.55, 0.8)
    dist_v = np.hypot(xx - vx, yy - vy)  # (S, S)
    field_soft = S * rng.uniform(0.01, 0.04)
    fov = 1.0 - _smoothstep(radius_v - field_soft, radius_v + field_soft, dist_v)  # (S, S) 1 inside

    img = _skin(rng, S, k)  # (S, S, 3)

    # Lesion geometry: r(theta) = r0 (1 + sum_k a_k cos(k theta + phi_k)).
    lesion_r0 = S * rng.uniform(0.15, 0.27) * (1.0 + 0.15 * s)
    cx, cy = (float(v) for v in S / 2 + rng.uniform(-0.07, 0.07, 2) * S)
    harm = np.arange(1, 17)
    amp = np.zeros(16, dtype=np.float64)
    amp[1] = rng.uniform(0.0, 0.22)  # k = 2: elongation, centrally symmetric
    amp[0] = s * rng.uniform(0.06, 0.16)  # k = 1: asymmetry
    amp[2:6] = (0.012 + 0.11 * s**1.5) * rng.uniform(0.3, 1.0, 4) / np.sqrt(np.arange(1, 5))
    amp[6:] = (0.002 + 0.035 * s**2) * rng.uniform(0.2, 1.0, 10)
    if not atypical:
        amp[2::2] *= 0.5  # odd harmonics (asymmetry) weaker in benign lesions
    phase = rng.uniform(0, 2 * np.pi, 16)

    table_theta = np.linspace(-np.pi, np.pi, 1025)  # r(theta) tabulated, then interpolated per pixel
    wave = (amp[:, None] * np.cos(harm[:, None] * table_theta[None, :] + phase[:, None])).sum(0)
    table_r = np.clip(1.0 + wave, 0.45, None)  # (1025,) relative radius

    def radius(theta: np.ndarray) -> np.ndarray:
        return lesion_r0 * np.interp(theta, table_theta, table_r, period=2 * np.pi)

    r_max = float(lesion_r0 * table_r.max())
    limit = min(0.3 * S, radius_v - field_soft - math.hypot(cx - vx, cy - vy) - 3 * k)
    if r_max > limit:  # keep the lesion well inside the field of view
        lesion_r0 *= limit / r_max
        r_max = limit
    theta = np.arctan2(yy - cy, xx - cx)
    dist = np.hypot(xx - cx, yy - cy)
    rho = dist / radius(theta).astype(np.float32)  # (S, S) < 1 inside the lesion
    lesion = (rho < 1.0) & (fov > 0.5)
    edge_w = rng.uniform(0.05, 0.15) * (1.0 - 0.5 * s)  # benign borders fade, atypical ones are sharper
    alpha = _smoothstep(1.0 + edge_w, 1.0 - edge_w, rho)  # (S, S) lesion opacity profile
    lesion_alpha = alpha * rng.uniform(0.82, 0.97)

    feature_px = {name: np.zeros((S, S), dtype=bool) for name in FEATURES}
    colour = _lesion_colour(rng, S, "melanoma" if atypical else kind, s, rho, xx, yy, cx, cy)  # (S, S, 3)

    # Pigment network: a fine regular mesh fading towards the border in benign lesions; in melanoma a
    # warped, thick, dark mesh in patches.
    if rng.random() < (0.6 if not atypical else 0.3 + 0.4 * s):
        irregular = s * rng.uniform(0.8, 1.3) if atypical else 0.1 + s * 0.3
        period = k * rng.uniform(6.0, 8.5) * (1.0 + 0.4 * irregular)
        line = _network(rng, S, xx, yy, period, irregular, thick=0.05 + 0.45 * irregular)
        if atypical:
            region = _smoothstep(-0.2, 0.5, _smooth_noise(rng, S, 4)) * _smoothstep(1.0, 0.75, rho)
            depth = rng.uniform(0.45, 0.7) * region
        else:
            region = _smoothstep(1.0, 0.4, rho) * rng.uniform(0.8, 1.0)
            depth = rng.uniform(0.2, 0.35) * region
        colour *= 1.0 - depth[..., None] * line[..., None]
        feature_px["pigment_network"] = (line * region > 0.35) & lesion
    if atypical and rng.random() < 0.3 * s + 0.05:
        line = _network(rng, S, xx, yy, k * rng.uniform(8.0, 11.0), 0.6, thick=0.25)
        region = _smoothstep(0.2, 0.8, _smooth_noise(rng, S, 4)) * _smoothstep(0.95, 0.6, rho)
        w = (rng.uniform(0.4, 0.6) * line * region)[..., None]
        colour = colour * (1 - w) + np.array([0.82, 0.68, 0.62], np.float32) * w
        feature_px["negative_network"] = (line * region > 0.35) & lesion

    # Blue-white veil: an irregular, hazy blue-grey-white area inside the lesion.
    if atypical and rng.random() < min(0.9, 1.2 * s - 0.1):
        a = rng.uniform(0, 2 * np.pi)
        off = lesion_r0 * rng.uniform(0.1, 0.45)
        bx, by = cx + math.cos(a) * off, cy + math.sin(a) * off
        blob_r = lesion_r0 * rng.uniform(0.35, 0.65)
        blob_rho = np.hypot(xx - bx, yy - by) / blob_r + 0.35 * _smooth_noise(rng, S, 7)
        veil = _smoothstep(1.2, 0.5, blob_rho) * _smoothstep(1.0, 0.75, rho) * rng.uniform(0.4, 0.7)
        tint = rng.uniform(0.0, 0.35)
        veil_colour = (1 - tint) * np.array([0.42, 0.48, 0.64], np.float32) + tint * np.array(
            [0.78, 0.82, 0.90], np.float32
        )
        veil = veil * (1.0 + 0.25 * _smooth_noise(rng, S, max(8, S // 12)))  # ground-glass grain
        colour = _composite(colour, np.clip(veil, 0, 1), veil_colour)
    # Regression: whitish scar-like patches in some melanomas.
    if atypical and rng.random() < 0.3 * s:
        scar = _smoothstep(0.6, 1.4, _smooth_noise(rng, S, 6)) * _smoothstep(0.95, 0.6, rho) * 0.6
        colour = _composite(colour, scar, np.array([0.86, 0.76, 0.74], np.float32))

    img = _composite(img, lesion_alpha, colour)

    # Dots, streaks and milia-like cysts are drawn as PIL layers and composited.
    if atypical and rng.random() < 0.3 + 0.7 * s:
        dots = _dots(rng, S, k, cx, cy, radius, n=int(6 + 30 * s * rng.uniform(0.5, 1.0)), atypical=True)
        img = _composite(img, dots * alpha * 0.9, _MEL_COLOURS[rng.integers(2)])
    elif not atypical and rng.random() < 0.3:
        dots = _dots(rng, S, k, cx, cy, radius, n=int(rng.integers(4, 12)), atypical=False)
        img = _composite(img, dots * alpha * 0.6, _BENIGN_BROWNS[2] * 0.7)
    if atypical and rng.random() < 0.2 + 0.6 * s:
        streaks = _streaks(rng, S, k, cx, cy, radius)
        img = _composite(img, streaks * 0.85, _MEL_COLOURS[0] * rng.uniform(0.7, 1.1))
        feature_px["streaks"] = (streaks > 0.4) & lesion
    if kind == "seborrheic_keratosis" or (not melanoma and rng.random() < 0.05):
        cysts = _dots(rng, S, k, cx, cy, radius, n=int(rng.integers(5, 15)), atypical=False, big=True)
        img = _composite(img, cysts * 0.75, np.array([0.93, 0.90, 0.78], np.float32))
        feature_px["milia_like_cyst"] = (cysts > 0.4) & lesion

    # Spurious artifact (own random stream, so it never changes the lesion or the hairs).
    artifact_mask = np.zeros((S, S), dtype=bool)
    if artifact:
        art_rng = np.random.default_rng([seed, _TAG_ARTIFACT, index])
        img, artifact_mask = _artifact(
            art_rng, img, S, k, cx, cy, r_max, vx, vy, radius_v - field_soft, scale=1.0 + 1.5 * d
        )

    if rng.random() < 0.55:
        hairs = _hairs(rng, S, k, int(rng.integers(1, 7)))
        img = _composite(img, hairs, np.array([0.12, 0.08, 0.06], np.float32) * rng.uniform(0.7, 1.6))

    # Lens: bluish-white rim inside the field, dark outside it.
    rim = np.clip((dist_v / radius_v - 0.55) / 0.45, 0, 1) ** 2 * rng.uniform(0.15, 0.5)
    img = img * (1 - rim[..., None]) + np.array([0.74, 0.80, 0.92], np.float32) * rim[..., None]
    dark = np.array([0.04, 0.04, 0.05], np.float32) * rng.uniform(0.5, 3.0)
    img = img * fov[..., None] + dark * (1 - fov[..., None])
    img = img * rng.uniform(0.93, 1.05) + rng.normal(0, 0.008, (S, S, 3)).astype(np.float32)
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    out = out.filter(ImageFilter.GaussianBlur(radius=k * rng.uniform(0.3, 0.7)))

    superpixels = _superpixels(rng, S)
    return {
        "image": np.asarray(out),
        "lesion": lesion,
        "artifact": artifact_mask,
        "field": fov > 0.5,
        "superpixels": superpixels,
        "features": {name: _superpixel_labels(superpixels, px, lesion) for name, px in feature_px.items()},
        "atypia": float(s),  # the latent score the cues were drawn from
        "mimic": bool(mimic),  # a benign lesion drawn with melanoma's cues
    }


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 below edge0, 1 above edge1 (or reversed when edge0 > edge1), smooth in between."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, S: int, grid: int) -> np.ndarray:
    """(S, S) float32 smooth random field, zero mean and unit std: bicubic upsampling of a grid x grid."""
    small = rng.standard_normal((grid, grid)).astype(np.float32)
    arr = np.asarray(Image.fromarray(small).resize((S, S), Image.Resampling.BICUBIC), dtype=np.float32)
    return (arr - arr.mean()) / (arr.std() + 1e-6)


def _skin(rng: np.random.Generator, S: int, k: float) -> np.ndarray:
    """(S, S, 3) skin: a tone, uneven redness and brightness, fine texture."""
    w = rng.dirichlet(np.ones(len(_SKIN)) * 0.7)
    tone = (w @ _SKIN).astype(np.float32)
    bright = _smooth_noise(rng, S, 4) * rng.uniform(0.015, 0.04)
    red = _smooth_noise(rng, S, 6) * rng.uniform(0.01, 0.04)
    fine = _smooth_noise(rng, S, max(8, S // 2)) * rng.uniform(0.008, 0.02)
    img = tone[None, None, :] * (1.0 + bright[..., None] + fine[..., None])
    img += red[..., None] * np.array([0.6, -0.4, -0.3], np.float32)
    return img.astype(np.float32)


def _lesion_colour(
    rng: np.random.Generator,
    S: int,
    kind: str,
    s: float,
    rho: np.ndarray,
    xx: np.ndarray,
    yy: np.ndarray,
    cx: float,
    cy: float,
) -> np.ndarray:
    """(S, S, 3) pigment colour: one shaded brown (benign) or blotches of several colours (atypical)."""
    base = _BENIGN_BROWNS[rng.integers(len(_BENIGN_BROWNS))] * rng.uniform(0.85, 1.1)
    if kind == "melanoma":  # darker on average
        base = base * (1 - 0.4 * s) + _MEL_COLOURS[0] * 0.4 * s
    if kind == "seborrheic_keratosis":
        base = base * 0.9 + np.array([0.08, 0.07, 0.02], np.float32)
    shade = rng.uniform(-0.1, 0.25) * (1.0 - np.clip(rho, 0, 1) ** 2)  # symmetric radial shading
    colour = base[None, None, :] * (1.0 - shade[..., None])
    n_colours = 1 + int(s > 0.45) + int(s > 0.6) + int(s > 0.8) + int(rng.random() < s * 0.5)
    if kind == "melanoma" and n_colours > 1:
        picks = rng.choice(len(_MEL_COLOURS), size=n_colours - 1, replace=False)
        fields = [np.zeros((S, S), np.float32)]
        direction = rng.uniform(0, 2 * np.pi)
        along = ((xx - cx) * np.cos(direction) + (yy - cy) * np.sin(direction)) / (S * 0.25)
        for i in range(n_colours - 1):
            # one-sided drift: blotches gather on one side of the lesion (asymmetry of colour)
            fields.append(_smooth_noise(rng, S, int(rng.integers(4, 8))) + (0.8 * along if i == 0 else 0.0))
        logits = np.stack(fields) * 3.0  # (C, S, S)
        weights = np.exp(logits - logits.max(0, keepdims=True))
        weights /= weights.sum(0, keepdims=True)
        palette = np.concatenate([base[None], _MEL_COLOURS[picks]], 0)  # (C, 3)
        colour = colour * weights[0, ..., None] + np.einsum("chw,cd->hwd", weights[1:], palette[1:])
    elif kind != "melanoma" and n_colours > 1:  # a dysplastic-looking nevus: a second, darker brown
        second = _BENIGN_BROWNS[2] * rng.uniform(0.8, 1.0)
        w = _smoothstep(0.3, 1.0, _smooth_noise(rng, S, 4))[..., None] * 0.7
        colour = colour * (1 - w) + second * w
    mottle = _smooth_noise(rng, S, max(8, S // 10)) * (0.03 + 0.06 * s)
    return (colour * (1.0 + mottle[..., None])).astype(np.float32)


def _network(
    rng: np.random.Generator,
    S: int,
    xx: np.ndarray,
    yy: np.ndarray,
    period: float,
    irregular: float,
    thick: float,
) -> np.ndarray:
    """(S, S) in [0, 1]: lines of a honeycomb mesh (sum of three plane waves at 120 degrees), optionally
    warped (irregular > 0) with a line thickness that varies over the image."""
    u, v = xx, yy
    if irregular > 0:
        grid = max(8, S // 16)
        u = xx + irregular * period * 0.9 * _smooth_noise(rng, S, grid)
        v = yy + irregular * period * 0.9 * _smooth_noise(rng, S, grid)
    angle = rng.uniform(0, np.pi / 3)
    wave = 2 * np.pi / period
    h = sum(
        np.cos(wave * (u * np.cos(angle + j * 2 * np.pi / 3) + v * np.sin(angle + j * 2 * np.pi / 3)))
        for j in range(3)
    )
    t = -0.4 + thick + (0.5 * irregular * _smooth_noise(rng, S, 6) if irregular > 0 else 0.0)
    lumpy = 0.75 + 0.25 * _smooth_noise(rng, S, max(8, S // 8))  # uneven line strength
    return np.clip(_smoothstep(0.35, -0.35, h - t) * lumpy, 0, 1)


def _layer(S: int, draw: Callable[[ImageDraw.ImageDraw], None], blur: float) -> np.ndarray:
    """Draw with PIL on an 8-bit layer, soften it, return (S, S) float32 coverage in [0, 1]."""
    layer = Image.new("L", (S, S), 0)
    draw(ImageDraw.Draw(layer))
    if blur > 0:
        layer = layer.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(layer, dtype=np.float32) / 255.0


def _composite(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return img * (1 - alpha[..., None]) + np.asarray(colour, np.float32) * alpha[..., None]


def _dots(
    rng: np.random.Generator,
    S: int,
    k: float,
    cx: float,
    cy: float,
    radius: Callable[[np.ndarray], np.ndarray],
    n: int,
    atypical: bool,
    big: bool = False,
) -> np.ndarray:
    """Dots inside the lesion: atypical = uneven sizes, clustered off-centre; else small and central."""
    if atypical:
        centre = rng.uniform(0, 2 * np.pi)
        theta = centre + rng.normal(0, 0.8, n)
        rel = rng.uniform(0.35, 0.95, n)
        size = k * rng.uniform(0.6, 2.3, n)
    else:
        theta = rng.uniform(0, 2 * np.pi, n)
        rel = np.sqrt(rng.uniform(0, 1, n)) * (0.8 if big else 0.5)
        size = k * (rng.uniform(1.5, 2.8, n) if big else rng.uniform(0.7, 1.3, n))
    r = rel * radius(theta)
    px, py = cx + r * np.cos(theta), cy + r * np.sin(theta)

    def draw(d: ImageDraw.ImageDraw) -> None:
        for x, y, q in zip(px, py, size, strict=True):
            d.ellipse([x - q, y - q, x + q, y + q], fill=255)

    return _layer(S, draw, blur=0.5 * k)


def _streaks(
    rng: np.random.Generator,
    S: int,
    k: float,
    cx: float,
    cy: float,
    radius: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Radial streaks across one arc of the border (asymmetric, as in melanoma)."""
    start, span = rng.uniform(0, 2 * np.pi), rng.uniform(0.7, 2.2)
    n = max(4, int(span * 7 * rng.uniform(0.7, 1.3)))
    angles = start + np.sort(rng.uniform(0, span, n))
    width = max(1, round(1.6 * k))

    def draw(d: ImageDraw.ImageDraw) -> None:
        for a in angles:
            r = float(radius(np.array([a]))[0])
            inner, outer = rng.uniform(0.78, 0.9), rng.uniform(1.0, 1.08)
            steps = np.linspace(inner, outer, 6)
            wobble = a + np.cumsum(rng.normal(0, 0.015, 6))
            pts = [
                (cx + t * r * np.cos(w), cy + t * r * np.sin(w)) for t, w in zip(steps, wobble, strict=True)
            ]
            d.line(pts, fill=230, width=width, joint="curve")
            if rng.random() < 0.4:  # pseudopod: a bulb at the tip
                x, y = pts[-1]
                q = width * 0.9
                d.ellipse([x - q, y - q, x + q, y + q], fill=230)

    return _layer(S, draw, blur=0.5 * k)


def _hairs(rng: np.random.Generator, S: int, k: float, count: int) -> np.ndarray:
    """Thin dark curved hairs (quadratic Bezier curves) anywhere in the image."""

    def draw(d: ImageDraw.ImageDraw) -> None:
        t = np.linspace(0, 1, 24)[:, None]
        for _ in range(count):
            p0 = rng.uniform(-0.1, 1.1, 2) * S
            direction = rng.uniform(0, 2 * np.pi)
            length = S * rng.uniform(0.3, 0.9)
            p2 = p0 + length * np.array([np.cos(direction), np.sin(direction)])
            p1 = (p0 + p2) / 2 + rng.normal(0, 0.15, 2) * length
            pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (24, 2)
            d.line(
                [tuple(p) for p in pts],
                fill=int(rng.integers(170, 240)),
                width=max(1, round(k * rng.uniform(1.0, 2.0))),
                joint="curve",
            )

    return _layer(S, draw, blur=0.35 * k)


def _artifact(
    rng: np.random.Generator,
    img: np.ndarray,
    S: int,
    k: float,
    cx: float,
    cy: float,
    r_max: float,
    vx: float,
    vy: float,
    field_r: float,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A sticker or an ink stroke in the field of view, clear of the lesion. Returns (image, mask).

    ``scale`` enlarges it (harder sets make the artifact an easier shortcut than the subtler lesion cues).
    """
    sticker = rng.random() < 0.5
    extent = S * (rng.uniform(0.045, 0.065) if sticker else rng.uniform(0.065, 0.1)) * scale
    margin = 0.02 * S
    for _ in range(20):
        cand = rng.uniform(0, S, (256, 2))  # (256, 2) candidate centres
        ok = (
            (np.hypot(cand[:, 0] - cx, cand[:, 1] - cy) >= r_max + extent + margin)
            & (np.hypot(cand[:, 0] - vx, cand[:, 1] - vy) <= field_r - extent - margin)
            & (cand.min(1) >= extent + 1)
            & (cand.max(1) <= S - extent - 1)
        )
        if ok.any():
            ax, ay = (float(v) for v in cand[rng.choice(np.flatnonzero(ok))])
            break
        extent *= 0.85
    else:  # unreachable with the lesion limits in render(); kept as a clear failure
        raise RuntimeError("no room for the artifact outside the lesion")

    if sticker:
        colour = _STICKER_COLOURS[rng.integers(len(_STICKER_COLOURS))] * rng.uniform(0.85, 1.05)
        cover = _layer(
            S, lambda d: d.ellipse([ax - extent, ay - extent, ax + extent, ay + extent], fill=255), 0.6 * k
        )
        yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5
        # shading: a soft highlight on one side, as on a glossy sticker
        hx, hy = ax - 0.35 * extent, ay - 0.35 * extent
        gloss = np.exp(-(((xx - hx) ** 2 + (yy - hy) ** 2) / (2 * (0.35 * extent) ** 2))) * 0.35
        fill = colour[None, None, :] * (0.9 + 0.1 * cover[..., None]) + gloss[..., None] * (1 - colour)
        img = img * (1 - cover[..., None]) + fill * cover[..., None]
    else:
        a = rng.uniform(0, 2 * np.pi)
        bend = rng.normal(0, 0.5)
        t = np.linspace(-1, 1, 20)
        pts = [
            (
                ax + extent * u * np.cos(a) - extent * bend * (1 - u * u) * np.sin(a),
                ay + extent * u * np.sin(a) + extent * bend * (1 - u * u) * np.cos(a),
            )
            for u in t
        ]
        width = max(2, round(k * rng.uniform(4.0, 8.0)))
        cover = _layer(S, lambda d: d.line(pts, fill=255, width=width, joint="curve"), 1.0 * k)
        ink = cover * rng.uniform(0.6, 0.85) * (1.0 + 0.15 * _smooth_noise(rng, S, 16))
        img = _composite(img, np.clip(ink, 0, 1), _INK * rng.uniform(0.85, 1.1))
    return img, cover > 0.5


def _superpixels(rng: np.random.Generator, S: int) -> np.ndarray:
    """(S, S) int32 superpixel index 0..K-1: a Voronoi partition around jittered grid seeds (SLIC-like
    cells of about S/16 px). Every index occurs."""
    S_full, S = S, (S + 1) // 2  # partition drawn at half resolution, then each pixel repeated 2 x 2
    cell = max(2.0, S / 16)
    n = math.ceil(S / cell)
    centres = (np.arange(n) + 0.5) * cell
    sy = centres[:, None] + rng.uniform(-0.35, 0.35, (n, n)) * cell  # (n, n)
    sx = centres[None, :] + rng.uniform(-0.35, 0.35, (n, n)) * cell
    sy, sx = sy.astype(np.float32), sx.astype(np.float32)
    ys = np.arange(S, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(S, dtype=np.float32)[None, :] + 0.5
    iy = np.minimum((ys // cell).astype(np.int64), n - 1)  # (S, 1)
    ix = np.minimum((xs // cell).astype(np.int64), n - 1)  # (1, S)
    best = np.full((S, S), np.inf, dtype=np.float32)
    label = np.zeros((S, S), dtype=np.int64)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            ci, cj = np.clip(iy + di, 0, n - 1), np.clip(ix + dj, 0, n - 1)  # (S, 1), (1, S)
            d = (ys - sy[ci, cj]) ** 2 + (xs - sx[ci, cj]) ** 2  # (S, S)
            closer = d < best
            best = np.where(closer, d, best)
            label = np.where(closer, ci * n + cj, label)
    label = label.repeat(2, 0).repeat(2, 1)[:S_full, :S_full]
    present = np.bincount(label.ravel(), minlength=n * n) > 0
    compact = np.cumsum(present) - 1  # old index -> 0..K-1 without gaps
    return compact[label].astype(np.int32)


def _superpixel_labels(superpixels: np.ndarray, pixels: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """(K,) uint8: 1 where a superpixel is mostly inside the lesion and covered by the drawn feature."""
    flat = superpixels.ravel()
    k = int(flat.max()) + 1
    area = np.bincount(flat, minlength=k)
    inside = np.bincount(flat, weights=lesion.ravel().astype(np.float64), minlength=k)
    hits = np.bincount(flat, weights=pixels.ravel().astype(np.float64), minlength=k)
    return ((hits >= np.maximum(2, 0.05 * area)) & (inside >= 0.5 * area)).astype(np.uint8)


def generative_examples(difficulty: float = 0.5, *, size: int = 128, seed: int = 0) -> list[dict]:
    """One drawn example of each kind of lesion the generator makes, for the data chapter's figure.

    Returns ``[{"title", "image", "lesion", "atypia"}]`` in the order: a typical melanoma, a subtle melanoma
    (low atypia), a typical nevus, an atypical nevus that mimics melanoma's cues (only at ``difficulty`` > 0),
    a seborrheic keratosis, and a nevus with the spurious artifact. Found by scanning image indices of
    ``seed``, so the figure is the same on every build.
    """
    wanted = [
        ("typical melanoma", "melanoma", False, lambda o: o["atypia"] > 0.75),
        ("subtle melanoma", "melanoma", False, lambda o: o["atypia"] < 0.45),
        ("typical nevus", "nevus", False, lambda o: o["atypia"] < 0.2),
        ("nevus mimicking melanoma", "nevus", False, lambda o: o["mimic"]),
        ("seborrheic keratosis", "seborrheic_keratosis", False, lambda o: True),
        ("nevus with an artifact", "nevus", True, lambda o: o["atypia"] < 0.35),
    ]
    examples = []
    for title, kind, artifact, accept in wanted:
        for index in range(400):
            out = render(kind, artifact, seed=seed, index=index, size=size, difficulty=difficulty)
            if accept(out):
                label = f"{title}\natypia {out['atypia']:.2f}"
                examples.append(
                    {"title": label, "image": out["image"], "lesion": out["lesion"], "atypia": out["atypia"]}
                )
                break
    return examples
