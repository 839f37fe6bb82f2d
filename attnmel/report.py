"""What a finished run folder shows a reader: figures, a model card and portable weights.

:func:`write_run_outputs` is called by :func:`attnmel.trainer.fit` (rank 0) after the final evaluation, when the
checkpoints, predictions and metrics are already on disk; it reads everything back from the run folder, so it
can also be run again on an old run. It writes::

    <run_dir>/figures/history.png                 train loss and its parts, validation AUC / AP, lr; best epoch
    <run_dir>/figures/<split>_roc_pr.png          ROC and PR curves of best.pt on each evaluated split
    <run_dir>/figures/<split>_reliability.png     reliability diagram and probability histogram
    <run_dir>/checkpoints/best.safetensors        best.pt's weights only (plain tensors, no pickle)
    <run_dir>/model_card.md                       data, protocol, metrics with CIs, limits

Every file is written atomically. A part that fails (a figure, the card, the weights) is reported as a
:class:`RunOutputWarning` and the others are still written: the run itself is never lost to a figure.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["RunOutputWarning", "write_run_outputs", "write_run_figures", "model_card", "write_model_card"]


class RunOutputWarning(UserWarning):
    """A figure, the model card or the safetensors copy of a run could not be written (the run is intact)."""


def _attempt(what: str, action: Callable[[], Any], log: Callable[[str], None] | None) -> Any:
    try:
        return action()
    except Exception as err:  # noqa: BLE001 - any failure here must leave the run as it is
        message = f"could not write {what}: {type(err).__name__}: {' '.join(str(err).split())}"
        warnings.warn(message, RunOutputWarning, stacklevel=3)
        if log is not None:
            log(f"warning: {message}")
        return None


def write_run_outputs(run_dir: str | os.PathLike, log: Callable[[str], None] | None = None) -> list[Path]:
    """Figures, ``best.safetensors`` and ``model_card.md`` of a finished run folder; returns the paths written.

    Never raises for a failed part: each failure is one :class:`RunOutputWarning` (and a ``log`` line).
    """
    from attnmel.checkpoint import load_checkpoint, save_safetensors

    run_dir = Path(run_dir)
    written: list[Path] = []
    written += _attempt("the figures", lambda: write_run_figures(run_dir, log=log), log) or []

    def weights() -> Path:
        best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
        extra = {"best_val_auc": best.get("best_val_auc"), "dataset": best.get("config", {}).get("dataset")}
        return save_safetensors(best, run_dir / "checkpoints" / "best.safetensors", extra=extra)

    written += [p for p in [_attempt("checkpoints/best.safetensors", weights, log)] if p is not None]
    card = _attempt("model_card.md", lambda: write_model_card(run_dir), log)
    written += [card] if card is not None else []
    return written


def write_run_figures(run_dir: str | os.PathLike, log: Callable[[str], None] | None = None) -> list[Path]:
    """``figures/history.png`` and, per evaluated split, the ROC/PR and reliability figures of best.pt (read
    back from ``predictions/<split>.csv`` and the split's labels). A split that fails is warned about alone."""
    from attnmel.evaluate import _figures
    from attnmel.experiments import load_run
    from attnmel.plots import plot_history, save_figure

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    figures = run_dir / "figures"
    written = [save_figure(plot_history(run.history, best_epoch=run.best_epoch), figures / "history.png")]
    for split in run.metrics:

        def one(split: str = split) -> list[Path]:
            ids, labels, prob = run.predictions(split)
            _figures(run_dir, split, {"label": labels, "prob": prob}, run.config.model)
            return [
                p
                for p in (figures / f"{split}_roc_pr.png", figures / f"{split}_reliability.png")
                if p.is_file()
            ]

        written += _attempt(f"the figures of {split}", one, log) or []
    return written


# ------------------------------------------------------------------------------------------------ model card
def _split_sizes(run_dir: Path, split: str, metrics: dict[str, Any] | None) -> tuple[Any, Any]:
    """(images, melanoma) of a split: from the run's ``data/<split>.json``, else its metrics."""
    path = run_dir / "data" / f"{split}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return data.get("n"), data.get("class_counts", {}).get("1", 0)
    if metrics:
        return metrics.get("n"), metrics.get("n_pos")
    return None, None


def _n_parameters(run_dir: Path) -> int | None:
    try:
        from attnmel.checkpoint import load_checkpoint

        state = load_checkpoint(run_dir / "checkpoints" / "best.pt")["model"]
    except Exception:  # noqa: BLE001 - the card is still useful without the count
        return None
    return int(sum(v.numel() for k, v in state.items() if v.is_floating_point() and "running_" not in k))


def model_card(run_dir: str | os.PathLike) -> str:
    """The Markdown model card of a finished run: model, data, protocol, metrics with CIs, figures, limits."""
    import attnmel
    from attnmel.data.registry import get_dataset
    from attnmel.experiments import load_run, metrics_markdown

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    c = run.config
    train, val, evals = c.splits
    best = next((r for r in run.history if int(r["epoch"]) == run.best_epoch), {})
    val_auc = best.get("val_auc")
    n_params = _n_parameters(run_dir)
    from_scratch = c.weights is None
    spec = get_dataset(c.dataset)
    lines = [
        f"# Model card: {c.model} ({run_dir.name})",
        "",
        f"Written by attnmel {attnmel.__version__} at the end of training; every number below is read from this "
        "run folder. A research artefact reproducing Yan et al., *Melanoma Recognition via Visual Attention* "
        "(IPMI 2019): not a medical device, not for diagnosis.",
        "",
        "## Model",
        "",
        f"- Architecture: `{c.model}` on backbone `{c.backbone}`"
        + (f", attention normalisation `{c.normalize}`" if c.model == "attnmel_cnn" else "")
        + (f" ({n_params:,} parameters)" if n_params else ""),
        f"- Initialisation: {'from scratch (random weights)' if from_scratch else f'pretrained `{c.weights}`'}",
        f"- Weights: `checkpoints/best.pt` (epoch {run.best_epoch}"
        + (f", validation AUC {val_auc:.4f}" if isinstance(val_auc, float) and math.isfinite(val_auc) else "")
        + "); `checkpoints/best.safetensors`, the same weights as plain tensors "
        "(`attnmel.checkpoint.load_safetensors`)",
        f"- Input: RGB, centre crop of 0.8 x the short side, resized to {c.resize} px, centre {c.image_size} px "
        f"crop, normalised with the {c.dataset} statistics",
        "- Output: melanoma probability (softmax of 2 logits)",
        "",
        "## Data",
        "",
        f"Dataset `{c.dataset}`"
        + (" (synthetic, generated by `attnmel synth`)" if spec.generated else "")
        + f", folder `{c.resolved_data_root()}`.",
        "",
        "| split | role | images | melanoma |",
        "|---|---|---|---|",
    ]
    roles = [(train, "training"), (val, "validation (model selection)")]
    roles += [(s, "evaluation") for s in evals if s not in (train, val)]
    for split, role in roles:
        n, n_pos = _split_sizes(run_dir, split, run.metrics.get(split))
        lines.append(f"| {split} | {role} | {'—' if n is None else n} | {'—' if n_pos is None else n_pos} |")
    loss = f"focal loss (gamma {c.focal_gamma}, alpha {c.focal_alpha})"
    if c.roi is not None and c.model == "attnmel_cnn":
        loss += (
            f" + Dice attention regulariser on the `{c.roi}` ROI (lambda3 {c.lambda3}, lambda4 {c.lambda4})"
        )
    lines += [
        "",
        "## Training protocol",
        "",
        f"- {c.epochs} epochs (best kept by validation AUC), batch {c.batch_size}, "
        f"{c.passes_per_epoch or 'default'} pass(es) per epoch, sampler `{c.sampler}`"
        + (f" (positives x{c.oversample})" if c.sampler == "oversample" else ""),
        f"- Loss: {loss}",
        f"- SGD lr {c.lr}, momentum {c.momentum}{', Nesterov' if c.nesterov else ''}, weight decay "
        f"{c.weight_decay}; StepLR x{c.lr_gamma} every {c.lr_step} epochs"
        + (f"; gradient norm clipped at {c.grad_clip_norm}" if c.grad_clip_norm else ""),
        f"- Seed {c.seed}; device `{c.device}`, precision `{c.precision}`; the full settings are in `config.json`",
        "",
        "## Metrics (best checkpoint)",
        "",
        f"95% bootstrap confidence intervals ({c.n_boot} stratified resamples); threshold {c.threshold} for "
        "sensitivity, specificity and precision.",
        "",
        metrics_markdown(run.metrics) if run.metrics else "No evaluation was written.",
        "",
        "## Figures",
        "",
        "- `figures/history.png`: training curves, best epoch marked",
    ]
    for split in run.metrics:
        lines.append(f"- `figures/{split}_roc_pr.png`, `figures/{split}_reliability.png`")
    limits = [
        "Trained from scratch: the paper fine-tunes an ImageNet-initialised VGG-16; expect lower AUC/AP."
        if from_scratch
        else f"ImageNet-initialised (`{c.weights}`), as in the paper.",
        "Synthetic images: the numbers say the pipeline works, nothing about melanoma recognition."
        if spec.generated
        else "Real dermoscopy images from one archive: performance on other devices, sites and skin types is "
        "unknown.",
        f"Input {c.image_size} px"
        + (" (the paper: 224 px)." if c.image_size != 224 else ", as in the paper."),
        f"One seed ({c.seed}): the spread over seeds is not measured here; the CIs cover test-set sampling only.",
    ]
    small = [s for s, m in run.metrics.items() if (m.get("n") or 0) < 200]
    if small:
        limits.append(f"Small evaluation sets ({', '.join(small)}: under 200 images): wide intervals.")
    if c.max_train_samples or c.max_eval_samples:
        limits.append("Subsampled splits (max_train_samples / max_eval_samples): not the full protocol.")
    lines += ["", "## Limits", ""] + [f"- {item}" for item in limits]
    return "\n".join(lines) + "\n"


def write_model_card(run_dir: str | os.PathLike) -> Path:
    """Write :func:`model_card` to ``<run_dir>/model_card.md`` atomically."""
    from attnmel.io import atomic_write_text

    return atomic_write_text(Path(run_dir) / "model_card.md", model_card(run_dir))
