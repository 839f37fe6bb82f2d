"""Melanoma probability and an attention overlay for image files, robust to odd and hostile inputs.

Each image goes through the evaluation preprocessing of the checkpoint's run (centre crop 0.8 x min side,
resize, centre crop, per-dataset normalisation). Inputs in any common mode work: RGBA / LA / palette images
are composited over white, grayscale is replicated to three channels, CMYK is converted to RGB, and 16-bit
images are scaled to 8 bits (value / 257). A file that is not an image, is truncated, or claims more pixels
than ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression bomb) gets a one-line error; the other files are still
processed.

The overlay PNG shows the input crop and its saliency maps (jet colour map, 0.6 image + 0.4 map, as in the
paper's figures): the pool-3 and pool-4 attention maps of AttnMel-CNN, the CAM of VGG-16-GAP, Grad-CAM at
pool-5 for Mel-CNN and VGG-16.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attnmel.checkpoint import build_model_from_checkpoint, load_checkpoint
from attnmel.data.images import load_rgb
from attnmel.device import select_device
from attnmel.io import atomic_write_bytes, atomic_write_text
from attnmel.progress import bar

__all__ = [
    "PredictResult",
    "predict_images",
    "expand_image_paths",
    "unique_image_ids",
    "load_image_rgb",
    "IMAGE_SUFFIXES",
    "TABLE",
    "ISIC_TABLE",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")  # what a folder argument expands to
TABLE = "predictions.csv"  # path,melanoma,error: every input, failures included
ISIC_TABLE = "predictions_isic.csv"  # image_id,melanoma (ISIC challenge format): the images that were read

load_image_rgb = load_rgb  # the one decoder of training and evaluation (see attnmel.data.images.to_rgb)


@dataclass(frozen=True)
class PredictResult:
    """One input file: its melanoma probability and overlay, or the reason it failed."""

    path: Path
    probability: float | None = None
    overlay: Path | None = None
    error: str | None = None
    image_id: str = ""  # the file stem, made unique (``x``, ``x_2``) when several inputs share one

    def __post_init__(self) -> None:
        if not self.image_id:
            object.__setattr__(self, "image_id", self.path.stem)

    @property
    def ok(self) -> bool:
        return self.error is None


def _saliency(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits (1, 2) and saliency maps (1, 1, h, w) of one preprocessed image x (1, 3, S, S), by display label.

    The model's declared maps (attention, CAM: :func:`attnmel.saliency.compute_maps`); Grad-CAM at the global
    tap for models without any.
    """
    from attnmel.saliency import compute_maps, map_labels

    with torch.inference_mode():
        out = model(x)
        maps = compute_maps(model, x, out)
    if not maps:
        maps = compute_maps(model, x, out, gradcam=True)
    labels = map_labels(model, gradcam=True)
    return out.logits.float(), {labels[k]: v.float() for k, v in maps.items()}


def _overlay_png(image: np.ndarray, maps: dict[str, torch.Tensor], probability: float) -> bytes:
    """A row of panels: the input crop, then each map over it; the probability in the first panel's title."""
    import io

    from matplotlib.figure import Figure

    from attnmel.attention_eval import overlay

    panels = [("input", image)] + [(name, overlay(image, m[0], alpha=0.4)) for name, m in maps.items()]
    fig = Figure(figsize=(3.2 * len(panels), 3.6), layout="constrained")
    for ax, (title, panel) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        ax.imshow(panel)
        ax.set_title(title if title != "input" else f"P(melanoma) = {probability:.3f}", fontsize=11)
        ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def predict_images(
    checkpoint: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    device: str = "auto",
    overlays: bool = True,
    tta: bool = False,
) -> list[PredictResult]:
    """Melanoma probability and an overlay PNG (``<out_dir>/<image_id>_attention.png``) for each image file.

    ``paths`` may name folders (their image files) and glob patterns: :func:`expand_image_paths`. Writes
    ``<out_dir>/predictions.csv`` (``path,melanoma,error``: every input, failures with their reason) and
    ``<out_dir>/predictions_isic.csv`` (``image_id,melanoma``, the ISIC challenge format, for the images that were
    read; image_id is the file stem, made unique by :func:`unique_image_ids` when inputs share one). A file that cannot be read is reported in its result's ``error``
    (one line naming the file) and the others are still processed. ``tta``: the
    probability is the mean over the 8 dihedral views (:mod:`attnmel.tta`); the overlay shows the input's maps.
    """
    from torchvision import tv_tensors

    from attnmel.data import DataError
    from attnmel.evaluate import config_from_checkpoint
    from attnmel.loaders import normalisation

    files = expand_image_paths(paths)  # folders and patterns: fail before the model is loaded
    ckpt = load_checkpoint(checkpoint)
    config = config_from_checkpoint(ckpt)
    dev = select_device(device)
    model, _ = build_model_from_checkpoint(ckpt)
    model = model.to(dev).eval()
    from attnmel.data import eval_transform

    mean, std = normalisation(config.dataset)  # the training dataset's statistics
    transform = eval_transform(
        size=config.image_size,
        resize=config.resize,
        mean=mean,
        std=std,
        color_constancy=config.color_constancy,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: list[PredictResult] = []
    for path, image_id in bar(
        list(zip(files, unique_image_ids(files), strict=True)), desc="predict", unit="img"
    ):
        try:
            rgb = load_image_rgb(path)  # (H, W, 3) uint8
        except (DataError, OSError, ValueError) as err:
            results.append(PredictResult(path, error=_one_line(err, path), image_id=image_id))
            continue
        x = transform(
            tv_tensors.Image(torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous())
        )  # (3, S, S)
        x = x.as_subclass(torch.Tensor)[None].to(dev)  # (1, 3, S, S)
        logits, maps = _saliency(model, x)
        probability = float(torch.softmax(logits, dim=1)[0, 1])
        if tta:
            from attnmel.tta import tta_probabilities

            with torch.inference_mode():
                probability = float(tta_probabilities(model, x, logits)[0])
        overlay_path = None
        if overlays:
            crop = (
                x[0].cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
            )  # (3, S, S)
            crop_u8 = (crop.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # (S, S, 3)
            overlay_path = atomic_write_bytes(
                out / f"{image_id}_attention.png",
                _overlay_png(crop_u8, {k: v.cpu() for k, v in maps.items()}, probability),
            )
        results.append(PredictResult(path, probability, overlay_path, image_id=image_id))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")  # quotes paths and errors holding , " or newlines
    writer.writerow(["path", "melanoma", "error"])
    for r in results:
        writer.writerow([str(r.path), "" if r.probability is None else repr(r.probability), r.error or ""])
    atomic_write_text(out / TABLE, table.getvalue())
    isic = io.StringIO()
    writer = csv.writer(isic, lineterminator="\n")
    writer.writerow(["image_id", "melanoma"])
    for r in results:
        if r.ok:
            writer.writerow([r.image_id, repr(r.probability)])
    atomic_write_text(out / ISIC_TABLE, isic.getvalue())
    return results


def unique_image_ids(paths: Sequence[Path]) -> list[str]:
    """Each path's stem, with ``_2``, ``_3``, ... after the second and later uses of a stem (``a/x.jpg`` and
    ``b/x.png`` become ``x`` and ``x_2``), so the ISIC table and the overlay files name every input once."""
    used: set[str] = set()
    ids = []
    for path in paths:
        name, k = path.stem, 2
        while name in used:
            name, k = f"{path.stem}_{k}", k + 1
        used.add(name)
        ids.append(name)
    return ids


def expand_image_paths(items: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files named by ``items``, in order, each once.

    A folder gives its image files (``IMAGE_SUFFIXES``, any case; not recursive), sorted by name; a glob
    pattern the shell did not expand (``"data/*.jpg"``, ``"**/*.png"``) gives its matches, sorted (a matching
    folder gives its images); any other item is taken as a file (a missing one is then reported by
    :func:`predict_images` like any unreadable file). Raises :class:`~attnmel.data.DataError` (one line) for a
    folder without images or a pattern without matches.
    """
    from attnmel.data import DataError

    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise DataError(f"{path}: no image files ({' '.join(IMAGE_SUFFIXES)}) in this folder")
            found += images
        elif not path.exists() and any(c in text for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise DataError(f"no files match {text!r}")
            for match in matches:
                found += expand_image_paths([match]) if match.is_dir() else [match]
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def _one_line(err: BaseException, path: Path) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if str(path) in text else f"{path}: {text}"
