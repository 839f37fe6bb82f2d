"""The ``attnmel`` command: ``synth``, ``train``, ``evaluate``, ``predict``, ``book`` and ``weights``.

Expected failures (bad data, bad settings, missing files, a diverged run) end with one line on stderr and exit
code 1; usage errors (unknown flags, invalid config values) exit with 2. ``attnmel train`` takes every
TrainConfig field as a flag (``--batch-size 16``, ``--no-channels-last``), plus ``--preset``, ``--config
file.json`` and ``--set key=value``; later sources win: preset < config file < flags and ``--set``.
Several processes: ``torchrun --nproc_per_node=N -m attnmel train ...`` (DDP).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any

from attnmel import __version__
from attnmel.book import PROFILES
from attnmel.config import (
    MISSING,
    PRECISIONS,
    PRESETS,
    TrainConfig,
    field_choices,
    field_help,
    field_types,
    fields,
    read_config_json,
)
from attnmel.data.registry import list_datasets
from attnmel.models.registry import list_backbones

__all__ = ["main", "build_parser", "config_from_args"]

PROG = "attnmel"


class _UsageError(Exception):
    pass


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def parse_field_value(name: str, text: str) -> Any:
    """Turn the command-line text for TrainConfig field ``name`` into a value of its type."""
    allowed = field_types()[name]
    if type(None) in allowed and text.strip().lower() in ("none", "null", ""):
        return None
    for kind in allowed:
        if kind is type(None):
            continue
        try:
            if kind is bool:
                return _bool(text)
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
            if kind is str:
                return text
        except ValueError:
            continue
    names = " or ".join("none" if t is type(None) else t.__name__ for t in allowed)
    raise _UsageError(f"--{name.replace('_', '-')}: expected {names}, got {text!r}")


def _field_help(name: str, default: object) -> str:
    """``--help`` text of a config flag: the field's help, its allowed values and its default (one source)."""
    text = field_help(name)
    options = field_choices(name)
    if options is not None:
        text += " {" + ", ".join("none" if o is None else str(o) for o in options) + "}"
    return f"{text} (default {default})".replace("%", "%%")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, unless its help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


# Library messages name keyword arguments (resume=True, missing='skip', TrainConfig.data_root); through the
# command line they read as the flags that set them.
CLI_NAMES = {"missing", "overwrite", "out_dir", "batch_size", "max_samples", "n_boot", "threshold"}


def cli_spelling(message: str) -> str:
    """``message`` with keyword-argument spellings turned into flags: ``resume=True`` -> ``--resume``,
    ``missing='skip'`` -> ``--missing skip``, ``weights=None`` -> ``--weights none``, ``TrainConfig.data_root``
    -> ``--data-root``; "``x=True (--x)``" phrasings for both audiences keep only the flag."""
    names = {f.name for f in fields()} | CLI_NAMES
    alternation = "|".join(sorted(names, key=len, reverse=True))

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    def keyword(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if value == "True":
            return flag(name)
        if value == "False":
            return "--no-" + name.replace("_", "-")
        if value == "None":
            return f"{flag(name)} none"
        return f"{flag(name)} {value.strip(chr(39) + chr(34))}"

    text = re.sub(
        rf"(?<![\w.-])({alternation})=(True|False|None|'[^']*'|\"[^\"]*\"|[\w.-]+)(?:,? \((?:or )?--[^)]*\))?",
        keyword,
        message,
    )
    text = re.sub(
        rf"\bTrainConfig\.({alternation})(?: = |\b)",
        lambda m: flag(m.group(1)) + " " * (" = " in m.group(0)),
        text,
    )
    # "pass --missing skip, or --missing skip on the command line," -> "pass --missing skip,"
    text = re.sub(r"(--[a-z-]+(?: [^\s,()]+)?), or \1 on the command line", r"\1", text)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Melanoma recognition via visual attention (Yan et al., IPMI 2019): data, training, "
        "evaluation, prediction and the book.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "synth",
        help="write a synthetic dermoscopy set (ISIC 2017 layout)",
        formatter_class=DefaultsHelpFormatter,
        description=(
            "Write a seeded synthetic dermoscopy set in the ISIC 2017 layout (Training, Validation, Test_v2, "
            "Test_shift), readable by the same loaders as the real data."
        ),
    )
    p.add_argument("root", help="folder to create")
    p.add_argument(
        "--n", type=int, default=600, help="images in Training + Validation + Test_v2 (default 600)"
    )
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--artifact-bias", type=float, default=0.0, help="artifact-label correlation in [0, 1] (default 0)"
    )
    p.add_argument(
        "--difficulty",
        type=float,
        default=0.0,
        help="how subtle the lesion cues are, in [0, 1]: subtle melanomas, atypical nevi and mimics (default 0)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing synthetic set at ROOT")

    p = sub.add_parser(
        "train",
        help="train a model (TrainConfig fields as flags)",
        description=(
            "Train a model with the paper's protocol. Sources, later wins: --preset, --config, flags and --set. "
            f"Presets: {', '.join(PRESETS)}. The defaults below are TrainConfig's; "
            "--preset NAME --print-config shows every value a preset resolves to."
        ),
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset")
    p.add_argument("--config", metavar="FILE", help="TrainConfig JSON (e.g. a run's config.json)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="set any config field")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="train once per seed into <run folder>/seed-<SEED> and report mean ± sd with 95%% intervals; "
        "finished seeds are reused and interrupted ones resumed, so rerunning the command completes a sweep",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="with --seeds: train N seeds at once as separate processes (default: several on a GPU, enough to "
        "fill it; 1 on the CPU); each writes <seed folder>.log",
    )
    group = p.add_argument_group("config fields")
    for f in fields():
        flag = "--" + f.name.replace("_", "-")
        if field_types()[f.name] == (bool,):
            group.add_argument(
                flag,
                dest=f"field_{f.name}",
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=_field_help(f.name, f.default),
            )
        else:
            group.add_argument(
                flag,
                dest=f"field_{f.name}",
                metavar=f.name.upper(),
                default=argparse.SUPPRESS,
                help=_field_help(f.name, f.default),
            )

    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a dataset split",
        formatter_class=DefaultsHelpFormatter,
        description=(
            "Evaluate a checkpoint on one split: metrics JSON (AP, AUC with bootstrap CIs, threshold metrics, "
            "calibration, attention Jaccard), predictions CSV and figures."
        ),
    )
    p.add_argument("checkpoint", help="checkpoint file, e.g. runs/<run>/checkpoints/best.pt")
    p.add_argument(
        "--dataset",
        choices=list_datasets(),
        help="dataset to evaluate on (default: the training run's); ph2 is the external test set",
    )
    p.add_argument(
        "--data-root",
        help="dataset folder (default: the training run's, or $ATTNMEL_<DATASET>_ROOT, e.g. ATTNMEL_PH2_ROOT)",
    )
    p.add_argument(
        "--split",
        help="split to evaluate (default: the dataset's test split: Test_v2, Test for isic2016 / ph2)",
    )
    p.add_argument("--out-dir", help="output folder (default <run folder>/evaluation)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="autocast precision (default auto)"
    )
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--max-samples", type=int, help="evaluate a seeded subset of this size (default: all)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (0 = no CIs)")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="probability threshold of the threshold metrics"
    )
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average the melanoma probability over the 8 flips / 90-degree rotations",
    )
    p.add_argument(
        "--missing",
        choices=MISSING,
        default="error",
        help="listed images absent from the folder: stop with an error, or skip them with a warning",
    )

    p = sub.add_parser(
        "predict",
        help="melanoma probability + attention overlay per image",
        formatter_class=DefaultsHelpFormatter,
        description=(
            "Melanoma probability and an attention overlay PNG per image. Unreadable files are reported one line "
            "each on stderr and the others are still processed; the exit code is 1 when any failed."
        ),
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files (JPEG, PNG, BMP, TIFF, ...), folders (their .jpg .jpeg .png .bmp .tif .tiff files, "
        "any case, sorted) or glob patterns ('data/*.jpg', quoted or not)",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file")
    p.add_argument(
        "--out-dir",
        default="predictions",
        help="output folder, relative to the current working directory: overlays, predictions.csv "
        "(path,melanoma,error: every input) and predictions_isic.csv (image_id,melanoma: ISIC format)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--no-overlays", action="store_true", help="probabilities only")
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average the melanoma probability over the 8 flips / 90-degree rotations",
    )

    p = sub.add_parser(
        "book",
        help="run the notebooks and build the book",
        formatter_class=DefaultsHelpFormatter,
        description=(
            "Execute every chapter with the chosen profile (papermill) and build the HTML book (Jupyter Book)."
        ),
    )
    p.add_argument(
        "--profile",
        default="smoke",
        choices=PROFILES,
        help="settings profile of the chapters: a preset (smoke-mini: every chapter at the smallest one)",
    )
    p.add_argument("--data", dest="data_root", help="dataset folder for the real-data profiles")
    p.add_argument("--isic2016", dest="isic2016_root", help="ISIC 2016 folder: chapter 4 trains Table 1 too")
    p.add_argument("--ph2", dest="ph2_root", help="PH2 folder: chapter 4 adds a PH2 column to Table 2")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p = sub.add_parser(
        "weights",
        help="ImageNet weights of the backbones: fetch into the torch hub cache, or list",
        description=(
            "The torchvision ImageNet weights that --weights IMAGENET1K_V1 (preset paper) loads. attnmel never "
            "downloads them during training: 'fetch' puts the file into the torch hub cache "
            "($TORCH_HOME/hub/checkpoints, default ~/.cache/torch/hub/checkpoints); 'list' shows where each file "
            "is expected and whether it is there."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    actions = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    fetch = actions.add_parser(
        "fetch",
        help="download the weights of a backbone into the torch hub cache",
        formatter_class=DefaultsHelpFormatter,
    )
    fetch.add_argument(
        "backbone",
        nargs="?",
        default="vgg16_bn",
        choices=list_backbones(),
        help="backbone (vgg16_bn: the paper's)",
    )
    fetch.add_argument("--weights", default="IMAGENET1K_V1", help="member of the backbone's torchvision enum")
    actions.add_parser(
        "list",
        aliases=["path"],
        help="where each backbone's weights file is expected, and whether it is there",
    )

    p = sub.add_parser(
        "compare",
        help="table of several runs: AUC and AP with CIs, best epoch, differing settings",
        description=(
            "Compare run folders on one split: AUC and AP with their 95% CIs, the best epoch and the config "
            "settings that differ between the runs. A run without metrics for the split gets empty cells and a "
            "note."
        ),
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folders (written by attnmel train) or evaluation folders (attnmel evaluate --out-dir)",
    )
    p.add_argument("--split", help="split to compare (default: the first test split any run has metrics for)")
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="data folder whose labels pair the runs image by image (default: the first run's data_root; a "
        "relative one counts from the current folder)",
    )
    p.add_argument(
        "--format", choices=("markdown", "csv"), default="markdown", help="output format (default markdown)"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge preset, config file, flags and --set into one validated TrainConfig."""
    values: dict[str, Any] = {}
    if args.preset:
        values.update(PRESETS[args.preset])
    if args.config:
        try:
            values.update(read_config_json(args.config))
        except ValueError as err:
            raise _UsageError(f"--config {err}") from None
    names = {f.name for f in fields()}
    for key, value in vars(args).items():
        if key.startswith("field_"):
            name = key[len("field_") :]
            values[name] = value if isinstance(value, bool) else parse_field_value(name, value)
    for item in args.set:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise _UsageError(f"--set {item!r}: expected KEY=VALUE")
        if key not in names:
            import difflib

            close = difflib.get_close_matches(key, sorted(names), n=1)
            raise _UsageError(
                f"--set: unknown field {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        values[key] = parse_field_value(key, text)
    try:
        return TrainConfig.from_dict(values)
    except ValueError as err:
        raise _UsageError(str(err)) from err


def _cmd_synth(args: argparse.Namespace) -> int:
    from attnmel.data import make_synthetic

    summary = make_synthetic(
        args.root,
        n=args.n,
        size=args.size,
        seed=args.seed,
        artifact_bias=args.artifact_bias,
        difficulty=args.difficulty,
        overwrite=args.overwrite,
    )
    print(f"wrote {sum(summary.counts.values())} images to {summary.root} in {summary.seconds:.1f} s")
    for split, count in summary.counts.items():
        print(f"  {split}: {count} images, {summary.n_melanoma.get(split, 0)} melanoma")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.print_config:
        print(config.to_json())
        return 0
    if args.seeds:
        return _train_seeds(args, config)
    if args.parallel is not None:
        raise _UsageError("--parallel trains several seeds at once: give --seeds too")
    from attnmel.trainer import fit

    result = fit(config)
    from attnmel.distributed import env_info

    if env_info().is_main:
        print(f"run folder: {result.run_dir}")
        # the epoch best.pt holds: the last one for the scratch presets, with best_val.pt's
        print(result.kept)
        for split, metrics in result.test_metrics.items():
            print(f"  {split}: AUC {_fmt(metrics.get('auc'))}, AP {_fmt(metrics.get('ap'))}")
    return 0


def _train_seeds(args: argparse.Namespace, config: TrainConfig) -> int:
    """``train --seeds``: the resumable sweep of :func:`attnmel.experiments.run_seeds` and its summary."""
    if getattr(args, "field_seed", None) is not None:
        raise _UsageError("--seed and --seeds: give one of them")
    if args.parallel is not None and args.parallel < 1:
        raise _UsageError(f"--parallel must be >= 1, got {args.parallel}")
    from attnmel.distributed import env_info
    from attnmel.experiments import run_seeds, seeds_table

    runs = run_seeds(config, args.seeds, reuse=True, parallel=args.parallel)
    if not env_info().is_main:
        return 0
    first = next(iter(runs.values()))
    print(f"sweep folder: {first.run_dir.parent} ({len(runs)} seeds: {', '.join(map(str, runs))})")
    for split in first.metrics:
        for metric in ("auc", "ap"):
            row = seeds_table({config.model: runs}, split, metric)[0]
            _print_seed_values(f"{split}: {metric.upper()}", row["per_seed"])
        # a split with lesion masks (Validation): each map's Jaccard, as training saved it
        if any(run.metrics.get(split, {}).get("attention") for run in runs.values()):
            reports = _attention_by_seed(runs, split)
            for name in {n: None for report in reports.values() for n in report}:
                per_seed = {
                    s: report[name]["jaccard_mean"] for s, report in reports.items() if name in report
                }
                _print_seed_values(f"{split}: {name} Jaccard", per_seed)
    return 0


def _attention_by_seed(runs: Any, split: str) -> dict[int, dict[str, Any]]:
    """Each seed's attention scores on ``split``: those training saved, computed for a seed whose run predates
    them (:meth:`attnmel.experiments.Run.attention`); a seed where that fails is left out with a note."""
    found = {}
    for seed, run in runs.items():
        try:
            found[seed] = run.attention(split) or {}
        except (OSError, ValueError) as err:  # DataError is a ValueError: e.g. the data folder has moved
            print(f"  {split}: seed {seed}'s attention scores left out: {err}")
    return found


def _print_seed_values(label: str, per_seed: dict[int, float]) -> None:
    from attnmel.metrics import seed_interval

    row = seed_interval(list(per_seed.values()))
    spread = "n/a" if row["sd"] is None else f"{row['sd']:.4f}"
    print(
        f"  {label} {_fmt(row['mean'])} ± {spread}{_ci(row['ci'])} "
        f"(per seed: {', '.join(f'{s}: {v:.4f}' for s, v in per_seed.items())})"
    )


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _ci(interval: Any) -> str:
    return "" if not interval else f" [95% CI {interval[0]:.4f}, {interval[1]:.4f}]"


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from attnmel.evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        args.checkpoint,
        dataset=args.dataset,
        data_root=args.data_root,
        split=args.split,
        out_dir=args.out_dir,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        num_workers=args.num_workers,
        max_samples=args.max_samples,
        n_boot=args.n_boot,
        threshold=args.threshold,
        plots=not args.no_plots,
        missing=args.missing,
        tta=args.tta,
    )
    print(
        f"{metrics['dataset']}/{metrics['split']}: n={metrics['n']} ({metrics['n_pos']} melanoma), "
        f"AUC {_fmt(metrics.get('auc'))}{_ci(metrics.get('auc_ci'))}, AP {_fmt(metrics.get('ap'))}{_ci(metrics.get('ap_ci'))}"
    )
    for name, report in (metrics.get("attention") or {}).items():
        print(f"  {name}: Jaccard {report['jaccard_mean']:.4f}, pointing game {report['pointing_rate']:.3f}")
    print(f"wrote metrics, predictions{'' if args.no_plots else ' and figures'} to {metrics['out_dir']}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from attnmel.predict import predict_images

    results = predict_images(
        args.checkpoint,
        args.images,
        args.out_dir,
        device=args.device,
        overlays=not args.no_overlays,
        tta=args.tta,
    )
    for r in results:
        if r.ok:
            print(f"{r.path}\t{r.probability:.4f}" + (f"\t{r.overlay}" if r.overlay else ""))
        else:
            print(f"{PROG} predict: error: {r.error}", file=sys.stderr)
    renamed = [r for r in results if r.image_id != r.path.stem]
    if renamed:
        print(
            f"{PROG} predict: note: {len(renamed)} input(s) share a file name with an earlier one; the ISIC table "
            f"and the overlays call them {', '.join(f'{r.path} -> {r.image_id}' for r in renamed[:3])}"
            + (", ..." if len(renamed) > 3 else ""),
            file=sys.stderr,
        )
    failed = sum(not r.ok for r in results)
    if failed:
        print(f"{PROG} predict: {failed} of {len(results)} image(s) failed", file=sys.stderr)
    # stdout keeps one line per image; where the files went goes to stderr
    from pathlib import Path

    from attnmel.predict import ISIC_TABLE, TABLE

    print(
        f"{PROG} predict: wrote {TABLE}, {ISIC_TABLE}"
        f"{'' if args.no_overlays else ' and the overlays'} to {Path(args.out_dir).resolve()}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _cmd_book(args: argparse.Namespace) -> int:
    from attnmel.book import build_book

    build_book(
        profile=args.profile,
        data_root=args.data_root,
        device=args.device,
        isic2016_root=args.isic2016_root,
        ph2_root=args.ph2_root,
    )
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from attnmel.models.weights import (
        WeightsNotFoundError,
        fetch_imagenet_weights,
        imagenet_checkpoint_path,
        resolve_weights,
    )

    if args.weights_command == "fetch":
        weights = resolve_weights(args.weights, args.backbone)
        if not hasattr(weights, "url"):
            raise _UsageError(f"--weights {args.weights!r}: expected a member name such as IMAGENET1K_V1")
        path = imagenet_checkpoint_path(weights)
        present = path.is_file()
        try:
            fetch_imagenet_weights(args.backbone, weights_name=weights.name, progress=_watching())
        except WeightsNotFoundError as err:
            reason = err.__cause__ if err.__cause__ is not None else err
            print(
                f"{PROG} weights: error: could not download {weights.url} ({' '.join(str(reason).split())}); "
                f"download it by hand and save it as {path} (or set TORCH_HOME to use another cache)",
                file=sys.stderr,
            )
            return 1
        print(
            f"{args.backbone} {type(weights).__name__}.{weights.name}: {path}{' (already there)' if present else ''}"
        )
        return 0
    from attnmel.models.weights import IMAGENET_WEIGHTS

    for backbone, family in IMAGENET_WEIGHTS.items():
        for name in family.__members__:
            weights = family[name]
            if name != weights.name:  # DEFAULT is an alias
                continue
            path = imagenet_checkpoint_path(weights)
            status = "present" if path.is_file() else "missing"
            print(f"{backbone}\t{type(weights).__name__}.{name}\t{status}\t{path}")
    return 0


def _watching() -> bool:
    from attnmel.progress import watching

    return watching()


def _cmd_compare(args: argparse.Namespace) -> int:
    from attnmel.experiments import compare_runs, comparison_csv, comparison_markdown

    comparison = compare_runs(args.runs, split=args.split, data_root=args.data_root)
    comparison.notes = [cli_spelling(note) for note in comparison.notes]  # data_root=DIR: --data-root DIR
    if args.format == "csv":
        print(comparison_csv(comparison), end="")
        for note in comparison.notes:  # stdout stays a clean CSV
            print(f"{PROG} compare: note: {note}", file=sys.stderr)
    else:
        print(comparison_markdown(comparison))
    return 0


COMMANDS = {
    "weights": _cmd_weights,
    "synth": _cmd_synth,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
    "book": _cmd_book,
    "compare": _cmd_compare,
}


def _expected_errors() -> tuple[type[BaseException], ...]:
    from attnmel.checkpoint import CheckpointError
    from attnmel.data import DataError
    from attnmel.runlock import RunFolderLocked
    from attnmel.trainer import TrainingDiverged

    errors: list[type[BaseException]] = [
        DataError,
        CheckpointError,
        TrainingDiverged,
        RunFolderLocked,
        ValueError,
        OSError,  # DiskFullError included
    ]
    try:
        from attnmel.models import WeightsError

        errors.append(WeightsError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``attnmel`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: message + exit code 2
    try:
        return COMMANDS[args.command](args)
    except _UsageError as err:
        parser.exit(2, f"{PROG} {args.command}: error: {cli_spelling(str(err))}\n")
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as err:
        from attnmel.data import unwrap_worker_error

        err = unwrap_worker_error(err)
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{PROG} {args.command}: error: {cli_spelling(message)}", file=sys.stderr)
        return 1
    except ImportError as err:
        if "pip install" not in str(err):  # a missing optional package names its extra; others are bugs
            raise
        print(f"{PROG} {args.command}: error: {cli_spelling(str(err))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
