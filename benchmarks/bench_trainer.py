"""The trainer's images/s against the bare training step's at the same settings (issue 12): target >= 85%.

Trains a preset for a few epochs (the first warms up and is not counted) with each ``--workers`` value, then
times the bare step (``attnmel.bench.train_step_throughput``) at the same model, size, batch, precision and
layout. Writes ``bench_trainer.json`` and ``bench_trainer.md`` to ``--out-dir``. The code is
:mod:`attnmel.bench_trainer`.

    python benchmarks/bench_trainer.py                      # CPU: smoke preset, 96 px, batch 32, 0 and 2 workers
    python benchmarks/bench_trainer.py --quick              # check the script works (64 px, tiny set)
    python benchmarks/bench_trainer.py --device cuda --preset paper --data-root DATA --set weights=None \\
        --set epochs=3 --set image_size=224 --workers 8 14   # GPU, real ISIC 2017
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

from attnmel.bench import machine_info  # noqa: E402
from attnmel.bench_trainer import to_markdown, trainer_vs_step  # noqa: E402
from attnmel.cli import parse_field_value  # noqa: E402
from attnmel.config import PRESETS, TrainConfig, fields  # noqa: E402
from attnmel.io import atomic_write_json, atomic_write_text  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke", choices=sorted(PRESETS), help="default smoke")
    parser.add_argument("--data-root", default=None, help="dataset folder (presets on real data need it)")
    parser.add_argument("--device", default=None, help="default: the preset's")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers, one run each"
    )
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per run, the first not counted (default 3)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="default 32")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config field")
    parser.add_argument(
        "--quick", action="store_true", help="64 px, 64 images, 2 epochs: checks the script works"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=None, help=f"default {DEFAULT_OUT} (quick: .../quick)"
    )
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be >= 2 (the first warms up), got {args.epochs}")
    if any(w < 0 for w in args.workers):
        parser.error(f"--workers must be >= 0, got {args.workers}")
    args.out_dir = args.out_dir or (DEFAULT_OUT / "quick" if args.quick else DEFAULT_OUT)
    names = {f.name for f in fields()}
    args.set_values = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            parser.error(f"--set {item!r}: expected KEY=VALUE with KEY a config field")
        try:
            args.set_values[key] = parse_field_value(key, text)
        except Exception as err:  # the CLI's usage error names the field and what it expects
            parser.error(f"--set {item!r}: {err}")
    return args


def config_for(args: argparse.Namespace, workers: int) -> TrainConfig:
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "num_workers": workers,
        "progress": False,
    }
    if args.quick:
        overrides.update(synthetic_n=96, synthetic_size=80, image_size=64, resize=72, epochs=2, batch_size=8)
    if args.data_root:
        overrides["data_root"] = args.data_root
    if args.device:
        overrides["device"] = args.device
    overrides.update(args.set_values)
    return TrainConfig.from_preset(args.preset, **overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()

    def say(message: str) -> None:
        print(f"[bench_trainer {time.perf_counter() - start:7.1f} s] {message}", flush=True)

    rows = [trainer_vs_step(config_for(args, workers), log=say) for workers in args.workers]
    table = to_markdown(rows)
    command = " ".join(
        ["python", "benchmarks/bench_trainer.py", *(argv if argv is not None else sys.argv[1:])]
    )
    report = (
        f"# The trainer against its own training step\n\n`{command}` ({args.preset} preset), "
        f"{(time.perf_counter() - start) / 60:.1f} min.\n\n{table}\n"
    )
    result = {"command": command, "machine": machine_info(rows[0]["device"]), "rows": rows}
    json_path = atomic_write_json(args.out_dir / "bench_trainer.json", result)
    md_path = atomic_write_text(args.out_dir / "bench_trainer.md", report)
    print("\n" + report)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
