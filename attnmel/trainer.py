"""The training engine: ``fit(config)`` runs the paper's protocol and leaves a self-contained run folder.

Protocol (docs/REFERENCE.md, Training; the paper, Sect. 3): the loss of Eq. 5 (focal loss, plus the Dice
attention regulariser of Eq. 4 on pool-3 and pool-4 when an ROI is given), SGD with Nesterov momentum and weight
decay, StepLR stepped at the end of every epoch, one epoch = ``passes_per_epoch`` passes over the (oversampled)
training list, validation AUC after every epoch, the best epoch kept when its AUC is strictly better.

Run folder::

    <run_dir>/config.json                  the TrainConfig
    <run_dir>/history.csv, history.json    one row per epoch: train loss and its parts, val AP/AUC, lr, seconds
    <run_dir>/checkpoints/best.pt          best validation AUC   (attnmel.checkpoint format)
    <run_dir>/checkpoints/latest.pt        last finished epoch   (resume point)
    <run_dir>/checkpoints/best_val.pt      best validation AUC, when select_epoch='last' (best.pt is the last)
    <run_dir>/predictions/<split>.csv      best checkpoint, ISIC-challenge style (image_id, melanoma)
    <run_dir>/metrics/<split>.json         AP, AUC with bootstrap CIs, threshold metrics, calibration
    <run_dir>/data/<split>.json            which samples each split held
    <run_dir>/tensorboard/                 when tensorboard=True

One writer: ``fit`` holds the run folder's :class:`~attnmel.runlock.RunLock` from start to end, so a second
training into the same folder is refused (naming the holder) instead of mixing its files with the first's; the
temporaries a killed writer left behind are removed when the lock is taken.

Divergence: a NaN/inf loss stops the run before its update; NaN/inf weights (a finite loss can still blow the
weights up) are caught after every epoch, before validation and before any checkpoint is written. Both raise
:class:`TrainingDiverged` with the epoch, the batch and what to change.

Reproducibility: every epoch reseeds the torch / numpy / python generators and the DataLoader's generator from
``(seed, epoch, rank)``, so the data order, the augmentation and dropout of epoch ``e`` do not depend on
whether the run was interrupted before it: on the CPU, 2 epochs straight and 1 epoch + resume + 1 epoch give
bit-identical weights. Checkpoints are written atomically, best before latest, so a crash at any point leaves a
consistent pair.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import SequentialSampler

from attnmel import distributed, progress
from attnmel.checkpoint import (
    BackgroundWriter,
    cpu_snapshot,
    load_checkpoint,
    load_model_weights,
    make_checkpoint,
    save_checkpoint,
    set_rng_state,
    unwrap_model,
)
from attnmel.config import DATASET_SPLITS, TrainConfig
from attnmel.data.registry import get_dataset
from attnmel.device import (
    autocast,
    begin_graph_step,
    compile_model,
    configure_backends,
    make_grad_scaler,
    move_batch,
    resolve_precision,
    select_device,
    uses_cuda_graphs,
)
from attnmel.io import atomic_write_json, atomic_write_text
from attnmel.loaders import (  # re-exported: these used to live here
    EpochLoader,
    check_gpu_decode,
    close_loader,
    ensure_synthetic,
    epoch_seed,
    fill_cache_on_gpu,
    load_split,
    make_dataset,
    make_loader,
    normalisation,
    train_sampler,
)
from attnmel.losses import soft_targets
from attnmel.runlock import RunLock, remove_stale_temporaries

__all__ = [
    "RunResult",
    "TrainingDiverged",
    "fit",
    "train_step",
    "predict_loader",
    "build_optimizer",
    "build_scheduler",
    "lr_factor",
    "mix_batch",
    "build_ema",
    "build_loss",
    "load_split",
    "ensure_synthetic",
    "make_dataset",
    "fill_cache_on_gpu",
    "HISTORY_COLUMNS",
]

HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_focal",
    "train_dice3",
    "train_dice4",
    "train_images",
    "val_loss",
    "val_ap",
    "val_auc",
    "is_best",
    "seconds",  # the whole epoch: training, validation, checkpoints
    "train_seconds",  # its SGD steps alone (what the trainer's images/s is measured over)
)
# Settings that must not change when a run is resumed (others, e.g. epochs, device, num_workers, may).
RESUME_LOCKED = (
    "dataset",
    "synthetic_n",
    "synthetic_size",
    "synthetic_seed",
    "synthetic_artifact_bias",
    "train_split",
    "val_split",
    "max_train_samples",
    "model",
    "backbone",
    "normalize",
    "roi",
    "image_size",
    "resize",
    "batch_size",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "lr_step",
    "lr_gamma",
    "grad_clip_norm",
    "passes_per_epoch",
    "oversample",
    "sampler",
    "focal_gamma",
    "focal_alpha",
    "lambda3",
    "lambda4",
    "seed",
    "synthetic_difficulty",
    "crop_scale",
    "color_jitter",
    "color_constancy",
    "label_smoothing",
    "mixup",
    "lr_schedule",
    "warmup_epochs",
    "ema",
    "select_epoch",
)


# What only a resume needs: kept in latest.pt, left out of best.pt (half its size: no momentum buffers).
RESUME_STATE = ("optimizer", "scheduler", "scaler", "rng", "train_model", "ema_updates")

DIVERGED_HINT = "lower --lr, or set --grad-clip-norm (e.g. 5)"


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the run stopped before anything bad was checkpointed."""

    def __init__(self, message: str, epoch: int, batch: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


LOSS_PARTS = ("total", "focal", "dice3", "dice4")  # what train_step returns, in this order
NONFINITE_CHECK_EVERY = 50  # steps between the host's looks at the loss (each look waits for the device)


class _EpochLosses:
    """The epoch's loss sums and its first non-finite step, kept on the device so that a step never waits for
    the host. :meth:`check` looks (one synchronisation) every ``NONFINITE_CHECK_EVERY`` steps and at the epoch's
    end, before any checkpoint is written, so a diverged run still stops with its last good checkpoint intact."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(len(LOSS_PARTS), dtype=torch.float64, device=device)  # each part x batch size
        self.images = 0
        self.first_bad = torch.zeros((), dtype=torch.long, device=device)  # 1-based step, 0: none yet
        self.bad_parts = torch.zeros(len(LOSS_PARTS), dtype=torch.float64, device=device)

    def add(self, parts: torch.Tensor, n: int, index: int) -> None:
        parts = parts.detach().double()
        newly = (self.first_bad == 0) & ~torch.isfinite(parts[0])
        self.first_bad = torch.where(newly, index, self.first_bad)
        self.bad_parts = torch.where(newly, parts, self.bad_parts)
        self.sums += parts * n
        self.images += n

    def check(self, epoch: int, batches: int, latest_path: Path, precision: str) -> None:
        """Raise TrainingDiverged when any step so far (on any process) had a NaN or infinite loss."""
        flag = (self.first_bad > 0).double().reshape(1)
        distributed.all_reduce_sum(flag)  # every process stops together
        if flag.item() == 0:
            return
        index = int(self.first_bad)
        where = f"batch {index}/{batches}" if index else "a batch of another process"
        parts = dict(zip(LOSS_PARTS, self.bad_parts.tolist(), strict=True))
        raise TrainingDiverged(
            f"training diverged at epoch {epoch}, {where}: loss = {parts['total']} "
            f"(focal {parts['focal']}, dice3 {parts['dice3']}, dice4 {parts['dice4']}); "
            f"{_kept(epoch, latest_path)}. Try: {DIVERGED_HINT}"
            f"{', or precision fp32' if precision != 'fp32' else ''}.",
            epoch,
            index,
        )

    def means(self) -> dict[str, float]:
        """Per-image means over the epoch (all processes), as ``train_<part>``; ``train_images``."""
        totals = torch.cat([self.sums.cpu(), torch.tensor([float(self.images)], dtype=torch.float64)])
        distributed.all_reduce_sum(totals)
        images = max(totals[-1].item(), 1.0)
        row = {
            f"train_{'loss' if k == 'total' else k}": totals[i].item() / images
            for i, k in enumerate(LOSS_PARTS)
        }
        return {**row, "train_images": int(totals[-1].item())}


@dataclass
class RunResult:
    """What ``fit`` returns; everything in it is also on disk in ``run_dir``."""

    run_dir: Path
    best_epoch: int
    best_val_auc: float
    history: list[dict[str, Any]]
    test_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> metrics.summarise(...)
    seconds: float = 0.0
    # which epoch best.pt holds, in words, and under select_epoch="last" where the best one went ("" off rank 0)
    kept: str = ""


# ----------------------------------------------------------------------------------------------- building blocks
def build_model_for(config: TrainConfig) -> nn.Module:
    """The model named by the config (weights loaded into the backbone when asked)."""
    from attnmel.models import build_model

    kwargs: dict[str, Any] = {"backbone": config.backbone, "weights": config.weights}
    if config.model == "attnmel_cnn":
        kwargs["normalize"] = config.normalize
    return build_model(config.model, **kwargs)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD, lr 0.01, momentum 0.9, Nesterov, weight decay 1e-4 on every parameter (the authors' setting)."""
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> Any:
    """Stepped once at the end of each epoch. The paper's: lr x ``lr_gamma`` every ``lr_step`` epochs (StepLR);
    with ``warmup_epochs`` or ``lr_schedule="cosine"``, the factor of :func:`lr_factor` (LambdaLR)."""
    if config.lr_schedule == "step" and config.warmup_epochs == 0:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    factor = functools.partial(
        lr_factor,
        schedule=config.lr_schedule,
        warmup=config.warmup_epochs,
        epochs=config.epochs,
        step=config.lr_step,
        gamma=config.lr_gamma,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def lr_factor(done: int, *, schedule: str, warmup: int, epochs: int, step: int, gamma: float) -> float:
    """The learning rate of the epoch after ``done`` finished ones, as a multiple of ``lr``.

    Linear warm-up ``(done + 1) / (warmup + 1)`` over the first ``warmup`` epochs; then either the paper's steps
    (``gamma ** (done // step)``) or a cosine from 1 towards 0 over the remaining epochs (never 0 on the last).
    """
    if done < warmup:
        return (done + 1) / (warmup + 1)
    if schedule == "step":
        return gamma ** (done // step)
    progress = (done - warmup) / max(1, epochs - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_loss(config: TrainConfig) -> nn.Module:
    """The loss of Eq. 5: focal loss plus lambda3 / lambda4 Dice regularisers (active only with an ROI)."""
    from attnmel.losses import AttnMelLoss

    return AttnMelLoss(
        gamma=config.focal_gamma,
        alpha=config.focal_alpha,
        lambda3=config.lambda3,
        lambda4=config.lambda4,
        label_smoothing=config.label_smoothing,
    )


def build_ema(model: nn.Module, config: TrainConfig) -> Any:
    """With ``config.ema`` > 0: an exponential moving average of ``model``'s weights and BatchNorm statistics
    (:class:`attnmel.ema.WeightEMA`, an ``AveragedModel`` that never waits for the device), updated after every
    step; else None."""
    if config.ema <= 0:
        return None
    from attnmel.ema import WeightEMA

    return WeightEMA(model, config.ema)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seed the global generator third-party code draws from
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------------- one step
def _float_output(out: Any) -> Any:
    """Model outputs in fp32 (autocast may leave them in bf16/fp16), so the loss is computed in fp32."""
    return type(out)(*(t.float() if isinstance(t, torch.Tensor) else t for t in out))


def train_step(
    model: nn.Module,
    batch: dict[str, Any],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    use_roi: bool = False,
    grad_clip_norm: float | None = None,
    mixup: float = 0.0,
) -> torch.Tensor:
    """One SGD step on one (per-process) batch; returns the loss parts (``LOSS_PARTS``) as a (4,) tensor on
    the device, without waiting for it: the caller decides when the host looks (:class:`_EpochLosses`).

    ``grad_clip_norm`` clips the total gradient norm (after unscaling fp16 gradients) before the update.
    ``mixup`` > 0 blends the batch with a shuffled copy of itself, images and one-hot labels alike, with a
    weight drawn from Beta(mixup, mixup) (the global torch generator, so a seeded epoch repeats exactly).

    A NaN or infinite loss is not checked here (that would synchronise every step); its update poisons the
    weights, and the epoch's check stops the run before they are checkpointed.
    Under DDP the backward pass averages gradients across processes.
    """
    batch = move_batch(batch, device, channels_last)
    images, target = batch["image"], batch["label"]
    if mixup > 0:
        images, target = mix_batch(images, target, mixup)
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, precision):
        out = model(images)  # AttnMelOutput: logits (N, 2), attn3, attn4
    parts = loss_fn(_float_output(out), target, roi=batch["roi"] if use_roi else None)
    scaler.scale(parts.total).backward()
    if grad_clip_norm is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    scaler.step(optimizer)
    scaler.update()
    return torch.stack([p.detach().float().reshape(()) for p in parts])


def mix_batch(
    images: torch.Tensor, labels: torch.Tensor, alpha: float, num_classes: int = 2
) -> tuple[Any, Any]:
    """Mixup (Zhang et al. 2018): ``lam x + (1 - lam) x[perm]`` and the same mix of one-hot labels, with
    ``lam ~ Beta(alpha, alpha)`` and ``perm`` a random permutation, both from the global torch generator."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    # drawn on the CPU (the seeded global generator); a non-blocking copy, so the step does not wait for the GPU
    perm = torch.randperm(images.shape[0]).to(images.device, non_blocking=True)
    one_hot = soft_targets(labels, num_classes)
    return lam * images + (1.0 - lam) * images[perm], lam * one_hot + (1.0 - lam) * one_hot[perm]


@torch.inference_mode()
def predict_loader(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Melanoma probabilities for every item of ``loader`` (model in eval mode).

    Returns ``{"image_id": [str], "label": (N,) int64, "prob": (N,) float64, "logits": (N, 2) float32}``.
    Attention maps, masks and Grad-CAM over a split come from :func:`attnmel.evaluate.collect_maps`.
    """
    was_training = model.training
    model.eval()
    ids: list[str] = []
    labels, probs, logits = [], [], []
    for batch in loader:
        batch = move_batch(batch, device, channels_last)
        with autocast(device, precision):
            out = model(batch["image"])
        z = out.logits.float()  # (N, 2)
        logits.append(z.cpu())
        probs.append(torch.softmax(z, dim=1)[:, 1].double().cpu())  # (N,)
        labels.append(batch["label"].cpu())
        ids.extend(str(i) for i in batch["image_id"])
        if progress is not None:
            progress.update(1)
    model.train(was_training)
    return {
        "image_id": ids,
        "label": torch.cat(labels).numpy().astype(np.int64) if labels else np.zeros(0, np.int64),
        "prob": torch.cat(probs).numpy() if probs else np.zeros(0),
        "logits": torch.cat(logits) if logits else torch.zeros(0, 2),
    }


def _focal(config: TrainConfig, pred: dict[str, Any]) -> float:
    """Validation focal loss (the classification part of Eq. 5) from the collected logits."""
    from attnmel.losses import focal_loss

    if len(pred["label"]) == 0:
        return math.nan
    target = torch.as_tensor(pred["label"])
    return float(
        focal_loss(pred["logits"], target, gamma=config.focal_gamma, alpha=config.focal_alpha).item()
    )


def _auc_ap(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(set(labels.tolist())) < 2:
        return math.nan, math.nan
    return float(roc_auc_score(labels, probs)), float(average_precision_score(labels, probs))


# ------------------------------------------------------------------------------------------------- run folder
def resolve_run_dir(config: TrainConfig) -> Path:
    if config.run_dir is not None:
        return Path(config.run_dir)
    name = config.run_name or f"{config.model}-{config.dataset}-{datetime.now():%Y%m%d-%H%M%S}"
    return Path(config.runs_root) / name


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    atomic_write_text(run_dir / "history.csv", buffer.getvalue())
    atomic_write_json(run_dir / "history.json", [_json_row(r) for r in history])


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def progress_enabled(requested: bool) -> bool:
    """Bars only when asked for and someone watches (:func:`attnmel.progress.watching`): a terminal or an
    interactive notebook, not the book build, CI or tests."""
    return bool(requested) and progress.watching()


def _check_resume(ckpt: dict[str, Any], config: TrainConfig, path: Path) -> None:
    if ckpt["arch"] != config.model:
        raise ValueError(
            f"cannot resume: {path} holds a {ckpt['arch']!r} model, the config asks for {config.model!r}"
        )
    saved = ckpt.get("config", {})
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r} vs config {getattr(config, k)!r}"
        for k in RESUME_LOCKED
        if k in saved and saved[k] != getattr(config, k)
    ]
    if config.lr_schedule == "cosine" and saved.get("epochs", config.epochs) != config.epochs:
        diffs.append(
            f"epochs: checkpoint {saved['epochs']!r} vs config {config.epochs!r} (the cosine schedule spans them)"
        )
    if diffs:
        raise ValueError(
            f"cannot resume from {path}: the config changed settings a run cannot change: " + "; ".join(diffs)
        )


# -------------------------------------------------------------------------------------------------------- fit
def fit(config: TrainConfig, log: Callable[[str], None] | None = None) -> RunResult:
    """Train ``config.model`` per ``config``, keep the best epoch by validation AUC, evaluate it on
    ``config.splits[2]``, and return a RunResult (see the module docstring for the run folder).

    Launched by ``torchrun`` with several processes, it trains with DDP; only rank 0 writes files.
    Raises TrainingDiverged on a NaN/inf loss, ValueError for inconsistent settings, DataError for bad data.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"fit() needs a TrainConfig, got {type(config).__name__}")
    if not get_dataset(config.dataset).trainable:
        raise ValueError(
            f"dataset {config.dataset!r} has no training split: it is a test set "
            f"(attnmel evaluate CHECKPOINT --dataset {config.dataset} --data-root FOLDER)"
        )
    from attnmel.data import DataError, unwrap_worker_error

    start_time = time.perf_counter()
    device = select_device(config.device)
    info, device = distributed.setup(device)
    # epoch lines go above the open bars (tqdm.write) when bars are shown, else plain print
    log = log or (
        (progress.write if progress_enabled(config.progress) else print)
        if info.is_main
        else (lambda _msg: None)
    )
    lock = None
    try:
        run_dir = Path(distributed.broadcast_object(str(resolve_run_dir(config)) if info.is_main else None))
        if info.is_main:  # only rank 0 writes
            lock = RunLock(run_dir, "train").acquire()
            if stale := lock.describe_stale():
                log(stale)
            for path, size in remove_stale_temporaries(run_dir):
                log(f"removed {path} ({size / 1e6:.1f} MB), a temporary file left by an interrupted write")
        return _fit(config, device, info, log, start_time, run_dir)
    except DataError as err:
        raise unwrap_worker_error(err) from None
    finally:
        if lock is not None:
            lock.release()
        if info.enabled:
            distributed.cleanup()


@dataclass
class _Run:
    """What one training holds between its phases; built by :func:`_set_up`, then passed to each phase."""

    config: TrainConfig
    device: torch.device
    info: Any
    log: Callable[[str], None]
    run_dir: Path
    precision: str
    per_rank_batch: int
    root: Path
    train_ds: Any
    device_set: Any  # a DeviceTrainSet when config.data_on_device, else None (the DataLoader path)
    val_ds: Any
    train_labels: list[int]
    model: nn.Module  # the plain module: what checkpoints hold
    train_model: nn.Module  # the same weights behind DDP / torch.compile: what the steps call
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    ema: Any = None  # AveragedModel of `model` (config.ema > 0): what validation scores and checkpoints hold
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0  # the epoch best.pt holds: by validation AUC, or the last (config.select_epoch)
    best_auc: float = -math.inf
    peak_epoch: int = 0  # the epoch of best validation AUC whichever epoch best.pt keeps
    peak_auc: float = -math.inf
    start_epoch: int = 1
    writer: Any = None  # TensorBoard SummaryWriter (rank 0, tensorboard=True)
    saver: BackgroundWriter | None = None  # checkpoint writes in a thread (GPU runs), else written in line
    train_loader: EpochLoader | None = None  # the DataLoader path's training loader (None with device_set)
    val_loader: Any = None  # validation's loader, built once: its workers persist too
    compile_seconds: float | None = None  # the first compiled step's time (compile included), once measured

    def close_loaders(self) -> None:
        """Stop the persistent loader workers (the run is over, or failed)."""
        if self.train_loader is not None:
            self.train_loader.close()
        if self.val_loader is not None:
            close_loader(self.val_loader)

    @property
    def latest_path(self) -> Path:
        return self.run_dir / "checkpoints" / "latest.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    @property
    def best_val_path(self) -> Path:
        """The epoch of best validation AUC, kept beside best.pt when that holds the last epoch."""
        return self.run_dir / "checkpoints" / "best_val.pt"


def _fit(
    config: TrainConfig, device: torch.device, info: Any, log: Callable[[str], None], t0: float, run_dir: Path
) -> RunResult:
    """The training loop, phase by phase: set up, then per epoch train / validate / checkpoint, then evaluate."""
    tqdm = _tqdm()
    run = _set_up(config, device, info, log, run_dir)
    show = progress_enabled(config.progress) and info.is_main
    epoch_bar = tqdm(range(run.start_epoch, config.epochs + 1), desc="epochs", disable=not show, leave=True)
    try:
        for epoch in epoch_bar:
            epoch_start = time.perf_counter()
            row = _train_epoch(run, epoch, show)
            if info.is_main:
                improved, peaked = _validate(run, row, epoch_start)
                _save_checkpoints(run, row, improved, peaked)
                epoch_bar.set_postfix(val_auc=f"{row['val_auc']:.3f}", best=run.best_epoch)
                log(
                    f"epoch {epoch}/{config.epochs}: loss {row['train_loss']:.4f}, val AUC "
                    f"{row['val_auc']:.4f}, AP {row['val_ap']:.4f}, lr {row['lr']:.3g}, {row['seconds']:.1f} s"
                    f"{' *' if improved else ''}"
                )
            distributed.barrier()
    finally:  # whatever stops the loop, the checkpoint in flight is on disk before fit returns or raises
        run.close_loaders()
        if run.saver is not None:
            run.saver.wait()
    epoch_bar.close()
    if run.writer is not None:
        run.writer.close()

    test_metrics = _evaluate_best(run) if info.is_main else {}
    if info.is_main:  # figures, model card, best.safetensors: a failure is a warning, the run stays intact
        from attnmel.report import write_run_outputs

        write_run_outputs(run_dir, log=log)
    distributed.barrier()
    seconds = time.perf_counter() - t0
    kept = ""
    if info.is_main:
        kept = f"best epoch {run.best_epoch}, val AUC {run.best_auc:.4f}"
        if config.select_epoch == "last":
            kept = f"kept the last epoch ({run.best_epoch}, val AUC {run.best_auc:.4f})"
            if run.peak_epoch:
                # a run resumed from older code finds its peak in the history but never saved its weights
                where = (
                    run.best_val_path.name
                    if run.best_val_path.is_file()
                    else "not saved: the run began before best_val.pt was kept"
                )
                kept += f", best val AUC {run.peak_auc:.4f} at epoch {run.peak_epoch} ({where})"
        log(f"done in {seconds:.0f} s: {kept}; run folder {run_dir}")
    return RunResult(
        run_dir, int(run.best_epoch), float(run.best_auc), run.history, test_metrics, seconds, kept
    )


def _tqdm() -> Any:
    return progress.tqdm_class()


# ------------------------------------------------------------------------------------------ phase 1: set up
def _set_up(
    config: TrainConfig, device: torch.device, info: Any, log: Callable[[str], None], run_dir: Path
) -> _Run:
    """Check the run folder, read the data, build model / optimiser / loss, restore a resumed run, open logs."""
    precision = resolve_precision(config.precision, device)
    configure_backends(device)
    if config.batch_size % info.world_size:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by the {info.world_size} DDP processes"
        )
    latest_path = run_dir / "checkpoints" / "latest.pt"
    if info.is_main:
        if not config.resume and latest_path.exists():
            raise FileExistsError(
                f"{run_dir} already holds a run ({latest_path.name}); pass resume=True (--resume) to continue "
                "it, or choose another run_name / run_dir"
            )
        if config.resume and not latest_path.exists():
            raise FileNotFoundError(
                f"resume=True (--resume) but {latest_path} does not exist: nothing to resume"
            )
        ensure_synthetic(config, log)
    distributed.barrier()
    root = config.resolved_data_root()

    # data: the training list (oversampled), its labels, and the validation split
    train_name, val_name, _ = config.splits
    train_samples = load_split(config, root, train_name, config.max_train_samples)
    val_samples = load_split(config, root, val_name, config.max_eval_samples)
    train_list = train_samples
    if config.sampler == "oversample" and config.oversample > 1:
        from attnmel.data.sampling import oversample

        train_list = oversample(train_samples, config.oversample)
    train_ds = make_dataset(config, train_list, train=True)
    val_ds = make_dataset(config, val_samples, train=False)
    if config.gpu_jpeg_decode:
        check_gpu_decode(device)  # every rank, before any waits at the barrier
        if info.is_main:
            fill_cache_on_gpu(device, [train_ds, val_ds], log)
        distributed.barrier()
    device_set = None
    if config.data_on_device:
        from attnmel.data.device_set import DeviceTrainSet

        mean, std = normalisation(config.dataset)
        device_set = DeviceTrainSet(
            train_ds, device, size=config.image_size, mean=mean, std=std, channels_last=config.channels_last
        )
        log(f"training set on {device}: {device_set.nbytes / 2**30:.2f} GiB of uint8, augmented there")

    # model, optimiser, loss (seeded: the initial weights depend on config.seed only)
    _seed_everything(config.seed)
    model = build_model_for(config).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    run = _Run(
        config=config,
        device=device,
        info=info,
        log=log,
        run_dir=run_dir,
        precision=precision,
        per_rank_batch=config.batch_size // info.world_size,
        root=root,
        train_ds=train_ds,
        device_set=device_set,
        val_ds=val_ds,
        train_labels=[s.label for s in train_list],
        model=model,
        train_model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config),
        scaler=make_grad_scaler(device, precision),
        loss_fn=build_loss(config),
        ema=build_ema(model, config),
    )
    if config.resume:
        _restore(run)
    if device_set is None:
        run.train_loader = EpochLoader(config, train_ds, batch_size=run.per_rank_batch, device=device)
    run.val_loader = make_loader(
        config,
        val_ds,
        sampler=SequentialSampler(val_ds),
        batch_size=run.per_rank_batch,
        device=device,
        seed=0,
        persistent=True,
    )
    if background_checkpoints(device):
        run.saver = BackgroundWriter()

    if info.is_main:
        atomic_write_json(run_dir / "config.json", config.to_dict())
        for samples in (train_samples, val_samples):
            samples.to_json(run_dir / "data" / f"{samples.split}.json")
        if config.tensorboard:
            run.writer = _tensorboard(run_dir, run.start_epoch)
    if info.enabled:
        run.train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        run.train_model = compile_model(run.train_model, config.compile_mode)
    log(
        f"training {config.model} on {config.dataset}/{train_name} ({len(train_samples)} images, "
        f"{len(train_list)} listed, {config.epoch_passes} pass(es)/epoch) on {device} [{precision}"
        f"{', channels_last' if config.channels_last else ''}"
        f"{f', {info.world_size} processes' if info.enabled else ''}] -> {run_dir}"
    )
    return run


def _restore(run: _Run) -> None:
    """Continue from latest.pt: weights, optimiser, scheduler, scaler, RNG states, history and the best epoch."""
    ckpt = load_checkpoint(run.latest_path)
    _check_resume(ckpt, run.config, run.latest_path)
    if run.ema is not None:  # "model" holds the average (what was validated); "train_model" the SGD weights
        load_model_weights(run.ema.module, ckpt["model"], source=run.latest_path)
        load_model_weights(run.model, ckpt["train_model"], source=run.latest_path)
        run.ema.set_updates(int(ckpt["ema_updates"]))
    else:
        load_model_weights(run.model, ckpt["model"], source=run.latest_path)
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler") and run.scaler.is_enabled():
        run.scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    run.history = list(ckpt["history"])
    run.best_epoch, run.start_epoch = ckpt["best_epoch"], ckpt["epoch"] + 1
    run.best_auc = ckpt["best_val_auc"] if math.isfinite(ckpt["best_val_auc"]) else -math.inf
    for row in run.history:  # the peak is not stored: the history's validation AUCs give it again
        _track_peak(run, row["epoch"], row["val_auc"])
    run.log(
        f"resuming {run.run_dir} after epoch {ckpt['epoch']} (best epoch {run.best_epoch}, "
        f"val AUC {run.best_auc:.4f})"
    )


def _tensorboard(run_dir: Path, start_epoch: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            "tensorboard=True (--tensorboard) needs the tensorboard package: pip install 'attnmel[tensorboard]'"
        ) from err
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_epoch)


# --------------------------------------------------------------------------------------- phase 2: one epoch
def _train_epoch(run: _Run, epoch: int, show: bool) -> dict[str, Any]:
    """``passes_per_epoch`` passes of SGD steps in this epoch's seeded order; returns the epoch's history row."""
    config, info = run.config, run.info
    seed = epoch_seed(config, epoch, info.rank)
    _seed_everything(seed)
    sampler = train_sampler(config, run.train_ds, run.train_labels, epoch, info)
    if run.device_set is not None:
        loader = _DeviceBatches(run.device_set, sampler, run.per_rank_batch, run.device, seed)
    else:
        loader = run.train_loader.epoch(sampler, seed)
    lr = run.optimizer.param_groups[0]["lr"]
    losses = _EpochLosses(run.device)
    use_roi = run.train_ds.roi is not None  # the training set carries the Dice reference masks, or none
    run.train_model.train()
    # the bar is driven by hand: wrapping the loader in a notebook bar kept its worker iterator alive past the
    # epoch, and the next loader's forked workers then printed DataLoader.__del__ errors into the notebook
    batch_bar = _tqdm()(total=len(loader), desc=f"epoch {epoch}", disable=not show, leave=False)
    shown_at = 0.0
    graphs = config.compile and uses_cuda_graphs(config.compile_mode, run.device)
    started = time.perf_counter()
    for index, batch in enumerate(loader, start=1):
        if graphs:
            begin_graph_step()
        timing_compile = config.compile and run.compile_seconds is None
        step_start = time.perf_counter() if timing_compile else 0.0
        parts = train_step(
            run.train_model,
            batch,
            run.loss_fn,
            run.optimizer,
            run.scaler,
            device=run.device,
            precision=run.precision,
            channels_last=config.channels_last,
            use_roi=use_roi,
            grad_clip_norm=config.grad_clip_norm,
            mixup=config.mixup,
        )
        if timing_compile:  # one synchronisation, once per run: what torch.compile cost before training
            if run.device.type == "cuda":
                torch.cuda.synchronize(run.device)
            run.compile_seconds = time.perf_counter() - step_start
            run.log(
                f"torch.compile (mode {config.compile_mode}"
                f"{', CUDA graphs' if graphs else ''}): first step {run.compile_seconds:.1f} s, compile included"
            )
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        losses.add(parts, len(batch["label"]), index)
        if index % NONFINITE_CHECK_EVERY == 0 or index == len(loader):
            losses.check(epoch, len(loader), run.latest_path, run.precision)
        if show and time.perf_counter() - shown_at > 1.0:  # reading the loss waits for the device
            shown_at = time.perf_counter()
            batch_bar.set_postfix(loss=f"{parts[0].item():.4f}", refresh=False)
        batch_bar.update(1)
    batch_bar.close()
    train_seconds = time.perf_counter() - started
    _check_finite_weights(run.model, epoch, len(loader), run.latest_path)
    run.scheduler.step()
    row = {"epoch": epoch, "lr": lr, **losses.means()}
    row["train_seconds"] = train_seconds
    return row


class _DeviceBatches:
    """The epoch's batches from a DeviceTrainSet, in the sampler's order, augmented with a generator on the
    device seeded from the epoch's seed (so a resumed epoch repeats exactly); a loader's length and iteration."""

    def __init__(
        self, device_set: Any, sampler: Any, batch_size: int, device: torch.device, seed: int
    ) -> None:
        self.device_set, self.batch_size = device_set, batch_size
        # on the device once per epoch: a batch's indices are then a slice there, not a copy that waits for the GPU
        self.order = torch.tensor(list(sampler), dtype=torch.long).to(device)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __iter__(self) -> Iterable[dict[str, Any]]:
        for start in range(0, len(self.order), self.batch_size):
            yield self.device_set.batch(self.order[start : start + self.batch_size], self.generator)


# ------------------------------------------------------------------------------------ phase 3: validation
def _improves(auc: float, best_auc: float, best_epoch: int) -> bool:
    """The paper's rule for keeping an epoch: a strictly better validation AUC (the first epoch always)."""
    return (math.isfinite(auc) and auc > best_auc) or best_epoch == 0


def _track_peak(run: _Run, epoch: int, auc: float) -> bool:
    """Record ``epoch`` as the best validation AUC so far when it improves on it; whether it did."""
    if not _improves(auc, run.peak_auc, run.peak_epoch):
        return False
    run.peak_epoch, run.peak_auc = epoch, (auc if math.isfinite(auc) else -math.inf)
    return True


def _validate(run: _Run, row: dict[str, Any], epoch_start: float) -> tuple[bool, bool]:
    """Validation AUC / AP / focal loss into ``row`` (appended to the history); whether best.pt takes the
    epoch (by ``config.select_epoch``), and whether it is the best validation AUC so far."""
    config, epoch = run.config, row["epoch"]
    pred = predict_loader(
        run.ema.module if run.ema is not None else unwrap_model(run.train_model),
        run.val_loader,
        device=run.device,
        precision=run.precision,
        channels_last=config.channels_last,
    )
    if not np.isfinite(pred["prob"]).all():  # e.g. BatchNorm statistics blown up by a huge lr
        bad = int((~np.isfinite(pred["prob"])).sum())
        raise TrainingDiverged(
            f"training diverged at epoch {epoch}: {bad} of {len(pred['prob'])} validation outputs are NaN/inf; "
            f"{_kept(epoch, run.latest_path)}. Try: {DIVERGED_HINT}.",
            epoch,
            0,
        )
    auc, ap = _auc_ap(pred["label"], pred["prob"])
    peaked = _track_peak(run, epoch, auc)
    improved = config.select_epoch == "last" or peaked  # with "last", every epoch replaces the one before
    if improved:
        run.best_epoch, run.best_auc = epoch, (auc if math.isfinite(auc) else -math.inf)
    row.update(val_loss=_focal(config, pred), val_ap=ap, val_auc=auc, is_best=bool(improved))
    row["seconds"] = time.perf_counter() - epoch_start
    run.history.append(row)
    return improved, peaked


# ------------------------------------------------------------------------------------ phase 4: checkpoints
_TENSORBOARD_KEYS = (
    "train_loss",
    "train_focal",
    "train_dice3",
    "train_dice4",
    "val_loss",
    "val_ap",
    "val_auc",
    "lr",
)


def _save_checkpoints(run: _Run, row: dict[str, Any], improved: bool, peaked: bool) -> None:
    """best.pt (when improved) before latest.pt, so a crash between the two leaves a consistent pair; history.
    With select_epoch='last', best_val.pt (when ``peaked``) first: the best validation epoch is not lost."""
    ckpt = make_checkpoint(
        run.ema.module if run.ema is not None else run.model,  # the weights validation scored
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        scaler=run.scaler,
        epoch=row["epoch"],
        best_epoch=run.best_epoch,
        best_val_auc=run.best_auc if math.isfinite(run.best_auc) else math.nan,
        config=run.config.to_dict(),
        history=run.history,
    )
    if run.ema is not None:  # resuming needs the SGD weights and the average's update count as well
        ckpt["train_model"] = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
        ckpt["ema_updates"] = run.ema.updates

    keep_peak = peaked and run.config.select_epoch == "last"  # with "val_auc", best.pt is that epoch already
    peak_facts = {
        "best_epoch": run.peak_epoch,
        "best_val_auc": run.peak_auc if math.isfinite(run.peak_auc) else math.nan,
    }

    def write(ckpt: dict[str, Any], history: list[dict[str, Any]]) -> None:
        weights = {k: v for k, v in ckpt.items() if k not in RESUME_STATE}  # optimiser, RNG: latest.pt only
        if keep_peak:
            save_checkpoint(run.best_val_path, {**weights, **peak_facts})
        if improved:
            save_checkpoint(run.best_path, weights)
        save_checkpoint(run.latest_path, ckpt)
        _write_history(run.run_dir, history)

    if run.saver is None:
        write(ckpt, run.history)
    else:  # a snapshot, so that the next epoch's steps cannot change what is being written
        snapshot, history = cpu_snapshot(ckpt), [dict(r) for r in run.history]
        run.saver.submit(lambda: write(snapshot, history))
    if run.writer is not None:
        for key in _TENSORBOARD_KEYS:
            if isinstance(row.get(key), float) and math.isfinite(row[key]):
                run.writer.add_scalar(key.replace("_", "/", 1), row[key], row["epoch"])
        run.writer.flush()


# ------------------------------------------------------------------------------- phase 5: final evaluation
def _evaluate_best(run: _Run) -> dict[str, dict[str, Any]]:
    """Predictions and metrics of best.pt on every evaluation split (absent optional splits are skipped)."""
    config = run.config
    best = load_checkpoint(run.best_path)
    eval_model = build_model_for(config.replace(weights=None)).to(run.device)
    load_model_weights(eval_model, best["model"], source=run.best_path)
    if config.channels_last:
        eval_model = eval_model.to(memory_format=torch.channels_last)
    metrics = {}
    for split in config.splits[2]:
        metrics[split] = _evaluate_split(
            config,
            eval_model,
            run.root,
            split,
            run.run_dir,
            run.device,
            run.precision,
            run.per_rank_batch,
            best["epoch"],
            config.eval_splits is None,
            run.log,
        )
    run.best_epoch, run.best_auc = best["best_epoch"], best["best_val_auc"]
    return {k: v for k, v in metrics.items() if v is not None}


def background_checkpoints(device: torch.device) -> bool:
    """Whether checkpoints are written in a thread: on a GPU, where an epoch takes seconds and a synchronous
    write would leave the device idle; on the CPU they are written in line, as before."""
    return device.type == "cuda"


def _kept(epoch: int, latest_path: Path) -> str:
    if epoch > 1:
        return f"the last good checkpoint is {latest_path} (epoch {epoch - 1}), left intact"
    return "no checkpoint was written (first epoch)"


def _check_finite_weights(model: nn.Module, epoch: int, batches: int, latest_path: Path) -> None:
    """TrainingDiverged when any parameter or floating buffer is NaN/inf (one fused check, once an epoch)."""
    tensors = [t for t in unwrap_model(model).state_dict().values() if t.is_floating_point()]
    if not tensors:
        return
    finite = torch.stack([torch.isfinite(t).all() for t in tensors])
    if bool(finite.all()):
        return
    names = [k for k, t in unwrap_model(model).state_dict().items() if t.is_floating_point()]
    bad = [n for n, ok in zip(names, finite.tolist(), strict=True) if not ok]
    raise TrainingDiverged(
        f"training diverged in epoch {epoch} (by batch {batches}/{batches}): {len(bad)} weight tensor(s) hold "
        f"NaN/inf, first {bad[0]}; {_kept(epoch, latest_path)}. Try: {DIVERGED_HINT}.",
        epoch,
        batches,
    )


def _evaluate_split(
    config: TrainConfig,
    model: nn.Module,
    root: Path,
    split: str,
    run_dir: Path,
    device: torch.device,
    precision: str,
    batch_size: int,
    epoch: int,
    optional: bool,
    log: Callable[[str], None],
) -> dict[str, Any] | None:
    """Predictions CSV and metrics JSON of ``split`` with the best checkpoint; None if an optional split is absent.

    On a split with lesion masks (ISIC 2017 Validation), the metrics hold the attention maps' Jaccard and pointing
    game as ``attnmel evaluate`` computes them (``"attention"``; None without maps or masks).
    """
    from attnmel.data import DataError
    from attnmel.evaluate import attention_summary, collect_maps
    from attnmel.metrics import summarise, write_predictions_csv

    try:
        samples = load_split(config, root, split, config.max_eval_samples)
        if not samples:
            raise DataError(
                f"{config.dataset}/{split}: no images to evaluate (every listed image was skipped)"
            )
    except DataError as err:
        if optional and split not in DATASET_SPLITS[config.dataset][:2]:
            warnings.warn(f"skipping evaluation split {split!r}: {err}", stacklevel=2)
            return None
        raise
    dataset = make_dataset(config, samples, train=False)
    loader = make_loader(
        config, dataset, sampler=SequentialSampler(dataset), batch_size=batch_size, device=device, seed=0
    )
    pred = collect_maps(
        model,
        loader,
        device=device,
        precision=precision,
        channels_last=config.channels_last,
        progress=False,
        maps=any(s.lesion_mask_path is not None for s in samples),  # nothing to score maps against otherwise
    )
    write_predictions_csv(run_dir / "predictions" / f"{split}.csv", pred["image_id"], pred["prob"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one-class splits: undefined AUC/AP are recorded as null
        summary = summarise(
            pred["label"], pred["prob"], threshold=config.threshold, n_boot=config.n_boot, seed=config.seed
        )
    summary.update(split=split, dataset=config.dataset, checkpoint="checkpoints/best.pt", epoch=int(epoch))
    summary["attention"] = attention_summary(pred)
    atomic_write_json(run_dir / "metrics" / f"{split}.json", summary)
    auc, ap = summary.get("auc"), summary.get("ap")
    jaccard = "".join(
        f", {name} Jaccard {report['jaccard_mean']:.3f}"
        for name, report in (summary["attention"] or {}).items()
    )
    log(
        f"{split}: AUC {auc if auc is None else f'{auc:.4f}'}, AP {ap if ap is None else f'{ap:.4f}'}{jaccard} "
        f"(n={len(samples)})"
    )
    return summary
