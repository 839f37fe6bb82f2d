"""Evaluate a saved checkpoint on one dataset split: metrics JSON, predictions CSV, figures, attention Jaccard.

The metrics are those of the paper (AP and AUC, scikit-learn, Sect. 3.1) plus threshold metrics, bootstrap
95% confidence intervals and calibration (:func:`attnmel.metrics.summarise`). Where the split has lesion
masks, the model's maps are scored with the Table 3 protocol (:mod:`attnmel.attention_eval`: upsample,
min-max per image, threshold 0.5, Jaccard per image, averaged) and the pointing game: the pool-3 and pool-4
attention maps of AttnMel-CNN, the CAM of VGG-16-GAP.

Output folder::

    <out_dir>/predictions/<split>.csv            image_id, melanoma (ISIC challenge style)
    <out_dir>/metrics/<split>.json               summarise(...) + "attention" + checkpoint facts
    <out_dir>/figures/<split>_roc_pr.png         ROC and precision-recall curves
    <out_dir>/figures/<split>_reliability.png    reliability curve and probability histogram
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnmel.checkpoint import build_model_from_checkpoint, load_checkpoint
from attnmel.config import TrainConfig
from attnmel.device import autocast, move_batch, resolve_precision, select_device
from attnmel.io import atomic_write_json
from attnmel.loaders import split_loader  # re-exported: the chapters build their loaders from here
from attnmel.progress import bar
from attnmel.runlock import RunLock

__all__ = [
    "evaluate_checkpoint",
    "collect_maps",
    "attention_summary",
    "split_loader",
    "config_from_checkpoint",
    "default_split",
]


def config_from_checkpoint(ckpt: dict[str, Any], **overrides: Any) -> TrainConfig:
    """The checkpoint's TrainConfig with ``overrides`` (unknown saved keys from other versions are dropped)."""
    from attnmel.config import fields

    names = {f.name for f in fields()}
    saved = {k: v for k, v in ckpt.get("config", {}).items() if k in names}
    saved.update({k: v for k, v in overrides.items() if v is not None})
    saved["resume"] = False
    return TrainConfig.from_dict(saved)


def collect_maps(
    model: nn.Module,
    loader: Any,
    *,
    device: torch.device,
    precision: str = "fp32",
    keep_images: bool = False,
    gradcam: bool = False,
    tta: bool = False,
    progress: bool = True,
    channels_last: bool = False,
    maps: bool = True,
) -> dict[str, Any]:
    """Probabilities, labels, ids, lesion masks and the model's saliency maps over a loader.

    Returns ``{"image_id": [str], "label": (N,) int64, "prob": (N,) float64, "mask": (N, 1, S, S) bool,
    "has_mask": (N,) bool, "maps": {key: (N, 1, h, w)}}`` with the maps the model declares
    (:func:`attnmel.saliency.compute_maps`: ``"pool3"``, ``"pool4"`` attention, or ``"cam"``; tap names on other
    backbones); ``keep_images`` adds ``"image"`` (N, 3, S, S), the normalised inputs as the network saw them,
    and ``gradcam`` adds ``maps["gradcam"]``, Grad-CAM of the melanoma class at the global tap (fp32, with
    gradients, so it costs a backward pass per batch). ``tta``: the probabilities are the mean over the 8 dihedral
    views (:func:`attnmel.tta.tta_probabilities`); the maps stay those of the untransformed input.
    ``progress``: a bar over the batches on stderr when someone watches (:func:`attnmel.progress.watching`).
    ``channels_last``: the images go in NHWC memory order, as a channels-last model was trained.
    ``maps=False`` skips the saliency maps (``"maps"`` is then empty): a split without lesion masks has nothing to
    score them against, and a CAM costs VGG-GAP a second pass through its classifier.
    Raises ValueError when the loader yields no image.
    """
    from attnmel.saliency import GRADCAM, compute_maps, model_grad_cam

    if gradcam and not maps:
        raise ValueError("gradcam=True adds a map, so it needs maps=True")
    model.eval()
    ids: list[str] = []
    labels, probs, masks, has_mask, images = [], [], [], [], []
    found_maps: dict[str, list[torch.Tensor]] = {}
    for batch in bar(loader, desc="evaluate", unit="batch", enabled=progress):
        batch = move_batch(batch, device, channels_last)
        with torch.inference_mode(), autocast(device, precision):
            out = model(batch["image"])
            found = compute_maps(model, batch["image"], out) if maps else {}  # key -> (N, 1, h, w)
            if tta:
                from attnmel.tta import tta_probabilities

                prob = tta_probabilities(model, batch["image"], out.logits)  # (N,) mean over 8 views
            else:
                prob = torch.softmax(out.logits.float(), dim=1)[:, 1].double()  # (N,)
        if gradcam:
            found[GRADCAM] = model_grad_cam(model, batch["image"])  # (N, 1, h, w), fp32
        for name, value in found.items():
            found_maps.setdefault(name, []).append(value.float().cpu())
        probs.append(prob.cpu())
        labels.append(batch["label"].cpu())
        masks.append(batch["mask"].cpu() > 0.5)  # (N, 1, S, S)
        has_mask.append(torch.as_tensor(batch["has_mask"]).cpu().bool())
        if keep_images:
            images.append(batch["image"].float().cpu())
        ids.extend(str(i) for i in batch["image_id"])
    if not ids:
        raise ValueError("the loader yielded no image: nothing to evaluate (were all listed images skipped?)")
    result = {
        "image_id": ids,
        "label": torch.cat(labels).numpy(),
        "prob": torch.cat(probs).numpy(),
        "mask": torch.cat(masks),
        "has_mask": torch.cat(has_mask),
        "maps": {k: torch.cat(v) for k, v in found_maps.items()},
    }
    if keep_images:
        result["image"] = torch.cat(images)
    return result


def attention_summary(result: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """Table 3's Jaccard and the pointing game for :func:`collect_maps`' ``result``, per map; None when the model
    has no maps (Mel-CNN) or no image of the split has a lesion mask (ISIC 2017 Test_v2)."""
    if not result["maps"] or not bool(result["has_mask"].any()):
        return None
    from attnmel.attention_eval import attention_report

    return attention_report(result["maps"], result["mask"], result["has_mask"])


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    dataset: str | None = None,
    data_root: str | os.PathLike | None = None,
    split: str | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "auto",
    num_workers: int = 0,
    max_samples: int | None = None,
    n_boot: int = 1000,
    threshold: float = 0.5,
    plots: bool = True,
    seed: int = 0,
    missing: str = "error",
    tta: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``split`` of ``dataset`` (default: the dataset it was trained on).

    Args:
        checkpoint: an attnmel checkpoint (``checkpoints/best.pt`` of a run folder).
        dataset, data_root: a registered dataset (``attnmel.data.registry``: synthetic, isic2017, isic2016, ph2)
            and its folder; None = the training run's. The input is normalised as in training whatever the dataset.
        split: e.g. ``"Test_v2"`` (ISIC 2017), ``"Test"`` (ISIC 2016, PH2), ``"Test_shift"`` (synthetic);
            None = the dataset's test split (:func:`default_split`).
        out_dir: output folder; None = ``<run folder>/evaluation`` for a run's checkpoint, and
            ``<folder>/<stem>-evaluation`` beside a loose checkpoint file. It is locked while written.
        max_samples: evaluate a seeded subset of this size (quick checks).
        n_boot: bootstrap resamples for the AP / AUC confidence intervals (0 = none).
        missing: ``"error"`` or ``"skip"`` listed images absent from the folder.
        tta: average the melanoma probability over the 8 dihedral views (flips and 90-degree rotations,
            :mod:`attnmel.tta`); recorded as ``"tta"`` in the metrics.
        channels_last: model and images in NHWC memory order, as a ``channels_last`` run's own evaluation (in
            bf16 the two orders round differently, so this gives training's figures to the last digit).

    Returns:
        The metrics dict written to ``<out_dir>/metrics/<split>.json`` (``out_dir`` included).
    """
    from attnmel.data import DataError, unwrap_worker_error

    checkpoint = Path(checkpoint)
    out = Path(out_dir) if out_dir is not None else default_out_dir(checkpoint)
    try:
        with RunLock(out, "evaluate"):
            return _evaluate(
                checkpoint, out, dataset, data_root, split, batch_size=batch_size, device=device,
                precision=precision, num_workers=num_workers, max_samples=max_samples, n_boot=n_boot,
                threshold=threshold, plots=plots, seed=seed, missing=missing, tta=tta, channels_last=channels_last,
            )  # fmt: skip
    except DataError as err:
        raise unwrap_worker_error(err) from None


def default_split(dataset: str) -> str:
    """The test split of ``dataset``: its first evaluation split that is not the validation split."""
    from attnmel.data.registry import get_dataset

    spec = get_dataset(dataset)
    return next(s for s in spec.eval_splits if s != spec.val_split)


def default_out_dir(checkpoint: Path) -> Path:
    """``<run>/evaluation`` for ``<run>/checkpoints/*.pt``; ``<stem>-evaluation`` beside any other file."""
    folder = checkpoint.resolve().parent
    if folder.name == "checkpoints" and (folder.parent / "config.json").is_file():
        return folder.parent / "evaluation"
    return folder / f"{checkpoint.stem}-evaluation"


def _evaluate(
    checkpoint: Path,
    out: Path,
    dataset: str | None,
    data_root: str | os.PathLike | None,
    split: str | None,
    *,
    batch_size: int,
    device: str,
    precision: str,
    num_workers: int,
    max_samples: int | None,
    n_boot: int,
    threshold: float,
    plots: bool,
    seed: int,
    missing: str,
    tta: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    from attnmel.metrics import summarise, write_predictions_csv

    ckpt = load_checkpoint(checkpoint)
    dev = select_device(device)
    prec = resolve_precision(precision, dev)
    trained_on = ckpt.get("config", {}).get("dataset")
    source = ckpt
    if dataset is not None and dataset != trained_on:  # another dataset: the run's folder is not its folder
        source = {**ckpt, "config": {**ckpt.get("config", {}), "data_root": None}}
    config = config_from_checkpoint(
        source,
        dataset=dataset,
        data_root=str(data_root) if data_root is not None else None,
        max_eval_samples=max_samples,
        num_workers=num_workers,
        seed=seed,
        missing=missing,
    )
    split = split or default_split(config.dataset)
    model, _ = build_model_from_checkpoint(ckpt)
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    loader = split_loader(
        config,
        split,
        limit=max_samples,
        batch_size=batch_size,
        num_workers=num_workers,
        device=dev,
        normalise_as=trained_on or config.dataset,  # the model keeps its own input statistics
    )
    result = collect_maps(model, loader, device=dev, precision=prec, tta=tta, channels_last=channels_last)
    write_predictions_csv(out / "predictions" / f"{split}.csv", result["image_id"], result["prob"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a one-class split: AUC / AP are recorded as null
        metrics = summarise(result["label"], result["prob"], threshold=threshold, n_boot=n_boot, seed=seed)
    metrics.update(
        split=split,
        dataset=config.dataset,
        data_root=str(config.resolved_data_root()),
        checkpoint=str(checkpoint),
        arch=ckpt["arch"],
        epoch=int(ckpt["epoch"]),
        image_size=config.image_size,
        tta=bool(tta),
        out_dir=str(out),
    )
    metrics["attention"] = attention_summary(result)
    atomic_write_json(out / "metrics" / f"{split}.json", metrics)
    if plots:
        _figures(out, split, result, ckpt["arch"])
    return metrics


def _figures(out: Path, split: str, result: dict[str, Any], arch: str) -> None:
    from attnmel.plots import plot_reliability, plot_roc_pr, save_figure

    y, p = result["label"], result["prob"]
    if len(set(y.tolist())) < 2:
        warnings.warn(f"{split}: one class only, no ROC / PR figure", stacklevel=3)
    else:
        save_figure(plot_roc_pr({f"{arch} ({split})": (y, p)}), out / "figures" / f"{split}_roc_pr.png")
    save_figure(plot_reliability(y, p, label=arch), out / "figures" / f"{split}_reliability.png")
