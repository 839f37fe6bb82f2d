"""The paper's experiments as data: the ablation variants, the paper's own figures, and result tables.

A *variant* is a named set of :class:`~attnmel.config.TrainConfig` overrides (Sect. 3.2: VGG-16, VGG-16-GAP,
Mel-CNN, AttnMel-CNN and its ROI-regularised versions). :func:`run_variants` trains each under one protocol
(or reuses a finished run folder), and :func:`results_table` lays the results out like Tables 1 and 2, with
the paper's figures beside ours. The ``PAPER_*`` constants are the only numbers typed in by hand: they are
copied from the paper and always labelled as the paper's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnmel.config import TrainConfig

__all__ = [
    "report_splits",
    "test_split",
    "profile_config",
    "MANY_RUNS_PRESET",
    "Variant",
    "VARIANTS",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "Run",
    "load_run",
    "is_complete",
    "run_or_load",
    "run_variants",
    "results_table",
    "markdown_table",
    "format_metric",
    "metrics_markdown",
]


# The smoke profile of the ablation and attention chapters trains nine models: it uses a smaller preset.
MANY_RUNS_PRESET = {"smoke": "smoke-mini"}
ZERO_MEANS_PRESET = {"epochs", "image_size", "resize", "batch_size", "max_train_samples", "max_eval_samples"}


def profile_config(
    profile: str,
    *,
    data_root: str = "",
    device: str = "auto",
    runs_dir: str | Path = "runs",
    many_runs: bool = False,
    **overrides: Any,
) -> TrainConfig:
    """The TrainConfig a chapter runs under ``profile`` (a preset name), with the chapter's parameters applied.

    ``data_root=""`` and ``device="auto"`` keep the preset's values; for the size and length settings in
    ``ZERO_MEANS_PRESET`` a 0 (a papermill parameter left at 0) keeps the preset's value too. ``many_runs`` picks the smaller preset that chapters
    training many models use under ``smoke``.
    """
    preset = MANY_RUNS_PRESET.get(profile, profile) if many_runs else profile
    changes: dict[str, Any] = {"runs_root": str(runs_dir), "progress": False}
    changes |= {"data_root": data_root} if data_root else {}
    changes |= {"device": device} if device != "auto" else {}
    changes |= {k: v for k, v in overrides.items() if not (k in ZERO_MEANS_PRESET and v == 0)}
    return TrainConfig.from_preset(preset, **changes)


def report_splits(config: TrainConfig) -> list[str]:
    """The evaluation splits in reporting order: the test splits first (as configured), validation last."""
    _, val, evals = config.splits
    return [s for s in evals if s != val] + [val]


def test_split(config: TrainConfig) -> str:
    """The split a chapter reports as "test": the first evaluation split that is not the validation split."""
    return report_splits(config)[0]


@dataclass(frozen=True)
class Variant:
    """One row of the ablation tables: the config overrides and the table's check marks."""

    name: str
    overrides: dict[str, Any]
    lesion: bool = False  # needs lesion segmentations
    dermo: bool = False  # needs dermoscopic features
    interp: bool = False  # produces attention maps or CAMs


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("VGG-16", {"model": "vgg16"}),
        Variant("VGG-16-GAP", {"model": "vgg16_gap"}, interp=True),
        Variant("Mel-CNN", {"model": "mel_cnn"}),
        Variant("AttnMel-CNN", {"model": "attnmel_cnn"}, interp=True),
        Variant("AttnMel-CNN-Lesion", {"model": "attnmel_cnn", "roi": "lesion"}, lesion=True, interp=True),
        Variant("AttnMel-CNN-Dermo", {"model": "attnmel_cnn", "roi": "dermo"}, dermo=True, interp=True),
        Variant("AttnMel-CNN-Bkg", {"model": "attnmel_cnn", "roi": "background"}, lesion=True, interp=True),
        # Not in the paper: the same heads on a ResNet-50 backbone (chapter 4, "a modern backbone").
        Variant("ResNet-50-GAP", {"model": "vgg16_gap", "backbone": "resnet50"}, interp=True),
        Variant("AttnMel-CNN-ResNet-50", {"model": "attnmel_cnn", "backbone": "resnet50"}, interp=True),
    )
}

# The paper's figures (Yan et al., IPMI 2019), copied by hand: (AP, AUC) on the official test sets.
PAPER_TABLE1 = {  # ISIC 2016 test set, Table 1 rows 4-7
    "VGG-16": (0.602, 0.806),
    "VGG-16-GAP": (0.635, 0.815),
    "Mel-CNN": (0.664, 0.844),
    "AttnMel-CNN": (0.693, 0.852),
}
PAPER_TABLE2 = {  # ISIC 2017 test set, Table 2 rows 6-12
    "VGG-16": (0.600, 0.824),
    "VGG-16-GAP": (0.627, 0.834),
    "Mel-CNN": (0.653, 0.854),
    "AttnMel-CNN": (0.655, 0.872),
    "AttnMel-CNN-Dermo": (0.665, 0.864),
    "AttnMel-CNN-Lesion": (0.672, 0.883),
    "AttnMel-CNN-Bkg": (0.647, 0.849),
}
PAPER_TABLE3 = {  # Jaccard of binarised maps vs lesion masks, ISIC 2017 test set, Table 3
    ("AttnMel-CNN", "pool3"): 0.3105,
    ("AttnMel-CNN", "pool4"): 0.3186,
    ("AttnMel-CNN-Dermo", "pool3"): 0.3621,
    ("AttnMel-CNN-Dermo", "pool4"): 0.4767,
    ("AttnMel-CNN-Lesion", "pool3"): 0.5533,
    ("AttnMel-CNN-Lesion", "pool4"): 0.6560,
    ("VGG-16-GAP", "cam"): 0.2825,
}


@dataclass
class Run:
    """A finished run folder, read back: its config, per-epoch history and per-split metrics."""

    run_dir: Path
    config: TrainConfig
    history: list[dict[str, Any]]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    @property
    def best_epoch(self) -> int:
        flagged = [int(r["epoch"]) for r in self.history if str(r.get("is_best")).lower() in ("1", "true")]
        if flagged:
            return flagged[-1]
        return int(max(self.history, key=lambda r: float(r["val_auc"]))["epoch"])

    @property
    def seconds(self) -> float:
        return float(sum(float(r.get("seconds", 0.0)) for r in self.history))

    def predictions(self, split: str) -> tuple[list[str], Any, Any]:
        """``(image_ids, labels (N,), melanoma probabilities (N,))`` of ``split`` with the best checkpoint."""
        import numpy as np

        from attnmel.loaders import load_split
        from attnmel.metrics import read_predictions_csv

        ids, prob = read_predictions_csv(self.run_dir / "predictions" / f"{split}.csv")
        samples = load_split(self.config, self.config.resolved_data_root(), split)
        label_of = {s.image_id: s.label for s in samples}
        missing = [i for i in ids if i not in label_of]
        if missing:
            raise ValueError(
                f"{self.run_dir}: predictions for {split} name ids not in the dataset: {missing[:3]}"
            )
        return ids, np.array([label_of[i] for i in ids]), prob


def is_complete(run_dir: str | Path) -> bool:
    """A run folder whose training finished and whose evaluation was written."""
    run_dir = Path(run_dir)
    return (run_dir / "checkpoints" / "best.pt").is_file() and any((run_dir / "metrics").glob("*.json"))


def load_run(run_dir: str | Path) -> Run:
    """Read a finished run folder (see :mod:`attnmel.trainer` for its layout)."""
    run_dir = Path(run_dir)
    if not is_complete(run_dir):
        raise FileNotFoundError(f"{run_dir} is not a finished run (no checkpoints/best.pt or metrics/*.json)")
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    history = json.loads((run_dir / "history.json").read_text())
    found = {p.stem: json.loads(p.read_text()) for p in sorted((run_dir / "metrics").glob("*.json"))}
    metrics = {s: found.pop(s) for s in report_splits(config) if s in found} | found
    return Run(run_dir, config, history, metrics)


def run_or_load(config: TrainConfig, reuse: bool = True, log: Callable[[str], None] = print) -> Run:
    """Train ``config`` into ``config.run_dir``; reuse it when it already finished with the same config.

    An interrupted run (``latest.pt`` but no evaluation) is resumed. A finished run whose saved config differs
    from ``config`` is an error rather than a silent reuse: delete the folder or pick another ``run_dir``.
    """
    from attnmel.trainer import fit

    if config.run_dir is None:
        raise ValueError("run_or_load needs config.run_dir (a fixed folder, so the run can be found again)")
    run_dir = Path(config.run_dir)
    if reuse and is_complete(run_dir):
        run = load_run(run_dir)
        saved, wanted = run.config.to_dict(), config.to_dict()
        ignore = {"resume", "progress", "num_workers", "device"}
        changed = {k for k in wanted if k not in ignore and saved.get(k) != wanted[k]}
        if changed:
            raise ValueError(
                f"{run_dir} holds a finished run with different settings ({', '.join(sorted(changed))}); "
                "delete it or choose another run_dir"
            )
        log(f"reusing the finished run in {run_dir}")
        return run
    resume = (run_dir / "checkpoints" / "latest.pt").is_file()
    if resume and not reuse:
        raise FileExistsError(f"{run_dir} already holds a run; delete it or pass reuse=True to continue it")
    fit(config.replace(resume=resume), log=log)
    return load_run(run_dir)


def run_variants(
    base: TrainConfig,
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    reuse: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Run]:
    """Train (or reuse) each named variant under ``base``'s protocol, in ``<out_dir>/<variant>``."""
    out_dir = Path(out_dir)
    runs = {}
    for name in names or list(VARIANTS):
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        log(f"==> {name}")
        config = base.replace(**VARIANTS[name].overrides, run_dir=str(out_dir / name), resume=False)
        runs[name] = run_or_load(config, reuse=reuse, log=log)
    return runs


def format_metric(value: Any, ci: Any = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:.3f}"
    if ci:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def results_table(
    runs: Mapping[str, Run], split: str, paper: Mapping[str, tuple[float, float]] | None = None
) -> list[dict[str, Any]]:
    """Rows in the layout of Tables 1-2: ours (with bootstrap 95% CIs) beside the paper's figures."""
    rows = []
    for name in paper or runs:
        if name not in runs and name not in (paper or {}):
            continue
        variant = VARIANTS.get(name, Variant(name, {}))
        metrics = runs[name].metrics.get(split) if name in runs else None
        paper_ap, paper_auc = (paper or {}).get(name, (None, None))
        rows.append(
            {
                "method": name,
                "ap": metrics.get("ap") if metrics else None,
                "ap_ci": metrics.get("ap_ci") if metrics else None,
                "auc": metrics.get("auc") if metrics else None,
                "auc_ci": metrics.get("auc_ci") if metrics else None,
                "paper_ap": paper_ap,
                "paper_auc": paper_auc,
                "lesion": variant.lesion,
                "dermo": variant.dermo,
                "interp": variant.interp,
                "ensemble": False,
                "external": False,
            }
        )
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]], with_dermo: bool = True) -> str:
    """A Markdown rendering of :func:`results_table` rows (the paper's column order)."""
    tick = {True: "✓", False: "✗"}
    header = ["#", "Method", "AP (ours, 95% CI)", "AP (paper)", "AUC (ours, 95% CI)", "AUC (paper)", "Lesion"]
    header += ["Dermo"] if with_dermo else []
    header += ["Interp", "Ensemble", "External"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, r in enumerate(rows, 1):
        cells = [str(i), r["method"], format_metric(r["ap"], r["ap_ci"]), format_metric(r["paper_ap"])]
        cells += [format_metric(r["auc"], r["auc_ci"]), format_metric(r["paper_auc"]), tick[r["lesion"]]]
        cells += [tick[r["dermo"]]] if with_dermo else []
        cells += [tick[r["interp"]], tick[r["ensemble"]], tick[r["external"]]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metrics_markdown(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """One Markdown row per split: AP and AUC with their CIs, threshold metrics and calibration."""
    lines = [
        "| split | n (melanoma) | AP [95% CI] | AUC [95% CI] | sensitivity | specificity | precision | Brier | ECE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for split, m in metrics.items():
        cells = [split, f"{m['n']} ({m['n_pos']})", format_metric(m.get("ap"), m.get("ap_ci"))]
        cells += [format_metric(m.get("auc"), m.get("auc_ci"))]
        cells += [
            format_metric(m.get(k)) for k in ("sensitivity", "specificity", "precision", "brier", "ece")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
