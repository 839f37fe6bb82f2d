"""Does bf16 training keep the accuracy of fp32? Train a preset under each precision for several seeds.

The trainer's CPU default (``precision="auto"``) is bf16 autocast only where the CPU has native bf16
(AVX-512 BF16 / AMX) and fp32 elsewhere. This script measures, on the current machine, the best validation
AUC, test AUC and wall time of each precision over several seeds, so the choice rests on numbers:

    python benchmarks/bench_precision.py                       # smoke-mini, fp32 vs bf16, seeds 0 1 2
    python benchmarks/bench_precision.py --preset smoke --seeds 0 1 2 3

It writes a Markdown table and JSON to ``--out-dir`` (default ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from attnmel.config import TrainConfig  # noqa: E402
from attnmel.device import cpu_supports_bf16  # noqa: E402
from attnmel.experiments import test_split  # noqa: E402
from attnmel.io import atomic_write_json, atomic_write_text  # noqa: E402
from attnmel.trainer import fit  # noqa: E402


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke-mini")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="attnmel-precision-") as tmp:
        for precision in args.precisions:
            for seed in args.seeds:
                config = TrainConfig.from_preset(
                    args.preset,
                    precision=precision,
                    seed=seed,
                    device=args.device,
                    runs_root=tmp,
                    run_name=f"{precision}-seed{seed}",
                    progress=False,
                    n_boot=0,
                )
                start = time.perf_counter()
                result = fit(config, log=lambda message: None)
                test = result.test_metrics.get(test_split(config), {})
                rows.append(
                    {
                        "precision": precision,
                        "seed": seed,
                        "best_val_auc": result.best_val_auc,
                        "test_auc": test.get("auc"),
                        "seconds": time.perf_counter() - start,
                    }
                )
                print(
                    f"{precision} seed {seed}: val AUC {result.best_val_auc:.4f}, {rows[-1]['seconds']:.0f} s"
                )

    lines = [
        f"# bf16 vs fp32 training, preset `{args.preset}`, device {args.device} "
        f"(native CPU bf16: {'yes' if cpu_supports_bf16() else 'no'})",
        "",
        "| precision | seeds | best val AUC (mean ± sd) | test AUC (mean ± sd) | seconds per run (mean) |",
        "|---|---|---|---|---|",
    ]
    summary = {}
    for precision in args.precisions:
        group = [r for r in rows if r["precision"] == precision]
        val = [r["best_val_auc"] for r in group]
        test = [r["test_auc"] for r in group if r["test_auc"] is not None]
        secs = statistics.mean(r["seconds"] for r in group)
        summary[precision] = {"val_auc": val, "test_auc": test, "seconds_mean": secs}
        lines.append(
            f"| {precision} | {len(group)} | {statistics.mean(val):.4f} ± {_sd(val):.4f} | "
            f"{statistics.mean(test):.4f} ± {_sd(test):.4f} | {secs:.0f} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    atomic_write_text(args.out_dir / "precision.md", report)
    atomic_write_json(
        args.out_dir / "precision.json", {"preset": args.preset, "rows": rows, "summary": summary}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
