"""Classification metrics for melanoma recognition: AP/AUC, threshold metrics, bootstrap CIs, calibration.

The paper reports average precision (AP, the ISIC 2016 metric) and the area under the ROC curve (AUC, the
ISIC 2017 metric) of the melanoma probability on the test set (Sect. 3.1, Tables 1-2), computed with
scikit-learn's ``average_precision_score`` and ``roc_auc_score`` as in the authors' code. This module adds
what a careful reader wants next to those two numbers: sensitivity/specificity/precision at a threshold,
stratified bootstrap confidence intervals, ROC/PR curve points, calibration (Brier score, expected
calibration error, reliability table) and ISIC-challenge-style prediction CSVs (``image_id,melanoma``).

Conventions used throughout:

* ``y_true``: 1-D array of labels in {0, 1} (1 = melanoma); ``prob``: 1-D array of melanoma probabilities in
  [0, 1] (``softmax(logits)[:, 1]``). NumPy arrays, lists and CPU/GPU torch tensors are accepted.
* A case is called positive when ``prob >= threshold``.
* Undefined values are ``NaN`` (never a silent 0): AUC and AP when only one class is present (with an
  :class:`UndefinedMetricWarning`), sensitivity without positives, specificity without negatives, precision
  when nothing is predicted positive. :func:`summarise` turns ``NaN`` into ``None`` so its result is strict
  JSON.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from attnmel.io import atomic_open

__all__ = [
    "seed_interval",
    "paired_difference",
    "UndefinedMetricWarning",
    "binary_metrics",
    "bootstrap_distribution",
    "bootstrap_ci",
    "paired_bootstrap",
    "roc_curve_points",
    "pr_curve_points",
    "calibration",
    "summarise",
    "write_predictions_csv",
    "read_predictions_csv",
]

PREDICTIONS_HEADER = ("image_id", "melanoma")


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for these labels (e.g. AUC with one class) and was reported as NaN."""


# --------------------------------------------------------------------------------------------------------
# Input checking


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, possibly on GPU or requiring grad
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_binary(y_true: Any, prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert labels and probabilities to 1-D ``int64`` / ``float64`` arrays."""
    y = _to_numpy(y_true)
    p = _to_numpy(prob)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y_true and prob must be 1-D, got shapes {y.shape} and {p.shape}")
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"y_true and prob have different lengths: {y.shape[0]} vs {p.shape[0]}")
    if y.shape[0] == 0:
        raise ValueError("y_true and prob are empty: no cases to evaluate")
    if y.dtype == bool:
        y = y.astype(np.int64)
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise ValueError(f"y_true must hold labels 0/1, found {np.unique(y[bad])[:5].tolist()}")
    p = p.astype(np.float64)
    if not np.isfinite(p).all():
        raise ValueError(f"prob holds {int((~np.isfinite(p)).sum())} non-finite value(s) (NaN or inf)")
    if p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise ValueError(f"prob must lie in [0, 1], got range [{p.min():.6g}, {p.max():.6g}]")
    return y.astype(np.int64), np.clip(p, 0.0, 1.0)


def _both_classes(y: np.ndarray) -> bool:
    return 0 < int(y.sum()) < y.shape[0]


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


# --------------------------------------------------------------------------------------------------------
# Point metrics


def calibration(y_true: Any, prob: Any, n_bins: int = 10) -> tuple[float, dict[str, np.ndarray]]:
    """Expected calibration error and the reliability table over ``n_bins`` equal-width bins of ``prob``.

    ``ECE = sum_b (n_b / N) |mean(prob in b) - fraction of positives in b|``. Bin ``b`` holds
    ``b/n_bins <= prob < (b+1)/n_bins``; the last bin also holds ``prob == 1``.

    Returns:
        ``(ece, table)`` where ``table`` has ``bin_edges (n_bins+1,)``, ``count (n_bins,)``,
        ``mean_prob (n_bins,)`` and ``frac_pos (n_bins,)``; the last two are NaN for empty bins. Plotting
        ``frac_pos`` against ``mean_prob`` gives the reliability curve.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    y, p = _check_binary(y_true, prob)
    n_bins = int(n_bins)
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)  # (N,) bin of each case
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.where(count > 0, sum_p / np.maximum(count, 1), np.nan)
        frac_pos = np.where(count > 0, sum_y / np.maximum(count, 1), np.nan)
    nonempty = count > 0
    ece = float(np.sum(count[nonempty] / y.shape[0] * np.abs(mean_prob[nonempty] - frac_pos[nonempty])))
    table = {
        "bin_edges": np.linspace(0.0, 1.0, n_bins + 1),
        "count": count,
        "mean_prob": mean_prob,
        "frac_pos": frac_pos,
    }
    return ece, table


def binary_metrics(y_true: Any, prob: Any, threshold: float = 0.5, n_bins: int = 10) -> dict[str, float]:
    """All point metrics of melanoma probabilities against labels.

    Args:
        y_true: ``(N,)`` labels in {0, 1}.
        prob: ``(N,)`` melanoma probabilities in [0, 1].
        threshold: a case is predicted positive when ``prob >= threshold``.
        n_bins: bins of the expected calibration error.

    Returns:
        A dict of Python numbers: ``ap``, ``auc`` (scikit-learn; NaN with an :class:`UndefinedMetricWarning`
        when only one class is present), ``sensitivity`` (recall of melanoma), ``specificity``,
        ``precision``, ``accuracy`` at ``threshold``, ``brier`` (mean squared error of ``prob``), ``ece``,
        the confusion counts ``tp, fp, tn, fn``, ``n``, ``n_pos`` and ``threshold``.
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
    y, p = _check_binary(y_true, prob)
    n, n_pos = int(y.shape[0]), int(y.sum())
    if _both_classes(y):
        auc = float(roc_auc_score(y, p))
        ap = float(average_precision_score(y, p))
    else:
        warnings.warn(
            f"only one class present (n={n}, n_pos={n_pos}): AUC and AP are undefined and reported as NaN",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        auc = ap = math.nan
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    ece, _ = calibration(y, p, n_bins=n_bins)
    return {
        "ap": ap,
        "auc": auc,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "accuracy": (tp + tn) / n,
        "brier": float(np.mean((p - y) ** 2)),
        "ece": ece,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n": n,
        "n_pos": n_pos,
        "threshold": float(threshold),
    }


# --------------------------------------------------------------------------------------------------------
# Curves


def roc_curve_points(y_true: Any, prob: Any) -> dict[str, Any]:
    """ROC curve: ``fpr``, ``tpr``, ``thresholds`` (arrays of equal length; the first threshold is ``inf``)
    and ``auc``. Raises ``ValueError`` when only one class is present (there is no curve to draw)."""
    y, p = _check_binary(y_true, prob)
    if not _both_classes(y):
        raise ValueError(f"ROC curve needs both classes, got n={y.shape[0]}, n_pos={int(y.sum())}")
    fpr, tpr, thr = roc_curve(y, p)
    return {"fpr": fpr, "tpr": tpr, "thresholds": thr, "auc": float(roc_auc_score(y, p))}


def pr_curve_points(y_true: Any, prob: Any) -> dict[str, Any]:
    """Precision-recall curve: ``precision``, ``recall`` (length T+1, recall decreasing to 0),
    ``thresholds`` (length T), ``ap`` and ``prevalence`` (the chance level of precision). Raises
    ``ValueError`` when only one class is present."""
    y, p = _check_binary(y_true, prob)
    if not _both_classes(y):
        raise ValueError(f"PR curve needs both classes, got n={y.shape[0]}, n_pos={int(y.sum())}")
    precision, recall, thr = precision_recall_curve(y, p)
    return {
        "precision": precision,
        "recall": recall,
        "thresholds": thr,
        "ap": float(average_precision_score(y, p)),
        "prevalence": float(y.mean()),
    }


# --------------------------------------------------------------------------------------------------------
# Bootstrap


def _stratified_indices(
    y: np.ndarray, n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Resample positives and negatives separately (with replacement, sizes kept): ``(B, n_pos)``, ``(B, n_neg)``."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    idx_pos = pos[rng.integers(0, max(len(pos), 1), size=(n_boot, len(pos)))]
    idx_neg = neg[rng.integers(0, max(len(neg), 1), size=(n_boot, len(neg)))]
    return idx_pos, idx_neg


def _histograms(rank: np.ndarray, idx: np.ndarray, n_unique: int) -> np.ndarray:
    """Count, per resample, how many drawn cases fall on each distinct score: ``(B, U)``."""
    n_boot = idx.shape[0]
    keys = rank[idx] + (np.arange(n_boot) * n_unique)[:, None]  # (B, n_class)
    return np.bincount(keys.ravel(), minlength=n_boot * n_unique).reshape(n_boot, n_unique)


def _fast_auc_ap(p: np.ndarray, idx_pos: np.ndarray, idx_neg: np.ndarray, metric: str) -> np.ndarray:
    """Exact AUC or AP of every resample at once, from per-score counts (no per-resample sort).

    With distinct scores ``u_1 > u_2 > ...`` and per-resample counts ``P_k`` (positives at ``u_k``) and
    ``Q_k`` (negatives), ``TP_k = cumsum(P)``, ``FP_k = cumsum(Q)``:
    ``AUC = sum_k P_k (n_neg - FP_k + Q_k / 2) / (n_pos n_neg)`` (ties count one half, as in
    ``roc_auc_score``) and ``AP = sum_k P_k TP_k / (TP_k + FP_k) / n_pos`` (step-wise, as in
    ``average_precision_score``).
    """
    uniq, inv = np.unique(-p, return_inverse=True)  # distinct scores, descending
    n_unique = uniq.shape[0]
    hist_pos = _histograms(inv, idx_pos, n_unique).astype(np.float64)  # (B, U)
    hist_neg = _histograms(inv, idx_neg, n_unique).astype(np.float64)  # (B, U)
    n_pos, n_neg = idx_pos.shape[1], idx_neg.shape[1]
    fp = np.cumsum(hist_neg, axis=1)
    if metric == "auc":
        return np.sum(hist_pos * (n_neg - fp + 0.5 * hist_neg), axis=1) / (n_pos * n_neg)
    tp = np.cumsum(hist_pos, axis=1)
    denom = tp + fp
    precision = np.divide(tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return np.sum(hist_pos * precision, axis=1) / n_pos


def bootstrap_distribution(
    y_true: Any,
    prob: Any,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "auc",
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Values of ``metric`` on ``n_boot`` stratified bootstrap resamples: ``(n_boot,)``.

    Positives and negatives are resampled separately with replacement, keeping their counts, so every
    resample holds both classes and AUC/AP are always defined. ``"auc"`` and ``"ap"`` use an exact
    vectorised computation (1000 resamples of 600 cases take a few milliseconds); a callable
    ``metric(y, prob) -> float`` is called once per resample on the same resamples (so
    ``metric=roc_auc_score`` gives the same values as ``"auc"`` for the same seed).
    """
    y, p = _check_binary(y_true, prob)
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    n_boot = int(n_boot)
    if isinstance(metric, str):
        if metric not in ("auc", "ap"):
            raise ValueError(f"metric must be 'auc', 'ap' or a callable(y, prob) -> float, got {metric!r}")
        if not _both_classes(y):
            raise ValueError(
                f"bootstrap of {metric!r} needs both classes, got n={y.shape[0]}, n_pos={int(y.sum())}"
            )
    elif not callable(metric):
        raise TypeError(f"metric must be 'auc', 'ap' or a callable, got {type(metric).__name__}")
    rng = np.random.default_rng(seed)
    idx_pos, idx_neg = _stratified_indices(y, n_boot, rng)
    if isinstance(metric, str):
        return _fast_auc_ap(p, idx_pos, idx_neg, metric)
    idx = np.concatenate([idx_pos, idx_neg], axis=1)  # (B, N)
    return np.array([float(metric(y[row], p[row])) for row in idx], dtype=np.float64)


def bootstrap_ci(
    y_true: Any,
    prob: Any,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "auc",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` confidence interval ``(low, high)`` of ``metric``.

    See :func:`bootstrap_distribution` for the (stratified) resampling. Deterministic for a given ``seed``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    values = bootstrap_distribution(y_true, prob, metric=metric, n_boot=n_boot, seed=seed)
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_bootstrap(
    y_true: Any,
    prob_a: Any,
    prob_b: Any,
    metric: str = "auc",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """``metric(a) - metric(b)`` of two predictors of the same cases, with a paired percentile bootstrap interval.

    Both are scored on the same stratified resamples (:func:`bootstrap_distribution` with one ``seed``), so
    what the cases do to both alike cancels: the interval answers "is a better than b on cases like these",
    and is narrower than comparing the two unpaired intervals. It says nothing about training noise: two
    runs of one seed each still need more seeds before a difference is a finding. Returns ``{"diff", "ci":
    [low, high], "n", "n_boot"}``.
    """
    y, pa = _check_binary(y_true, prob_a)
    _, pb = _check_binary(y_true, prob_b)
    if metric not in ("auc", "ap"):
        raise ValueError(f"paired_bootstrap: metric must be 'auc' or 'ap', got {metric!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    diffs = bootstrap_distribution(y, pa, metric, n_boot, seed) - bootstrap_distribution(
        y, pb, metric, n_boot, seed
    )
    pos, neg = np.flatnonzero(y == 1)[None], np.flatnonzero(y == 0)[None]  # the whole set as one "resample"
    point = _fast_auc_ap(pa, pos, neg, metric)[0] - _fast_auc_ap(pb, pos, neg, metric)[0]
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return {
        "diff": float(point),
        "ci": [float(low), float(high)],
        "n": int(y.shape[0]),
        "n_boot": int(n_boot),
    }


# --------------------------------------------------------------------------------------------------------
# Summary


def _jsonable(value: Any) -> Any:
    """Python scalars/lists only, NaN and inf as ``None``: strict JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarise(
    y_true: Any,
    prob: Any,
    *,
    threshold: float = 0.5,
    n_bins: int = 10,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Point metrics (:func:`binary_metrics`) plus bootstrap CIs of AUC and AP, as strict-JSON values.

    Adds ``auc_ci`` and ``ap_ci`` (``[low, high]``, or ``None`` when only one class is present or
    ``n_boot == 0``), ``ci_level`` (``1 - alpha``), ``n_boot``, ``seed`` and the reliability table
    ``calibration`` (lists). Undefined metrics are ``None``.
    """
    out: dict[str, Any] = binary_metrics(y_true, prob, threshold=threshold, n_bins=n_bins)
    y, p = _check_binary(y_true, prob)
    if n_boot and _both_classes(y):
        out["auc_ci"] = list(bootstrap_ci(y, p, "auc", n_boot=n_boot, alpha=alpha, seed=seed))
        out["ap_ci"] = list(bootstrap_ci(y, p, "ap", n_boot=n_boot, alpha=alpha, seed=seed))
    else:
        out["auc_ci"] = out["ap_ci"] = None
    out.update(ci_level=1.0 - alpha, n_boot=int(n_boot), seed=int(seed))
    _, table = calibration(y, p, n_bins=n_bins)
    out["calibration"] = table
    return _jsonable(out)


# --------------------------------------------------------------------------------------------------------
# Prediction files


def write_predictions_csv(path: str | os.PathLike, image_ids: Sequence[str], prob: Any) -> Path:
    """Write an ISIC-challenge-style predictions file atomically: header ``image_id,melanoma``, one row per
    image, probabilities written with full precision (``repr`` of the float, so they read back exactly).

    Raises ``ValueError`` for mismatched lengths, empty or duplicate ids, or probabilities outside [0, 1].
    """
    p = _to_numpy(prob).astype(np.float64)
    ids = [str(i) for i in image_ids]
    if p.ndim != 1 or p.shape[0] != len(ids):
        raise ValueError(f"{path}: need one probability per image id, got {len(ids)} ids and prob {p.shape}")
    if any(not i or "\n" in i or "\r" in i for i in ids):
        raise ValueError(f"{path}: image ids must be non-empty single-line strings")
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"{path}: duplicate image ids {dup}")
    if not np.isfinite(p).all() or (p.size and (p.min() < 0 or p.max() > 1)):
        raise ValueError(f"{path}: probabilities must be finite and in [0, 1]")
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PREDICTIONS_HEADER)
        writer.writerows((i, repr(float(v))) for i, v in zip(ids, p, strict=True))
    return Path(path)


def read_predictions_csv(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a predictions CSV with (at least) the columns ``image_id`` and ``melanoma``.

    Returns ``(image_ids, prob)`` with ``prob`` a float64 ``(N,)`` array. Extra columns (e.g. the ISIC 2017
    ``seborrheic_keratosis``) are ignored. Errors name the file and line.
    """
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected header 'image_id,melanoma'")
        header = [h.strip() for h in header]
        missing = [c for c in PREDICTIONS_HEADER if c not in header]
        if missing:
            raise ValueError(f"{path}: header {header} lacks column(s) {missing}")
        c_id, c_p = header.index("image_id"), header.index("melanoma")
        ids: list[str] = []
        probs: list[float] = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                value = float(row[c_p])
                image_id = row[c_id].strip()
            except (IndexError, ValueError) as err:
                raise ValueError(f"{path}, line {line}: cannot read id/probability from {row}") from err
            if not image_id or not (0.0 <= value <= 1.0):
                raise ValueError(f"{path}, line {line}: need a non-empty id and a probability in [0, 1]")
            ids.append(image_id)
            probs.append(value)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate image ids")
    return ids, np.asarray(probs, dtype=np.float64)


# --------------------------------------------------------------------------------------- across seeds
def seed_interval(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean, sample sd and the Student-t interval of the mean over seeds (NaN-free values).

    Returns ``{"mean", "sd", "n", "ci": [low, high] | None}``; with one seed the sd and interval are undefined
    (None), which the tables show as such rather than as zero spread.
    """
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "sd": None, "n": 0, "ci": None}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "sd": None, "n": 1, "ci": None}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "n": n, "ci": [mean - half, mean + half]}


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> dict[str, Any]:
    """``a - b`` paired by seed (the seeds both have): :func:`seed_interval` of the differences, plus ``seeds``.

    Pairing removes what a seed does to both models alike (data order, initial weights), so the interval is
    the one to read when asking whether model ``a`` beats model ``b``.
    """
    seeds = sorted(set(a) & set(b))
    out = seed_interval([a[s] - b[s] for s in seeds], level)
    out["seeds"] = seeds
    return out
