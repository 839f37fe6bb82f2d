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

__all__ = ["PredictResult", "predict_images", "load_image_rgb"]

load_image_rgb = load_rgb  # the one decoder of training and evaluation (see attnmel.data.images.to_rgb)


@dataclass(frozen=True)
class PredictResult:
    """One input file: its melanoma probability and overlay, or the reason it failed."""

    path: Path
    probability: float | None = None
    overlay: Path | None = None
    error: str | None = None

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
) -> list[PredictResult]:
    """Melanoma probability and an overlay PNG (``<out_dir>/<stem>_attention.png``) for each image file.

    Writes ``<out_dir>/predictions.csv`` (``path,melanoma,error``). A file that cannot be read is reported in
    its result's ``error`` (one line naming the file) and the others are still processed.
    """
    from torchvision import tv_tensors

    from attnmel.data import DataError
    from attnmel.evaluate import config_from_checkpoint
    from attnmel.loaders import normalisation

    ckpt = load_checkpoint(checkpoint)
    config = config_from_checkpoint(ckpt)
    dev = select_device(device)
    model, _ = build_model_from_checkpoint(ckpt)
    model = model.to(dev).eval()
    from attnmel.data import eval_transform

    mean, std = normalisation(config.dataset)  # the training dataset's statistics
    transform = eval_transform(size=config.image_size, resize=config.resize, mean=mean, std=std)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: list[PredictResult] = []
    used: set[str] = set()
    for raw in paths:
        path = Path(raw)
        try:
            rgb = load_image_rgb(path)  # (H, W, 3) uint8
        except (DataError, OSError, ValueError) as err:
            results.append(PredictResult(path, error=_one_line(err, path)))
            continue
        x = transform(
            tv_tensors.Image(torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous())
        )  # (3, S, S)
        x = x.as_subclass(torch.Tensor)[None].to(dev)  # (1, 3, S, S)
        logits, maps = _saliency(model, x)
        probability = float(torch.softmax(logits, dim=1)[0, 1])
        overlay_path = None
        if overlays:
            name = path.stem
            k = 2
            while name in used:
                name, k = f"{path.stem}_{k}", k + 1
            used.add(name)
            crop = (
                x[0].cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
            )  # (3, S, S)
            crop_u8 = (crop.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # (S, S, 3)
            overlay_path = atomic_write_bytes(
                out / f"{name}_attention.png",
                _overlay_png(crop_u8, {k: v.cpu() for k, v in maps.items()}, probability),
            )
        results.append(PredictResult(path, probability, overlay_path))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")  # quotes paths and errors holding , " or newlines
    writer.writerow(["path", "melanoma", "error"])
    for r in results:
        writer.writerow([str(r.path), "" if r.probability is None else repr(r.probability), r.error or ""])
    atomic_write_text(out / "predictions.csv", table.getvalue())
    return results


def _one_line(err: BaseException, path: Path) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if str(path) in text else f"{path}: {text}"
