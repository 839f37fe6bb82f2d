"""Figures for the book and the run folders: training history, ROC/PR, reliability, attention grids (the
paper's Fig. 3 style overlays) and deletion curves.

Every function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot``): nothing global is
touched, the Agg backend is enough, nothing accumulates in long runs, and a notebook shows the returned
figure exactly once. Sizes and fonts (>= 10 pt at about 8-10 inches wide) keep the figures readable at page
width. :func:`save_figure` writes them atomically.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from attnmel.attention_eval import deletion_auc, overlay, to_uint8_image
from attnmel.io import atomic_write_bytes
from attnmel.metrics import _check_binary, calibration, pr_curve_points, roc_curve_points

__all__ = [
    "plot_history",
    "plot_roc_pr",
    "plot_reliability",
    "plot_attention_grid",
    "plot_deletion_curves",
    "plot_lr_schedules",
    "save_figure",
    "plot_class_balance",
    "plot_samples",
    "plot_augmentations",
    "seed_table",
    "mean_ci95",
    "plot_seed_distribution",
    "plot_paired_differences",
    "plot_calibration_curves",
]

_RC = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 12,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
LESION_COLOUR = "lime"

F = TypeVar("F", bound=Callable[..., Figure])


def _styled(fn: F) -> F:
    """Build the figure under the house font sizes (text artists keep the sizes they were created with)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------------------------------------
# Training history


def _records(history: Any) -> list[dict[str, Any]]:
    """Rows of a history given as a list of dicts, a DataFrame-like object or a dict of columns."""
    if hasattr(history, "to_dict"):  # pandas DataFrame
        history = history.to_dict("records")
    elif isinstance(history, Mapping):
        keys = list(history)
        history = [dict(zip(keys, row, strict=True)) for row in zip(*(history[k] for k in keys), strict=True)]
    rows = list(history)
    if not rows:
        raise ValueError("plot_history: the history is empty (no epoch recorded yet)")
    return [dict(r) for r in rows]


def _number(v: Any) -> float:
    """A float from a number, a bool or a numeric string (rows read back from ``history.csv``); else NaN."""
    if isinstance(v, str):
        text = v.strip().lower()
        if text in ("true", "false"):
            return float(text == "true")
        try:
            return float(text)
        except ValueError:
            return math.nan
    return float(v) if isinstance(v, int | float | np.number) else math.nan


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.asarray([_number(r.get(key)) for r in rows], dtype=np.float64)


# Columns that are not curves: bookkeeping counts and timings.
_NOT_CURVES = ("second", "time", "_images", "_samples", "_batches", "_step", "is_best")


@_styled
def plot_history(history: Any, best_epoch: int | None = None) -> Figure:
    """Training curves, one panel each: losses, validation metrics, learning rate.

    Args:
        history: one record per epoch (list of dicts, a DataFrame or a dict of columns). Columns used:
            ``epoch`` (else 1, 2, ...), every numeric ``train_*`` column and ``val_loss`` (loss panel, log
            scale when all positive; all-zero columns such as the Dice terms of a model without attention
            are skipped), every other numeric ``val_*`` column (e.g. ``val_auc``, ``val_ap``), and ``lr``.
            Bookkeeping columns (``seconds``, ``train_images``, ``is_best``...) are not drawn. Numeric strings
            (rows of ``history.csv`` read with ``csv.DictReader``) are accepted.
        best_epoch: marked by a dashed line; default: the last epoch flagged ``is_best`` (the trainer's
            strictly-better rule), else the first epoch with the highest ``val_auc``.
    """
    rows = _records(history)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    numeric = [
        k for k in keys if np.isfinite(_column(rows, k)).any() and not any(tag in k for tag in _NOT_CURVES)
    ]
    epoch = _column(rows, "epoch") if "epoch" in numeric else np.arange(1, len(rows) + 1, dtype=np.float64)
    loss_keys = [
        k
        for k in numeric
        if (k.startswith("train_") or k == "val_loss") and np.nanmax(np.abs(_column(rows, k))) > 0
    ]
    val_keys = [k for k in numeric if k.startswith("val_") and k != "val_loss"]
    panels = [
        p for p in (("loss", loss_keys), ("val", val_keys), ("lr", ["lr"] if "lr" in numeric else [])) if p[1]
    ]
    if not panels:
        raise ValueError(f"plot_history: no train_*, val_* or lr column to plot; columns are {keys}")
    flagged = np.flatnonzero(_column(rows, "is_best") > 0)
    if best_epoch is None and flagged.size:
        best_epoch = int(epoch[flagged[-1]])
    elif best_epoch is None and "val_auc" in numeric:
        auc = _column(rows, "val_auc")
        if np.isfinite(auc).any():
            best_epoch = int(epoch[int(np.nanargmax(auc))])

    fig = Figure(figsize=(3.4 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (kind, cols) in zip(axes, panels, strict=True):
        for k in cols:
            ax.plot(epoch, _column(rows, k), marker="o", markersize=3, label=k)
        ax.set_xlabel("epoch")
        if kind == "loss":
            values = np.concatenate([_column(rows, k) for k in cols])
            if np.nanmin(values) > 0:
                ax.set_yscale("log")
            ax.set(title="Training loss", ylabel="loss")
        elif kind == "val":
            ax.set(title="Validation", ylabel="metric")
        else:
            if np.nanmin(_column(rows, "lr")) > 0:
                ax.set_yscale("log")
            ax.set(title="Learning rate", ylabel="lr")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.4", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}")
        ax.legend(loc="best")
    return fig


# --------------------------------------------------------------------------------------------------------
# ROC / PR / reliability


@_styled
def plot_roc_pr(results: Mapping[str, tuple[Any, Any]]) -> Figure:
    """ROC (left) and precision-recall (right) curves of several models, AUC/AP in the legends.

    Args:
        results: name -> ``(y_true (N,), prob (N,))``. Chance: the diagonal (ROC) and the prevalence (PR).
    """
    if not results:
        raise ValueError("plot_roc_pr: no results to plot")
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax_roc, ax_pr = fig.subplots(1, 2)
    ax_roc.plot([0, 1], [0, 1], color="0.5", linestyle=":", label="chance")
    for i, (name, (y, p)) in enumerate(results.items()):
        colour = f"C{i}"
        roc = roc_curve_points(y, p)
        pr = pr_curve_points(y, p)
        ax_roc.plot(roc["fpr"], roc["tpr"], color=colour, label=f"{name} (AUC {roc['auc']:.3f})")
        ax_pr.plot(
            pr["recall"],
            pr["precision"],
            color=colour,
            drawstyle="steps-post",
            label=f"{name} (AP {pr['ap']:.3f})",
        )
        ax_pr.axhline(pr["prevalence"], color=colour, linestyle=":", linewidth=1)
    ax_pr.plot([], [], color="0.5", linestyle=":", label="chance (prevalence)")
    ax_roc.set(
        title="ROC", xlabel="false positive rate (1 - specificity)", ylabel="true positive rate (sensitivity)"
    )
    ax_pr.set(title="Precision-recall", xlabel="recall (sensitivity)", ylabel="precision")
    for ax in (ax_roc, ax_pr):
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
        ax.set_aspect("equal")
        ax.legend(loc="lower right" if ax is ax_roc else "upper right")
    return fig


@_styled
def plot_reliability(y_true: Any, prob: Any, n_bins: int = 10, label: str | None = None) -> Figure:
    """Reliability curve (observed melanoma frequency vs mean predicted probability per bin) with ECE and
    Brier score in the title, and the histogram of predicted probabilities per class."""
    y, p = _check_binary(y_true, prob)
    ece, table = calibration(y, p, n_bins=n_bins)
    brier = float(np.mean((p - y) ** 2))
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax_rel, ax_hist = fig.subplots(1, 2)
    ax_rel.plot([0, 1], [0, 1], color="0.5", linestyle=":", label="perfect calibration")
    ok = table["count"] > 0
    ax_rel.plot(table["mean_prob"][ok], table["frac_pos"][ok], marker="o", color="C0", label=label or "model")
    ax_rel.set(
        title=f"Reliability (ECE {ece:.3f}, Brier {brier:.3f})",
        xlabel="mean predicted probability",
        ylabel="observed melanoma frequency",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax_rel.legend(loc="upper left")
    edges = table["bin_edges"]
    ax_hist.hist([p[y == 0], p[y == 1]], bins=edges, label=["other", "melanoma"], color=["C2", "C3"])
    ax_hist.set(title="Predicted probabilities", xlabel="melanoma probability", ylabel="images", xlim=(0, 1))
    ax_hist.legend(loc="upper right")
    return fig


# --------------------------------------------------------------------------------------------------------
# Attention grid


def _image_list(images: Any) -> list[Any]:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return [images]
    if hasattr(images, "ndim") and images.ndim == 4:
        return [images[i] for i in range(images.shape[0])]
    return list(images)


@_styled
def plot_attention_grid(
    images: Any,
    maps: Mapping[str, Any],
    masks: Any = None,
    titles: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    alpha: float = 0.4,
) -> Figure:
    """Rows = images; columns = the input and one jet overlay per map (0.6 image + 0.4 map), lesion boundary
    drawn in green, a shared colour bar for the min-max normalised map.

    Args:
        images: ``(N, 3, H, W)`` float tensor in [0, 1] (or normalised: pass ``mean``/``std``), or uint8
            ``(N, H, W, 3)``.
        maps: column title -> ``(N, 1, h, w)`` maps (e.g. ``{"pool-3": attn3, "pool-4": attn4}``).
        masks: optional ``(N, 1, H, W)`` / ``(N, H, W)`` lesion masks (an empty mask draws no boundary).
        titles: optional row labels (image id, label, probability...).
    """
    imgs = [to_uint8_image(im, mean, std) for im in _image_list(images)]  # each (H, W, 3)
    n = len(imgs)
    if n == 0:
        raise ValueError("plot_attention_grid: no images")
    maps_np = {name: _numpy(m).reshape(_numpy(m).shape[0], *_numpy(m).shape[-2:]) for name, m in maps.items()}
    for name, m in maps_np.items():
        if m.shape[0] != n:
            raise ValueError(f"plot_attention_grid: map {name!r} has {m.shape[0]} entries for {n} images")
    mask_np = None if masks is None else _numpy(masks).reshape(n, *_numpy(masks).shape[-2:]) > 0.5
    if titles is not None and len(titles) != n:
        raise ValueError(f"plot_attention_grid: {len(titles)} titles for {n} images")

    cols = 1 + len(maps_np)
    fig = Figure(figsize=(2.1 * cols + 1.0, 2.1 * n + 0.6), layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        cells = [("Input", imgs[i])] + [
            (name, overlay(imgs[i], m[i], alpha=alpha)) for name, m in maps_np.items()
        ]
        for j, (name, pixels) in enumerate(cells):
            ax = axes[i, j]
            ax.imshow(pixels)
            if mask_np is not None and mask_np[i].any() and not mask_np[i].all():
                ax.contour(mask_np[i].astype(np.float32), levels=[0.5], colors=LESION_COLOUR, linewidths=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(name)
            if j == 0 and titles is not None:
                ax.set_ylabel(str(titles[i]))
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), ax=axes, shrink=min(1.0, 0.9 / n + 0.4))
    bar.set_label("attention (min-max normalised)")
    if mask_np is not None:
        fig.legend(
            handles=[Line2D([], [], color=LESION_COLOUR, label="lesion boundary")], loc="outside lower center"
        )
    return fig


# --------------------------------------------------------------------------------------------------------
# Deletion curves


@_styled
def plot_deletion_curves(curves: Mapping[str, Any]) -> Figure:
    """Melanoma probability as the most salient pixels are deleted, one line per saliency method.

    Args:
        curves: name -> ``(fractions (S+1,), probs)`` with ``probs`` ``(S+1,)`` or per image ``(N, S+1)``
            (mean drawn with a +/- 1 standard-error band), or a :class:`~attnmel.attention_eval.DeletionCurve`.
            The legend gives the area under each mean curve (lower: the map found the evidence).
    """
    if not curves:
        raise ValueError("plot_deletion_curves: no curves to plot")
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (name, value) in enumerate(curves.items()):
        fractions, probs = (value.fractions, value.probs) if hasattr(value, "probs") else value
        f, p = np.asarray(fractions, dtype=np.float64), _numpy(probs).astype(np.float64)
        mean = p.mean(axis=0) if p.ndim == 2 else p
        ax.plot(
            f,
            mean,
            marker="o",
            markersize=3,
            color=f"C{i}",
            label=f"{name} (AUC {deletion_auc(f, mean):.3f})",
        )
        if p.ndim == 2 and p.shape[0] > 1:
            sem = p.std(axis=0, ddof=1) / math.sqrt(p.shape[0])
            ax.fill_between(f, mean - sem, mean + sem, color=f"C{i}", alpha=0.2)
    ax.set(
        title="Deletion curves",
        xlabel="fraction of pixels deleted (most salient first)",
        ylabel="melanoma probability",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="best")
    return fig


def plot_lr_schedules(schedules: Mapping[str, Sequence[float]]) -> Figure:
    """Learning rate per epoch, one step line per schedule (name -> the lr of epochs 1, 2, ...)."""
    if not schedules:
        raise ValueError("plot_lr_schedules: no schedules to plot")
    fig = Figure(figsize=(6.5, 3.2), layout="constrained")
    ax = fig.subplots()
    for i, (name, lrs) in enumerate(schedules.items()):
        epochs = np.arange(1, len(lrs) + 1)
        ax.step(epochs, np.asarray(lrs, dtype=np.float64), where="mid", marker="o", markersize=3, color=f"C{i}",
                label=name)  # fmt: skip
    ax.set(title="Learning rate per epoch", xlabel="epoch", ylabel="learning rate")
    ax.legend(loc="best")
    return fig


# --------------------------------------------------------------------------------------------------------
# Saving


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` atomically (PNG by default; the suffix may also be ``.pdf`` or ``.svg``); returns the path."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    if fmt not in ("png", "pdf", "svg"):
        raise ValueError(f"{path}: figures are saved as .png, .pdf or .svg, not {path.suffix!r}")
    if not path.suffix:
        path = path.with_suffix(".png")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------------------
# Data


@_styled
def plot_class_balance(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Stacked bars of melanoma / other images per split (rows from :func:`attnmel.data.split_summary`)."""
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    names = [r["split"] for r in rows]
    melanoma = np.array([r["melanoma"] for r in rows])
    other = np.array([r["other"] for r in rows])
    ax.bar(names, other, color="tab:blue", label="other (nevus, seb. keratosis)")
    ax.bar(names, melanoma, bottom=other, color="tab:red", label="melanoma")
    for i, (m, o) in enumerate(zip(melanoma, other, strict=True)):
        ax.text(i, m + o, f"{m / max(m + o, 1):.0%} mel.", ha="center", va="bottom", fontsize=10)
    ax.set_ylabel("images")
    ax.set_xlabel("split")
    ax.set_title("Class balance per split")
    ax.set_ylim(0, (melanoma + other).max() * 1.15)
    ax.legend(loc="upper right")
    return fig


def _outline(ax: Any, mask: np.ndarray, colour: str, label: str | None = None) -> None:
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.5)
    if label:
        ax.plot([], [], color=colour, label=label)


@_styled
def plot_samples(
    images: Sequence[Any],
    masks: Sequence[Any | None],
    titles: Sequence[str],
    dermo: Sequence[Any | None] | None = None,
    columns: int = 4,
) -> Figure:
    """A grid of images (uint8 HxWx3) with the lesion outline and, where given, the Dermo ROI shaded."""
    n = len(images)
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(2.4 * columns, 2.55 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(_numpy(images[i]))
        if dermo is not None and dermo[i] is not None:
            roi = _numpy(dermo[i]).astype(bool)
            shade = np.zeros((*roi.shape, 4))
            shade[roi] = (0.0, 0.9, 1.0, 0.35)
            ax.imshow(shade)
        if masks[i] is not None:
            _outline(ax, _numpy(masks[i]) > 0, LESION_COLOUR)
        ax.set_title(titles[i], fontsize=10)
    handles = [Line2D([], [], color=LESION_COLOUR, lw=2, label="lesion mask (Part 1)")]
    if dermo is not None:
        handles.append(
            Line2D([], [], color=(0.0, 0.9, 1.0), lw=6, alpha=0.5, label="Dermo ROI (Part 2 union)")
        )
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    return fig


@_styled
def plot_augmentations(original: Any, views: Sequence[Any], view_masks: Sequence[Any], title: str) -> Figure:
    """The full-size image next to training views (uint8 HxWx3) with their transformed lesion outlines."""
    n = len(views) + 1
    fig = Figure(figsize=(2.3 * n, 2.9), layout="constrained")
    axes = fig.subplots(1, n)
    axes[0].imshow(_numpy(original))
    axes[0].set_title("original", fontsize=10)
    for i, (view, mask) in enumerate(zip(views, view_masks, strict=True), 1):
        axes[i].imshow(_numpy(view))
        _outline(axes[i], _numpy(mask) > 0, LESION_COLOUR)
        axes[i].set_title(f"training view {i}", fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------------------
# Several seeds (seaborn: strip + point plots with intervals, reliability over seeds)
#
# seaborn (and pandas) are imported on first use, so ``import attnmel.plots`` stays light. The intervals are
# 95% t-intervals of the mean over seeds (:func:`mean_ci95`), passed to seaborn as its ``errorbar`` callable.


def mean_ci95(values: Any) -> tuple[float, float]:
    """95% t-interval of the mean of ``values`` (:func:`attnmel.metrics.seed_interval`) as seaborn's ``errorbar``
    callable wants it: ``(low, high)``; the point itself for one value, NaN for none."""
    from attnmel.metrics import seed_interval

    summary = seed_interval([float(v) for v in np.asarray(values, dtype=np.float64).ravel()])
    if summary["mean"] is None:
        return math.nan, math.nan
    low, high = summary["ci"] or (summary["mean"], summary["mean"])
    return float(low), float(high)


def seed_table(values: Any, metric: str = "value") -> Any:
    """A long pandas DataFrame ``model, seed, <metric>`` from per-model results over seeds.

    ``values``: a DataFrame with those columns (returned as is), or ``{model: {seed: value}}``, or
    ``{model: [value, ...]}`` (seeds 0, 1, ... by position), or a list of ``{"model", "seed", metric}`` rows.
    """
    import pandas as pd

    if isinstance(values, pd.DataFrame):
        frame = values
    elif isinstance(values, Mapping):
        rows = []
        for model, per_seed in values.items():
            items = per_seed.items() if isinstance(per_seed, Mapping) else enumerate(per_seed)
            rows += [{"model": str(model), "seed": seed, metric: float(v)} for seed, v in items]
        frame = pd.DataFrame(rows, columns=["model", "seed", metric])
    else:
        frame = pd.DataFrame(list(values))
    missing = [c for c in ("model", "seed", metric) if c not in frame.columns]
    if missing:
        raise ValueError(f"seed_table: columns {missing} missing; have {list(frame.columns)}")
    if frame.empty:
        raise ValueError("seed_table: no values to plot")
    return frame


@_styled
def plot_seed_distribution(values: Any, metric: str = "AUC", order: Sequence[str] | None = None) -> Figure:
    """One metric over seeds per model: every seed as a point (strip plot) beside the mean and its 95%
    t-interval (point plot). ``values`` as in :func:`seed_table`; ``order``: the models, top to bottom."""
    import seaborn as sns

    frame = seed_table(values, metric)
    order = list(order) if order is not None else list(dict.fromkeys(frame["model"]))
    fig = Figure(figsize=(7.5, 0.6 * len(order) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    sns.stripplot(
        data=frame, x=metric, y="model", order=order, ax=ax, color="0.45", alpha=0.7, size=6, jitter=0.12
    )
    sns.pointplot(
        data=frame, x=metric, y="model", order=order, ax=ax, errorbar=mean_ci95, color="C3",
        linestyle="none", markers="D", capsize=0.25,
    )  # fmt: skip
    counts = frame.groupby("model")["seed"].nunique()
    ax.set_yticks(range(len(order)), [f"{m} (n={counts.get(m, 0)})" for m in order])
    ax.set(title=f"{metric} over seeds: points = seeds, diamond = mean with 95% CI", xlabel=metric, ylabel="")
    return fig


def _paired_differences(frame: Any, reference: str, metric: str) -> Any:
    import pandas as pd

    wide = frame.pivot_table(index="seed", columns="model", values=metric, aggfunc="mean")
    if reference not in wide.columns:
        raise ValueError(f"plot_paired_differences: reference {reference!r} not among {list(wide.columns)}")
    rows = []
    for model in (m for m in dict.fromkeys(frame["model"]) if m != reference):
        both = wide[[model, reference]].dropna()
        rows += [
            {"model": model, "seed": seed, "difference": float(r[model] - r[reference])}
            for seed, r in both.iterrows()
        ]
    if not rows:
        raise ValueError(f"plot_paired_differences: no seed shared with the reference {reference!r}")
    return pd.DataFrame(rows)


@_styled
def plot_paired_differences(values: Any, reference: str, metric: str = "AUC") -> Figure:
    """Each model minus ``reference`` on the same seeds (paired): the per-seed differences and their mean with
    the 95% t-interval; 0 (no difference) is marked. A seed missing for either model is left out of that pair.
    ``values`` as in :func:`seed_table`."""
    import seaborn as sns

    diffs = _paired_differences(seed_table(values, metric), reference, metric)
    order = list(dict.fromkeys(diffs["model"]))
    fig = Figure(figsize=(7.5, 0.6 * len(order) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    ax.axvline(0.0, color="0.3", linestyle="--", linewidth=1)
    sns.stripplot(
        data=diffs, x="difference", y="model", order=order, ax=ax, color="0.45", alpha=0.7, size=6,
        jitter=0.12,
    )  # fmt: skip
    sns.pointplot(
        data=diffs, x="difference", y="model", order=order, ax=ax, errorbar=mean_ci95, color="C0",
        linestyle="none", markers="D", capsize=0.25,
    )  # fmt: skip
    counts = diffs.groupby("model")["seed"].nunique()
    ax.set_yticks(range(len(order)), [f"{m} (n={counts.get(m, 0)})" for m in order])
    ax.set(
        title=f"{metric} difference to {reference} (paired by seed), mean with 95% CI",
        xlabel=f"{metric} - {metric} of {reference}",
        ylabel="",
    )
    return fig


@_styled
def plot_calibration_curves(results: Mapping[str, Any], n_bins: int = 10) -> Figure:
    """Reliability curves of several models (left) and their predicted-probability distributions (right).

    ``results``: name -> ``(y_true, prob)`` or a list of such pairs, one per seed. The curve is the observed
    melanoma frequency per probability bin (x: the bin's centre), averaged over seeds with its 95% t-interval
    as a band; the right panel is the density of predicted probabilities per model (all seeds pooled).
    """
    import pandas as pd
    import seaborn as sns

    if not results:
        raise ValueError("plot_calibration_curves: no results to plot")
    curve_rows, prob_rows = [], []
    for name, value in results.items():
        pairs = [value] if isinstance(value, tuple) else list(value)
        for seed, (y_true, prob) in enumerate(pairs):
            y, p = _check_binary(y_true, prob)
            _, table = calibration(y, p, n_bins=n_bins)
            edges = np.asarray(table["bin_edges"])
            centres = (edges[:-1] + edges[1:]) / 2
            for c, frac, count in zip(centres, table["frac_pos"], table["count"], strict=True):
                if count > 0:
                    curve_rows.append({"model": name, "seed": seed, "bin": float(c), "observed": float(frac)})
            prob_rows += [{"model": name, "probability": float(v)} for v in p]
    curves, probs = pd.DataFrame(curve_rows), pd.DataFrame(prob_rows)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_rel, ax_hist = fig.subplots(1, 2)
    ax_rel.plot([0, 1], [0, 1], color="0.5", linestyle=":", label="perfect calibration")
    sns.lineplot(data=curves, x="bin", y="observed", hue="model", errorbar=mean_ci95, marker="o", ax=ax_rel)
    ax_rel.set(
        title="Reliability (mean over seeds, 95% CI)",
        xlabel="predicted probability (bin centre)",
        ylabel="observed melanoma frequency",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    sns.histplot(
        data=probs, x="probability", hue="model", bins=np.linspace(0, 1, n_bins + 1), stat="density",
        common_norm=False, element="step", fill=False, ax=ax_hist,
    )  # fmt: skip
    ax_hist.set(title="Predicted probabilities", xlabel="melanoma probability", xlim=(0, 1))
    return fig
