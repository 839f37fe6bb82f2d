"""The paper's experiments as data: the ablation variants, the paper's own figures, and result tables.

A *variant* is a named set of :class:`~attnmel.config.TrainConfig` overrides (Sect. 3.2: VGG-16, VGG-16-GAP,
Mel-CNN, AttnMel-CNN and its ROI-regularised versions). :func:`run_variants` trains each under one protocol
(or reuses a finished run folder), and :func:`results_table` lays the results out like Tables 1 and 2, with
the paper's figures beside ours. The ``PAPER_*`` constants are the only numbers typed in by hand: they are
copied from the paper and always labelled as the paper's.
"""

from __future__ import annotations

import dataclasses
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
    "Study",
    "STUDIES",
    "study_of",
    "usable_variants",
    "profile_caption",
    "Variant",
    "VARIANTS",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "Run",
    "load_run",
    "is_complete",
    "run_or_load",
    "variant_config",
    "run_variants",
    "run_seeds",
    "run_variant_seeds",
    "PAPER_PROTOCOL",
    "run_recipe_ladder",
    "run_config_ladder",
    "run_contrasts",
    "pick_contrasts",
    "with_recipe",
    "ladder_table",
    "contrast_table",
    "contrast_findings",
    "ladder_extras",
    "ladder_findings",
    "image_paired_by_seed",
    "ladder_markdown",
    "seed_runs_of",
    "seeds_table",
    "seeds_markdown",
    "paired_verdict",
    "seeds_findings",
    "evaluate_external",
    "results_table",
    "markdown_table",
    "format_metric",
    "metrics_markdown",
    "NotARunFolder",
    "Comparison",
    "compare_runs",
    "comparison_markdown",
    "comparison_csv",
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
    changes: dict[str, Any] = {"runs_root": str(runs_dir)}  # progress: bars only when someone watches
    changes |= {"data_root": data_root} if data_root else {}
    changes |= {"device": device} if device != "auto" else {}
    changes |= {k: v for k, v in overrides.items() if not (k in ZERO_MEANS_PRESET and v == 0)}
    return TrainConfig.from_preset(preset, **changes)


@dataclass(frozen=True)
class Study:
    """What chapters 4 and 5 train under one profile: the compared models, the seeds, the ResNet-50 rows.

    The budget decides: ``smoke`` trains everything with 3 seeds in minutes; ``isic2017-cpu`` keeps the paper's
    central contrasts (attention vs none, lesion regulariser vs none, GAP) at one seed, to fit two hours on a
    2-core CPU; ``paper`` runs the paper's seven models with 3 seeds on a GPU.
    """

    variants: tuple[str, ...]
    seeds: int
    backbones: bool
    ladder_seeds: int = 2  # seeds of chapter 6's from-scratch recipe ladder; 0: not trained by default


_PAPER_SEVEN = (
    "VGG-16",
    "VGG-16-GAP",
    "Mel-CNN",
    "AttnMel-CNN",
    "AttnMel-CNN-Dermo",
    "AttnMel-CNN-Lesion",
    "AttnMel-CNN-Bkg",
)
STUDIES: dict[str, Study] = {
    "smoke": Study(_PAPER_SEVEN, seeds=3, backbones=True),
    "smoke-mini": Study(_PAPER_SEVEN, seeds=3, backbones=True),
    # The ladder (5 steps x 2 seeds of 17-minute runs) would add 2.8 h: opt in with chapter 6's `ladder_seeds`.
    "isic2017-cpu": Study(
        ("VGG-16-GAP", "Mel-CNN", "AttnMel-CNN", "AttnMel-CNN-Lesion"),
        seeds=1,
        backbones=False,
        ladder_seeds=0,
    ),
    "paper": Study(_PAPER_SEVEN, seeds=3, backbones=True),
    # The whole book from scratch with the recipe (chapter 6's `scratch` presets) on a GPU, and its CPU version
    # at the budget of isic2017-cpu's study (its 30-epoch runs take about 80 minutes each on 2 cores).
    # (No ladder: it starts from the paper's protocol, and these presets already set the recipe's options.)
    "scratch": Study(_PAPER_SEVEN, seeds=3, backbones=True, ladder_seeds=0),
    "scratch-cpu": Study(
        ("Mel-CNN", "AttnMel-CNN", "AttnMel-CNN-Lesion"), seeds=1, backbones=False, ladder_seeds=0
    ),
}


def study_of(profile: str) -> Study:
    """The :class:`Study` of ``profile``; a preset without one (a user's own) gets the paper's seven, 1 seed."""
    return STUDIES.get(profile, Study(_PAPER_SEVEN, seeds=1, backbones=False))


def usable_variants(base: TrainConfig, names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``names`` into the variants ``base``'s data can train and the others, with the reason for each.

    A Dermo variant needs ISIC 2017 Task 2 (superpixels and feature JSON) for every training image, a lesion
    or background one the Task 1 masks; synthetic data has both. Reads the training split's listing only.
    """
    from attnmel.loaders import load_split

    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    if base.dataset == "synthetic":
        return list(names), {}
    train_split = base.splits[0]
    samples = load_split(base, Path(base.data_root), train_split)
    has_masks = all(s.lesion_mask_path is not None for s in samples)
    has_dermo = all(s.has_dermo for s in samples)
    kept, dropped = [], {}
    for name in names:
        variant = VARIANTS[name]
        if variant.dermo and not has_dermo:
            dropped[name] = (
                f"{base.dataset} {train_split} has no Task 2 dermoscopic features in {base.data_root}"
            )
        elif variant.lesion and not has_masks:
            dropped[name] = f"{base.dataset} {train_split} has no lesion masks in {base.data_root}"
        else:
            kept.append(name)
    return kept, dropped


def profile_caption(profile: str, config: TrainConfig, seeds: int = 1) -> str:
    """One line under a table: which profile produced it, and what that profile can and cannot show."""
    init = (
        "ImageNet-initialised"
        if config.weights == "IMAGENET1K_V1"
        else (
            "from scratch (no ImageNet)" if config.weights is None else f"initialised from {config.weights}"
        )
    )
    data = (
        f"the synthetic set (difficulty {config.synthetic_difficulty})"
        if config.dataset == "synthetic"
        else config.dataset.upper().replace("ISIC", "ISIC ")
    )
    facts = (
        f"profile `{profile}`: {data}, {init}, {config.image_size} px, {config.epochs} epoch{'s' if config.epochs != 1 else ''}, "
        f"{seeds} seed{'s' if seeds != 1 else ''}"
    )
    if config.dataset == "synthetic":
        limits = "it ranks models on a testbed built to be hard; its numbers are not ISIC's"
    elif config.weights == "IMAGENET1K_V1" and config.image_size >= 224:
        limits = "the paper's protocol, so our figures and the paper's can be compared"
    else:
        limits = (
            "real data, but not the paper's protocol (ImageNet weights, 224 px, 50 epochs): compare models "
            "with each other, not with the paper's figures"
        )
    if seeds < 2:
        limits += "; one seed shows the test-sample uncertainty only, not the spread between training runs"
    return f"*{facts}. {limits[0].upper() + limits[1:]}.*"


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
    checkpoint: Path | None = None  # the weights its metrics are of; None: the folder's checkpoints/best.pt

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint or self.run_dir / "checkpoints" / "best.pt"

    @property
    def best_epoch(self) -> int:
        flagged = [int(r["epoch"]) for r in self.history if str(r.get("is_best")).lower() in ("1", "true")]
        if flagged:
            return flagged[-1]
        return int(max(self.history, key=lambda r: float(r["val_auc"]))["epoch"])

    @property
    def seconds(self) -> float:
        return float(sum(float(r.get("seconds", 0.0)) for r in self.history))

    def attention(self, split: str) -> dict[str, dict[str, float]] | None:
        """Table 3's Jaccard and pointing game of best.pt's maps on ``split``, per map (None without maps or
        lesion masks): the scores training saved in ``metrics/<split>.json``, else computed now on the CPU in fp32
        (runs from versions that did not save them, or a split training did not evaluate; not cached), on the same
        ``max_eval_samples`` subset training evaluated."""
        saved = self.metrics.get(split, {})
        if "attention" in saved:
            return saved["attention"]
        import torch

        from attnmel.checkpoint import build_model_from_checkpoint
        from attnmel.evaluate import attention_summary, collect_maps, split_loader

        model, _ = build_model_from_checkpoint(self.best_checkpoint)
        loader = split_loader(self.config, split, limit=self.config.max_eval_samples)
        found = collect_maps(model, loader, device=torch.device("cpu"), progress=False)
        return attention_summary(found)

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
    if config.run_dir is not None and Path(config.run_dir) != run_dir:
        config = config.replace(run_dir=str(run_dir))  # a folder copied elsewhere: its cache is here now
    history = json.loads((run_dir / "history.json").read_text())
    found = {p.stem: json.loads(p.read_text()) for p in sorted((run_dir / "metrics").glob("*.json"))}
    metrics = {s: found.pop(s) for s in report_splits(config) if s in found} | found
    return Run(run_dir, config, history, metrics)


def best_val_runs(
    runs: Mapping[int, Run], reuse: bool = True, log: Callable[[str], None] = print
) -> dict[int, Run]:
    """Each run's epoch of best validation AUC, read back as a run of its own: a contrast that trains nothing.

    Under ``select_epoch="last"`` training keeps that epoch as ``checkpoints/best_val.pt`` beside ``best.pt`` (the
    last). It is evaluated here on the run's report splits, on the images training evaluated, into
    ``<run>/best-val/`` (reused when newer than the checkpoint) with the run's own precision, memory order and
    batch size, so its figures are what training would have written had it kept that epoch. The returned run's
    predictions, metrics, ``best_checkpoint`` and ``best_epoch`` are that epoch's; config and history the run's.
    """
    from attnmel.evaluate import evaluate_checkpoint

    chosen = {}
    for seed, run in runs.items():
        checkpoint = run.run_dir / "checkpoints" / "best_val.pt"
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"{checkpoint} is missing: only a run with select_epoch='last' keeps its best validation epoch"
            )
        out = run.run_dir / "best-val"
        metrics = {}
        for split in report_splits(run.config):
            saved = _saved_evaluation(out, split, checkpoint) if reuse else None
            if saved is not None:
                metrics[split] = saved
                continue
            log(f"==> {checkpoint} on {split}")
            metrics[split] = evaluate_checkpoint(
                checkpoint, data_root=run.config.data_root, split=split, out_dir=out, device=run.config.device,
                precision=run.config.precision, channels_last=run.config.channels_last,
                batch_size=run.config.batch_size, max_samples=run.config.max_eval_samples, n_boot=run.config.n_boot,
                threshold=run.config.threshold, plots=False, seed=run.config.seed, missing=run.config.missing,
            )  # fmt: skip
        peak = next(iter(metrics.values()))["epoch"]
        history = [{**r, "is_best": int(r["epoch"]) == peak} for r in run.history]  # best_epoch: that epoch
        chosen[seed] = Run(out, run.config, history, metrics, checkpoint=checkpoint)
    return chosen


def _saved_evaluation(out: Path, split: str, checkpoint: Path) -> dict[str, Any] | None:
    """The metrics an earlier :func:`~attnmel.evaluate.evaluate_checkpoint` wrote to ``out`` for ``split``, if
    written after ``checkpoint`` last changed; None otherwise (evaluate again)."""
    saved = out / "metrics" / f"{split}.json"
    if saved.is_file() and saved.stat().st_mtime >= checkpoint.stat().st_mtime:
        return json.loads(saved.read_text())
    return None


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
        # how it ran and where its folder lies, not what it trained: a finished run copied elsewhere is reused
        ignore = {"resume", "progress", "num_workers", "device", "run_dir", "run_name", "runs_root"}
        changed = {k for k in wanted if k not in ignore and saved.get(k) != wanted[k]}
        if "data_root" in changed and _same_folder(saved["data_root"], wanted["data_root"]):
            changed.discard("data_root")  # the same folder spelled another way (relative, a trailing slash)
        if changed:
            raise ValueError(
                f"{run_dir} holds a finished run with different settings ({', '.join(sorted(changed))}); "
                "delete it or choose another run_dir"
            )
        log(f"reusing the finished run in {run_dir}")
        # the folder's place and data folder as the caller names them, so later reads do not look where it was
        here = {k: getattr(config, k) for k in ("run_dir", "run_name", "runs_root", "data_root")}
        return dataclasses.replace(run, config=run.config.replace(**here))
    resume = (run_dir / "checkpoints" / "latest.pt").is_file()
    if resume and not reuse:
        raise FileExistsError(f"{run_dir} already holds a run; delete it or pass reuse=True to continue it")
    fit(config.replace(resume=resume), log=log)
    return load_run(run_dir)


def _same_folder(a: str | None, b: str | None) -> bool:
    """Whether two data_root settings name one folder (both None: the synthetic default)."""
    if a is None or b is None:
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def variant_config(base: TrainConfig, name: str) -> TrainConfig:
    """``base`` with the variant's overrides. An ROI variant trains without mixup (a blended image has no lesion
    mask): under the ``scratch`` presets the Lesion / Dermo / Bkg rows keep the rest of the recipe."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    overrides = dict(VARIANTS[name].overrides)
    if overrides.get("roi") is not None and base.mixup > 0:
        overrides["mixup"] = 0.0
    return base.replace(**overrides)


def run_variants(
    base: TrainConfig,
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    reuse: bool = True,
    log: Callable[[str], None] = print,
    parallel: int | None = None,
) -> dict[str, Run]:
    """Train (or reuse) each named variant under ``base``'s protocol, in ``<out_dir>/<variant>``.

    ``parallel``: variants trained at once (:func:`attnmel.concurrent.train_many`; None: several on a GPU,
    one at a time on the CPU)."""
    from attnmel.concurrent import train_many

    out_dir = Path(out_dir)
    names = list(names or VARIANTS)
    configs = [
        variant_config(base, name).replace(run_dir=str(out_dir / name), resume=False) for name in names
    ]
    runs = train_many(configs, parallel=parallel, reuse=reuse, labels=names, log=log)
    return dict(zip(names, runs.values(), strict=True))


def run_seeds(
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    reuse: bool = True,
    log: Callable[[str], None] = print,
    parallel: int | None = None,
) -> dict[int, Run]:
    """Train ``config`` once per seed into ``<run_dir>/seed-<s>``: the sweep behind ``attnmel train --seeds``.

    Resumable: a finished seed with the same settings is reused, an interrupted one resumed, so a sweep cut
    short is finished by running the same command again. ``config.run_dir`` (or the folder ``runs_root`` /
    ``run_name`` name) holds the seeds' folders.
    """
    from attnmel.trainer import resolve_run_dir

    if not seeds:
        raise ValueError("run_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    from attnmel.concurrent import train_many

    base_dir = resolve_run_dir(config)
    configs = [config.replace(seed=int(s), run_dir=str(base_dir / f"seed-{s}"), resume=False) for s in seeds]
    runs = train_many(configs, parallel=parallel, reuse=reuse, labels=[f"seed {s}" for s in seeds], log=log)
    return dict(zip((int(s) for s in seeds), runs.values(), strict=True))


def run_variant_seeds(
    base: TrainConfig,
    out_dir: str | Path,
    names: Sequence[str],
    seeds: Sequence[int],
    reuse: bool = True,
    log: Callable[[str], None] = print,
    parallel: int | None = None,
) -> dict[str, dict[int, Run]]:
    """Each named variant under each seed: ``{variant: {seed: Run}}`` (the chapters' multi-seed tables).

    The run of ``base.seed`` is the one :func:`run_variants` keeps in ``<out_dir>/<variant>`` (so a chapter's
    single-seed tables and this share it); the other seeds go to ``<out_dir>/seeds/<variant>/seed-<s>``.
    Finished runs are reused and interrupted ones resumed, as in :func:`run_or_load`; ``parallel`` as in
    :func:`run_variants`.
    """
    _check_seeds(seeds)
    out_dir = Path(out_dir)
    cells = [
        (
            name,
            seed,
            variant_config(base, name).replace(
                seed=seed,
                run_dir=str(
                    out_dir / name if seed == base.seed else out_dir / "seeds" / name / f"seed-{seed}"
                ),
                resume=False,
            ),
        )
        for name in names
        for seed in map(int, seeds)
    ]
    return _train_grid(cells, reuse=reuse, log=log, parallel=parallel)


def _check_seeds(seeds: Sequence[int]) -> None:
    """One line for a seed list a grid of runs cannot use: empty, or a seed twice (two runs in one folder)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {list(seeds)}")


def _train_grid(
    cells: Sequence[tuple[str, int, TrainConfig]],
    *,
    reuse: bool,
    log: Callable[[str], None],
    parallel: int | None,
) -> dict[str, dict[int, Run]]:
    """Train (or reuse) each ``(row, seed, config)`` with :func:`attnmel.concurrent.train_many`, and return the
    runs as ``{row: {seed: Run}}`` in the cells' order."""
    from attnmel.concurrent import train_many

    labels = [f"{name}, seed {seed}" for name, seed, _ in cells]
    configs = [config for _, _, config in cells]
    trained = train_many(configs, parallel=parallel, reuse=reuse, labels=labels, log=log).values()
    runs: dict[str, dict[int, Run]] = {}
    for (name, seed, _), run in zip(cells, trained, strict=True):
        runs.setdefault(name, {})[seed] = run
    return runs


PAPER_PROTOCOL = "paper protocol (AttnMel-CNN, chapter 4)"


def with_recipe(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """``config`` with recipe options applied; the warm-up is shortened to leave at least one epoch after it."""
    overrides = dict(overrides)
    if "warmup_epochs" in overrides:
        overrides["warmup_epochs"] = max(0, min(int(overrides["warmup_epochs"]), config.epochs - 1))
    return config.replace(**overrides)


def run_recipe_ladder(
    base: TrainConfig,
    out_dir: str | Path,
    seeds: Sequence[int],
    *,
    chapter4_dir: str | Path,
    steps: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
    reuse: bool = True,
    log: Callable[[str], None] = print,
    parallel: int | None = None,
) -> dict[str, dict[int, Run]]:
    """The from-scratch recipe built up step by step: ``{row: {seed: Run}}``, first row the paper's protocol.

    The first row is chapter 4's AttnMel-CNN under ``base`` (reused from ``chapter4_dir``, trained there if
    missing); each later row adds its step's overrides (``steps``, default :data:`~attnmel.config.RECIPE_STEPS`)
    to all the earlier ones, and is trained per seed into ``<out_dir>/step-<k>/seed-<s>`` (reused when finished)
    by :func:`run_config_ladder`; ``parallel``: runs at once (default one at a time).
    """
    from attnmel.config import RECIPE_STEPS

    steps = RECIPE_STEPS if steps is None else steps
    defaults = TrainConfig()
    already = [
        f"{k}={getattr(base, k)!r}" for _, o in steps for k in o if getattr(base, k) != getattr(defaults, k)
    ]
    if already:
        raise ValueError(
            "the recipe ladder starts from the paper's protocol, but the base config already sets "
            + ", ".join(already)
            + " (a scratch preset?): use the isic2017-cpu, paper or smoke profile"
        )
    runs = {
        PAPER_PROTOCOL: run_variant_seeds(base, chapter4_dir, ["AttnMel-CNN"], seeds, reuse=True, log=log)[
            "AttnMel-CNN"
        ]
    }
    if not steps:
        return runs
    start = variant_config(base, "AttnMel-CNN")
    one_at_a_time = 1 if parallel is None else parallel  # the steps train in turn unless asked otherwise
    return runs | run_config_ladder(
        start, steps, out_dir, seeds, reuse=reuse, log=log, parallel=one_at_a_time, first_step=1
    )


def run_config_ladder(
    start: TrainConfig,
    steps: Sequence[tuple[str, Mapping[str, Any]]],
    out_dir: str | Path,
    seeds: Sequence[int],
    *,
    reuse: bool = True,
    log: Callable[[str], None] = print,
    parallel: int | None = None,
    first_step: int = 0,
) -> dict[str, dict[int, Run]]:
    """A ladder that starts from any config: ``{row: {seed: Run}}``, each row being ``start`` with the overrides
    of its step and every step before it (:func:`with_recipe`), trained per seed into
    ``<out_dir>/step-<k>/seed-<s>``, k counting from ``first_step`` (reused when finished, resumed when
    interrupted; ``parallel`` as in :func:`run_variants`). Chapter 6 runs the ``scratch-cpu`` preset's own choices
    this way (:data:`~attnmel.config.SCRATCH_CPU_STEPS`), whose last row is the preset itself."""
    if not steps:
        raise ValueError("run_config_ladder needs at least one step")
    names = [name for name, _ in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"the ladder's step names must be distinct (they name its rows), got {names}")
    _check_seeds(seeds)
    cells, config = [], start
    for k, (name, overrides) in enumerate(steps, start=first_step):
        config = with_recipe(config, overrides)
        for seed in map(int, seeds):
            run_dir = Path(out_dir) / f"step-{k}" / f"seed-{seed}"
            cells.append((name, seed, config.replace(seed=seed, run_dir=str(run_dir), resume=False)))
    return _train_grid(cells, reuse=reuse, log=log, parallel=parallel)


def run_contrasts(
    config: TrainConfig,
    contrasts: Sequence[tuple[str, str, Mapping[str, Any]]],
    out_dir: str | Path,
    seeds: Sequence[int],
    *,
    reuse: bool = True,
    log: Callable[[str], None] = print,
    parallel: int | None = None,
) -> dict[str, dict[int, Run]]:
    """``{title: {seed: Run}}``: ``config`` with each contrast's overrides (``(title, folder, overrides)``, e.g.
    :data:`~attnmel.config.SCRATCH_CPU_CONTRASTS`), trained per seed into ``<out_dir>/<folder>/seed-<s>`` (reused
    when finished, resumed when interrupted). Set beside a preset's own runs of the same seeds, each says whether
    the preset is right about what its overrides change: e.g. the recipe's regularisers, or colour constancy."""
    titles, folders = [t for t, _, _ in contrasts], [f for _, f, _ in contrasts]
    if not contrasts or len(set(titles)) != len(titles) or len(set(folders)) != len(folders):
        raise ValueError(
            f"contrasts need at least one entry and distinct titles and folders, got titles {titles} "
            f"and folders {folders}"
        )
    _check_seeds(seeds)
    cells = []
    for title, folder, overrides in contrasts:
        for seed in map(int, seeds):
            run_dir = Path(out_dir) / folder / f"seed-{seed}"
            cells.append(
                (title, seed, config.replace(**overrides, seed=seed, run_dir=str(run_dir), resume=False))
            )
    return _train_grid(cells, reuse=reuse, log=log, parallel=parallel)


def pick_contrasts(
    contrasts: Sequence[tuple[str, str, Mapping[str, Any]]], folders: str
) -> list[tuple[str, str, Mapping[str, Any]]]:
    """The ``(title, folder, overrides)`` entries of ``contrasts`` named by ``folders`` (comma-separated, in that
    order; ``""``: all of them), so a chapter can train a subset within its budget. Unknown names are an error."""
    by_folder = {entry[1]: entry for entry in contrasts}
    names = [f.strip() for f in folders.split(",") if f.strip()]
    unknown = [n for n in names if n not in by_folder]
    if unknown:
        raise ValueError(
            f"unknown contrast folder(s) {', '.join(unknown)}: choose from {', '.join(by_folder)}"
        )
    return [by_folder[n] for n in dict.fromkeys(names)] if names else list(contrasts)


def ladder_table(
    runs: Mapping[str, Mapping[int, Run]], split: str, extra: Mapping[str, Mapping[int, float]] | None = None
) -> list[dict[str, Any]]:
    """Per ladder row: ``split`` AUC over seeds, and its paired differences to the row before and to the first
    row. ``extra`` adds other per-seed figures by name (e.g. ``{"jaccard": {row: {seed: value}}}``)."""
    from attnmel.metrics import paired_difference, seed_interval

    names = list(runs)
    auc = {n: {s: r.metrics.get(split, {}).get("auc") for s, r in runs[n].items()} for n in names}
    auc = {n: {s: v for s, v in per.items() if v is not None} for n, per in auc.items()}
    rows = []
    for i, name in enumerate(names):
        row: dict[str, Any] = {
            "step": name,
            "split": split,
            "per_seed": auc[name],
            "auc": seed_interval(list(auc[name].values())),
        }
        row["vs_previous"] = paired_difference(auc[name], auc[names[i - 1]]) if i else None
        row["vs_paper"] = paired_difference(auc[name], auc[names[0]]) if i else None
        for key, values in (extra or {}).items():
            row[key] = seed_interval(list(values.get(name, {}).values()))
        rows.append(row)
    return rows


def contrast_table(
    runs: Mapping[str, Mapping[int, Run]], split: str, extra: Mapping[str, Mapping[int, float]] | None = None
) -> list[dict[str, Any]]:
    """:func:`ladder_table` for a reference and its contrasts: ``runs``' first entry is the reference, and each
    later row is paired by seed with it (in both paired columns), not with the row above, since each contrast
    changes the reference on its own (e.g. :data:`~attnmel.config.SCRATCH_CPU_COMPONENTS`)."""
    reference, *others = runs
    rows = ladder_table({reference: runs[reference]}, split, extra)
    for name in others:
        rows.append(ladder_table({reference: runs[reference], name: runs[name]}, split, extra)[1])
    return rows


def contrast_findings(
    runs: Mapping[str, Mapping[int, Run]], rows: Sequence[Mapping[str, Any]], reference: str
) -> list[str]:
    """:func:`ladder_findings` for :func:`contrast_table`'s rows: each contrast against the reference (named
    ``reference`` in the sentences), by seed and per seed on the same test images."""
    first = next(iter(runs))
    return [
        ladder_findings({first: runs[first], row["step"]: runs[row["step"]]}, [rows[0], row], reference)[0]
        for row in rows[1:]
    ]


def image_paired_by_seed(
    runs: Mapping[int, Run], reference: Mapping[int, Run], split: str
) -> dict[int, dict[str, Any]]:
    """Per seed both share, ``runs[seed]``'s ``split`` AUC minus ``reference[seed]``'s, paired over the split's
    images (:func:`attnmel.metrics.paired_bootstrap` on their ``predictions/<split>.csv``, as ``attnmel compare``).

    With two seeds the by-seed interval of :func:`ladder_table` is a Student-t on one degree of freedom, very
    wide; this one holds test-set noise only, one seed at a time. Seeds lacking either file are left out.
    """
    paired: dict[int, dict[str, Any]] = {}
    label_of: dict[str, int] | None = None
    for seed in sorted(set(runs) & set(reference)):
        other, ref = (_split_predictions(r.run_dir, split) for r in (runs[seed], reference[seed]))
        if other is None or ref is None:
            continue
        if label_of is None:
            label_of = _split_labels(reference[seed].config, split)
        difference = None
        if all(i in label_of for i in ref[0]):
            y = [label_of[i] for i in ref[0]]
            difference = _paired_auc(y, ref, other, reference[seed].config.n_boot)
        if difference is None:
            files = [r.run_dir / "predictions" / f"{split}.csv" for r in (runs[seed], reference[seed])]
            raise ValueError(f"{files[0]} and {files[1]} do not hold predictions for the same {split} images")
        paired[seed] = difference
    return paired


def ladder_findings(
    ladder: Mapping[str, Mapping[int, Run]],
    rows: Sequence[Mapping[str, Any]],
    before: str = "the step before",
) -> list[str]:
    """One sentence per row after the first (:func:`ladder_table`'s ``rows``): the by-seed verdict
    (:func:`paired_verdict`) and each seed's difference paired over the test images (:func:`image_paired_by_seed`)."""
    names = list(ladder)
    findings = []
    for i, row in enumerate(rows[1:], start=1):
        sentence = paired_verdict(row["step"], before, row["vs_previous"])
        by_seed = image_paired_by_seed(ladder[names[i]], ladder[names[i - 1]], row["split"])
        if by_seed:
            sentence += (
                " Paired on the same test images, by seed: "
                + ", ".join(
                    f"seed {s} {d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
                    for s, d in by_seed.items()
                )
                + "."
            )
        findings.append(sentence)
    return findings


def ladder_extras(
    ladder: Mapping[str, Mapping[int, Run]], mask_split: str, ph2_root: str | Path | None = None
) -> tuple[dict[str, dict[str, dict[int, float]]], dict[str, str]]:
    """A ladder's extra columns for :func:`ladder_table` and their titles for :func:`ladder_markdown`: each run's
    pool-4 Jaccard on ``mask_split`` (:meth:`Run.attention`) and, given ``ph2_root``, its PH2 AUC
    (:func:`evaluate_external`, reused when already evaluated)."""
    extra = {
        "jaccard": {
            name: {s: run.attention(mask_split)["pool4"]["jaccard_mean"] for s, run in by_seed.items()}
            for name, by_seed in ladder.items()
        }
    }
    titles = {"jaccard": f"pool-4 Jaccard, {mask_split}"}
    if ph2_root:
        quiet = {"n_boot": 0, "reuse": True, "log": lambda _m: None}
        extra["ph2_auc"] = {
            name: {s: m["auc"] for s, m in evaluate_external(dict(by_seed), "ph2", ph2_root, **quiet).items()}
            for name, by_seed in ladder.items()
        }
        titles["ph2_auc"] = "PH2 AUC"
    return extra, titles


def ladder_markdown(
    rows: Sequence[Mapping[str, Any]],
    extra: Mapping[str, str] | None = None,
    first: str = "the paper's protocol",
    previous: bool = True,
) -> str:
    """Markdown for :func:`ladder_table`; ``extra`` maps an extra figure's key to its column title, ``first``
    names the first row in the title of the column that compares every row with it; ``previous=False`` leaves
    out the column that compares each row with the one above (for :func:`contrast_table`, where it repeats)."""

    split = rows[0]["split"] if rows else "test"
    extra = dict(extra or {})
    header = [
        "step",
        "seeds",
        f"{split} AUC mean ± sd",
        *(["vs the step before (paired, 95% CI)"] if previous else []),
        f"vs {first} (paired, 95% CI)",
        *extra.values(),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            r["step"],
            str(r["auc"]["n"]),
            format_mean_sd(r["auc"]),
            *([format_paired(r["vs_previous"])] if previous else []),
            format_paired(r["vs_paper"]),
        ]
        cells += [format_mean_sd(r[key]) for key in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_runs_of(folder: str | Path) -> dict[int, Run]:
    """The finished ``seed-<s>`` runs of a sweep folder, by seed (unfinished seeds are left out)."""
    found = {}
    for path in sorted(Path(folder).glob("seed-*")):
        suffix = path.name.removeprefix("seed-")
        if suffix.lstrip("-").isdigit() and is_complete(path):
            found[int(suffix)] = load_run(path)
    return dict(sorted(found.items()))


def seeds_table(
    models: Mapping[str, Mapping[int, Run]],
    split: str,
    metric: str = "auc",
    reference: str | None = None,
) -> list[dict[str, Any]]:
    """Per model: ``metric`` on ``split`` over seeds (mean, sd, t-interval) and its paired difference to
    ``reference`` (the same seeds, a 95% interval). Rows keep ``models``' order; per-seed values included."""
    from attnmel.metrics import paired_difference, seed_interval

    values = {
        name: {s: run.metrics.get(split, {}).get(metric) for s, run in runs.items()}
        for name, runs in models.items()
    }
    values = {name: {s: v for s, v in per.items() if v is not None} for name, per in values.items()}
    rows = []
    for name, per_seed in values.items():
        row = {"method": name, "split": split, "metric": metric, "per_seed": per_seed}
        row.update(seed_interval(list(per_seed.values())))
        if reference is not None and name != reference and reference in values:
            row["diff"] = paired_difference(per_seed, values[reference])
        rows.append(row)
    return rows


def seeds_markdown(rows: Sequence[Mapping[str, Any]], reference: str | None = None) -> str:
    """A Markdown rendering of :func:`seeds_table`: mean ± sd, its 95% interval, and the paired difference."""
    metric = rows[0]["metric"].upper() if rows else "AUC"
    header = ["Method", "seeds", f"{metric} mean ± sd", "95% CI of the mean"]
    header += [f"difference to {reference} (paired, 95% CI)"] if reference else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        spread = "—" if r["sd"] is None else f"{r['sd']:.3f}"
        interval = "—" if r["ci"] is None else f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
        cells = [r["method"], str(r["n"]), f"{format_metric(r['mean'])} ± {spread}", interval]
        if reference:
            cells.append(format_paired(r.get("diff"), "reference" if r["method"] == reference else "—"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_verdict(name: str, reference: str, diff: Mapping[str, Any] | None, metric: str = "AUC") -> str:
    """One sentence on a paired difference ``name - reference``: which way it goes, that the seeds cannot tell
    (an interval containing 0, or fewer than two seeds), or that every seed scored the same."""
    if diff is None or diff.get("mean") is None:
        return f"{name} vs {reference}: no common seeds."
    value = f"{diff['mean']:+.3f}"
    if diff.get("ci") is None:
        return f"{name} vs {reference}: {metric} {value} on one seed; it takes two or more to judge."
    low, high = diff["ci"]
    if low == high == 0:  # every seed scored the same, e.g. a step whose setting changed nothing here
        return f"{name} vs {reference}: the same {metric} in all {diff['n']} seeds; here it changed nothing."
    interval = f"{value} [{low:+.3f}, {high:+.3f}] over {diff['n']} seeds"
    if low > 0:
        return f"**{name} beats {reference}**: {metric} {interval}, an interval above 0."
    if high < 0:
        return f"**{name} falls behind {reference}**: {metric} {interval}, an interval below 0."
    return f"{name} vs {reference}: {metric} {interval}; the interval contains 0, so the seeds cannot tell them apart."


def seeds_findings(rows: Sequence[Mapping[str, Any]], reference: str, metric: str = "AUC") -> str:
    """The across-seeds table read out: one Markdown bullet per model compared with ``reference``."""
    lines = [
        f"- {paired_verdict(r['method'], reference, r.get('diff'), metric)}"
        for r in rows
        if r["method"] != reference
    ]
    return "\n".join(lines)


def evaluate_external(
    runs: Mapping[str, Run],
    dataset: str,
    data_root: str | Path,
    *,
    n_boot: int = 1000,
    reuse: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Each run's best checkpoint on an external test set (e.g. PH2), in ``<run>/evaluation-<dataset>/``.

    The external set is never trained on; each model keeps its own input normalisation. Metrics already
    written for the same checkpoint are reused when ``reuse`` is set.
    """
    from attnmel.evaluate import default_split, evaluate_checkpoint

    split = default_split(dataset)
    results = {}
    for name, run in runs.items():
        out = run.run_dir / f"evaluation-{dataset}"
        saved = _saved_evaluation(out, split, run.best_checkpoint) if reuse else None
        if saved is not None:
            results[name] = saved
            continue
        log(f"==> {name} on {dataset}")
        results[name] = evaluate_checkpoint(
            run.best_checkpoint, dataset=dataset, data_root=data_root, split=split, out_dir=out,
            n_boot=n_boot, plots=False, device=run.config.device,
        )  # fmt: skip
    return results


def format_metric(value: Any, ci: Any = None, *, for_book: bool = False) -> str:
    """``0.912 [0.880, 0.940]``, or ``—`` for a missing value.

    ``for_book``: a no-break space inside the interval, so a narrow table cell wraps before the interval
    rather than inside it (the book's tables); plain spaces for terminals and CSV.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:.3f}"
    if ci:
        gap = "\u00a0" if for_book else " "
        text += f" [{ci[0]:.3f},{gap}{ci[1]:.3f}]"
    return text


def format_mean_sd(stats: Mapping[str, Any], digits: int = 3) -> str:
    """``0.912 ± 0.014`` from a ``{"mean", "sd"}`` summary over seeds (no sd with one seed), or ``—``."""
    if stats["mean"] is None:
        return "—"
    return f"{stats['mean']:.{digits}f}" + ("" if stats["sd"] is None else f" ± {stats['sd']:.{digits}f}")


def format_paired(diff: Mapping[str, Any] | None, none: str = "—") -> str:
    """``+0.015 [-0.081, +0.110]`` from a paired difference (``{"mean", "ci"}``), or ``none`` without one."""
    if diff is None or diff["mean"] is None:
        return none
    return f"{diff['mean']:+.3f}" + (
        "" if diff["ci"] is None else f" [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]"
    )


def results_table(
    runs: Mapping[str, Run],
    split: str,
    paper: Mapping[str, tuple[float, float]] | None = None,
    external: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Rows in the layout of Tables 1-2: ours (with bootstrap 95% CIs) beside the paper's figures.

    ``external``: per-method metrics on an external test set (:func:`evaluate_external`), as extra columns.
    """
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
        if external is not None:
            ext = external.get(name) or {}
            rows[-1].update(
                external_set=ext.get("dataset"),
                external_auc=ext.get("auc"),
                external_auc_ci=ext.get("auc_ci"),
            )
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]], with_dermo: bool = True) -> str:
    """A Markdown rendering of :func:`results_table` rows (the paper's column order).

    The paper's Ensemble and External columns are shown only when some row has them; when every row is ✗
    they are dropped and a line under the table says so, which keeps the table inside the book's column.
    """
    tick = {True: "✓", False: "✗"}
    header = ["#", "Method", "AP (ours, 95% CI)", "AP (paper)", "AUC (ours, 95% CI)", "AUC (paper)", "Lesion"]
    header += ["Dermo"] if with_dermo else []
    header += ["Interp"]
    flags = [k for k in ("ensemble", "external") if any(r[k] for r in rows)]
    header += [k.capitalize() for k in flags]
    sets = sorted({r["external_set"] for r in rows if r.get("external_set")})
    header += [f"{s.upper()} AUC (ours, 95% CI)" for s in sets[:1]]  # one external column: the test set
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, r in enumerate(rows, 1):
        cells = [str(i), r["method"], format_metric(r["ap"], r["ap_ci"], for_book=True)]
        cells += [format_metric(r["paper_ap"]), format_metric(r["auc"], r["auc_ci"], for_book=True)]
        cells += [format_metric(r["paper_auc"]), tick[r["lesion"]]]
        cells += [tick[r["dermo"]]] if with_dermo else []
        cells += [tick[r["interp"]]] + [tick[r[k]] for k in flags]
        cells += (
            [format_metric(r.get("external_auc"), r.get("external_auc_ci"), for_book=True)] if sets else []
        )
        lines.append("| " + " | ".join(cells) + " |")
    dropped = [k.capitalize() for k in ("ensemble", "external") if k not in flags]
    if rows and dropped:
        lines += ["", f"{' and '.join(dropped)} (the paper's columns): ✗ for every row, so not shown."]
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


# ------------------------------------------------------------------------------------------ comparing runs
# Settings that name or place a run, or only change how fast it ran: never a "difference" between runs.
_NOT_SETTINGS = {"run_dir", "run_name", "runs_root", "resume", "progress", "tensorboard", "num_workers",
                 "pin_memory", "cache", "cache_dir"}  # fmt: skip


# What an `attnmel evaluate --out-dir` folder adds to its checkpoint's config: compared like settings.
_EVALUATION_SETTINGS = ("checkpoint_epoch", "tta")


class NotARunFolder(ValueError):
    """A folder given to :func:`compare_runs` that holds no run (no readable ``config.json``) and no evaluation."""


@dataclass
class Comparison:
    """:func:`compare_runs`: one row per run, the split compared, the differing settings and notes."""

    split: str | None
    rows: list[dict[str, Any]]
    settings: list[str]  # config fields that differ between the runs (the extra columns)
    notes: list[str] = field(default_factory=list)


def _read_run_folder(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(config, history, metrics by split) of a run folder, or of an ``attnmel evaluate --out-dir`` folder."""
    config_path = path / "config.json"
    if not path.is_dir():
        raise NotARunFolder(f"{path} is not a folder")
    metrics = {}
    for file in sorted((path / "metrics").glob("*.json")):
        try:
            metrics[file.stem] = json.loads(file.read_text())
        except ValueError:
            continue
    scored = [m for m in metrics.values() if isinstance(m, dict) and "checkpoint" in m]  # by attnmel evaluate
    if not config_path.exists() and scored:
        return _evaluation_config(path, scored), [], metrics
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        raise NotARunFolder(
            f"{path} is not a run folder (no readable config.json) nor an evaluation folder "
            "(no metrics/*.json naming a checkpoint)"
        ) from None
    if not isinstance(config, dict) or "model" not in config or "dataset" not in config:
        raise NotARunFolder(f"{path} is not a run folder (config.json is not a TrainConfig)")
    try:
        history = json.loads((path / "history.json").read_text())
    except (OSError, ValueError):
        history = []
    config.setdefault("tta", False)  # the run's own evaluation: no test-time augmentation
    return config, history, metrics


def _evaluation_config(path: Path, scored: list[dict[str, Any]]) -> dict[str, Any]:
    """The config an ``attnmel evaluate --out-dir`` folder was scored under (``scored``: its metrics files that
    name a checkpoint): its checkpoint's training config, with the evaluated dataset and folder, the
    checkpoint's epoch and whether test-time augmentation was on.

    One checkpoint per folder: ``evaluate`` writes each split it scores beside the others, so two checkpoints in
    one folder would make its rows disagree about what was compared.
    """
    from attnmel.checkpoint import CheckpointError, load_checkpoint

    checkpoints = sorted({str(m["checkpoint"]) for m in scored})
    if len(checkpoints) > 1:
        raise NotARunFolder(
            f"{path}: its metrics come from {len(checkpoints)} checkpoints ({', '.join(checkpoints)})"
        )
    try:
        # the config, not the weights: mapped from the file, not read
        config = dict(load_checkpoint(checkpoints[0], mmap=True).get("config") or {})
    except (OSError, CheckpointError) as err:
        raise NotARunFolder(
            f"{path} is an evaluation folder, but its checkpoint cannot be read for the config ({err})"
        ) from None
    first = scored[0]
    config.update({k: first[k] for k in ("dataset", "data_root") if first.get(k) is not None})
    config.update(checkpoint_epoch=first.get("epoch"), tta=bool(first.get("tta", False)))
    return config


def _train_config(config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a folder's config dict (the evaluation facts and ``resume`` left out)."""
    skip = {"resume", *_EVALUATION_SETTINGS}
    return TrainConfig.from_dict({k: v for k, v in config.items() if k not in skip})


def _test_splits(config: dict[str, Any]) -> list[str]:
    try:
        return report_splits(_train_config(config))
    except (TypeError, ValueError):
        return []


def _best_epoch(history: list[dict[str, Any]], metrics: dict[str, Any] | None) -> int | None:
    flagged = [int(r["epoch"]) for r in history if str(r.get("is_best")).lower() in ("1", "true")]
    if flagged:
        return flagged[-1]
    if metrics and metrics.get("epoch") is not None:
        return int(metrics["epoch"])
    return None


def compare_runs(
    paths: Sequence[str | Path], split: str | None = None, data_root: str | Path | None = None
) -> Comparison:
    """AUC and AP (with their 95% CIs) of several run folders on one split, their best epochs, the config
    settings that differ between them, and each later run's AUC minus the first's, paired over the split's
    images where their predictions files allow (``"auc_vs_first"``).

    ``split`` None: the first test split (a configured evaluation split other than validation) for which any of
    the runs has metrics, else the first split any has. A run without metrics for the split gets empty cells
    and a note. The pairing reads the split's labels from ``data_root``, by default the first run's own, where a
    relative one is taken from the current working directory: compare from the folder the runs trained in, or
    pass ``data_root``. Raises :class:`NotARunFolder` (one line) for a folder that holds no run.
    """
    if not paths:
        raise ValueError("compare_runs needs at least one run folder")
    folders = [Path(p) for p in paths]
    read = [(path, *_read_run_folder(path)) for path in folders]
    if split is None:
        candidates = [s for _, config, _, _ in read for s in _test_splits(config)[:-1]]
        candidates += [s for _, config, _, _ in read for s in _test_splits(config)[-1:]]
        candidates += [s for _, _, _, metrics in read for s in metrics]
        present = {s for _, _, _, metrics in read for s in metrics}
        split = next((s for s in candidates if s in present), None)
    keys = sorted({k for _, config, _, _ in read for k in config} - _NOT_SETTINGS)
    settings = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for _, c, _, _ in read}) > 1]
    names = [p.name for p in folders]
    if len(set(names)) < len(names):
        names = [str(p) for p in folders]
    rows, notes = [], []
    for name, (path, config, history, metrics) in zip(names, read, strict=True):
        m = metrics.get(split) if split is not None else None
        if m is None:
            notes.append(f"{name}: no metrics for split {split!r} (has: {', '.join(metrics) or 'none'})")
        row: dict[str, Any] = {
            "run": name,
            "path": str(path),
            "split": split,
            "n": m.get("n") if m else None,
            "auc": m.get("auc") if m else None,
            "auc_ci": m.get("auc_ci") if m else None,
            "ap": m.get("ap") if m else None,
            "ap_ci": m.get("ap_ci") if m else None,
            "best_epoch": _best_epoch(history, m),
        }
        row.update({k: config.get(k) for k in settings})
        rows.append(row)
    if split is None:
        notes.insert(0, "none of the runs has metrics for any split")
    elif len(rows) > 1:
        _paired_auc_differences(folders, read[0][1], split, rows, notes, data_root)
    return Comparison(split, rows, settings, notes)


def _paired_auc_differences(
    folders: Sequence[Path],
    reference_config: dict[str, Any],
    split: str,
    rows: list[dict[str, Any]],
    notes: list[str],
    data_root: str | Path | None = None,
) -> None:
    """Each later run's AUC minus the first run's, paired over the split's images (``row["auc_vs_first"]``).

    Reads ``predictions/<split>.csv`` of the runs and the split's labels through ``reference_config`` (the first
    run's), from ``data_root`` where given, else from its own data folder (a note then hints at ``data_root``); a run
    whose file is absent or covers other images gets no value and a note. The interval is the paired bootstrap
    over the test images (:func:`attnmel.metrics.paired_bootstrap`): test-set noise only, not training noise.
    """
    reference = _split_predictions(folders[0], split)
    others = [_split_predictions(f, split) for f in folders[1:]]
    if reference is None or all(o is None for o in others):
        return  # no predictions to pair: the table keeps its unpaired columns
    try:
        given = {} if data_root is None else {"data_root": str(data_root)}
        config = _train_config({**reference_config, **given})
        label_of = _split_labels(config, split)
    except (OSError, TypeError, ValueError) as err:  # DataError is a ValueError
        hint = "" if given or isinstance(err, TypeError) else "; name the data folder: data_root=DIR"
        notes.append(
            f"no paired AUC differences: the labels of {split} could not be read ({' '.join(str(err).split())})"
            + hint
        )
        return
    ref_ids = reference[0]
    if any(i not in label_of for i in ref_ids):
        notes.append(f"no paired AUC differences: {rows[0]['run']}'s predictions name images not in {split}")
        return
    y = [label_of[i] for i in ref_ids]
    for row, other in zip(rows[1:], others, strict=True):
        if other is None:
            continue
        difference = _paired_auc(y, reference, other, config.n_boot)
        if difference is None:
            notes.append(
                f"{row['run']}: its {split} predictions cover other images than {rows[0]['run']}'s; not paired"
            )
            continue
        row["auc_vs_first"] = difference


def _split_predictions(run_dir: Path, split: str) -> tuple[list[str], Any] | None:
    """A run folder's ``predictions/<split>.csv`` as ``(image_ids, prob)``; None when it has none."""
    from attnmel.metrics import read_predictions_csv

    file = Path(run_dir) / "predictions" / f"{split}.csv"
    return read_predictions_csv(file) if file.is_file() else None


def _split_labels(config: TrainConfig, split: str) -> dict[str, int]:
    """The melanoma label of each image of ``split``, read through ``config``'s data folder."""
    from attnmel.loaders import load_split

    return {
        sample.image_id: sample.label for sample in load_split(config, config.resolved_data_root(), split)
    }


def _paired_auc(
    y: Sequence[int], reference: tuple[list[str], Any], other: tuple[list[str], Any], n_boot: int
) -> dict[str, Any] | None:
    """``other``'s AUC minus ``reference``'s (``(image_ids, prob)`` each; ``y`` in the reference's order), paired
    over the images (:func:`attnmel.metrics.paired_bootstrap`, ``n_boot`` 0 meaning 1000); None when the two
    cover different images."""
    from attnmel.metrics import paired_bootstrap

    ref_ids, ref_prob = reference
    prob_of = dict(zip(*other, strict=True))
    if set(prob_of) != set(ref_ids):
        return None
    return paired_bootstrap(y, [prob_of[i] for i in ref_ids], ref_prob, "auc", n_boot or 1000)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def comparison_markdown(comparison: Comparison) -> str:
    """A Markdown table of :func:`compare_runs` (empty cells where a run lacks the split), notes below."""
    paired = any("auc_vs_first" in r for r in comparison.rows)
    header = ["run", f"AUC [95% CI] ({comparison.split})", "AP [95% CI]"]
    header += [f"AUC − {comparison.rows[0]['run']} [paired 95% CI]"] if paired else []
    header += ["best epoch", *comparison.settings]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in comparison.rows:
        cells = [r["run"]]
        cells += ["" if r[k] is None else format_metric(r[k], r[f"{k}_ci"]) for k in ("auc", "ap")]
        if paired:
            d = r.get("auc_vs_first")
            cells += ["" if d is None else f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"]
        cells += [_cell(r["best_epoch"])] + [_cell(r[k]) for k in comparison.settings]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += [""] + [f"Note: {n}" for n in comparison.notes] if comparison.notes else []
    return "\n".join(lines)


def comparison_csv(comparison: Comparison) -> str:
    """CSV of :func:`compare_runs`: numbers in separate columns (CI bounds included); notes are not part of it."""
    import csv
    import io

    paired = any("auc_vs_first" in r for r in comparison.rows)
    columns = ["run", "split", "n", "auc", "auc_low", "auc_high", "ap", "ap_low", "ap_high"]
    columns += ["auc_vs_first", "auc_vs_first_low", "auc_vs_first_high"] if paired else []
    columns += ["best_epoch", *comparison.settings]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for r in comparison.rows:
        values = [r["run"], r["split"], r["n"], r["auc"], *(r["auc_ci"] or (None, None))]
        values += [r["ap"], *(r["ap_ci"] or (None, None))]
        if paired:
            d = r.get("auc_vs_first")
            values += [None, None, None] if d is None else [d["diff"], *d["ci"]]
        values += [r["best_epoch"]]
        values += [r[k] for k in comparison.settings]
        writer.writerow(["" if v is None else v for v in values])
    return buffer.getvalue()
