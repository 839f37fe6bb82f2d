"""Does bf16 training keep the accuracy of fp32? Train a preset under each precision for several seeds.

The trainer's CPU default (``precision="auto"``) is bf16 autocast only where the CPU has native bf16
(AVX-512 BF16 / AMX) and fp32 elsewhere. This script measures, on the current machine, the best validation
AUC, test AUC and wall time of each precision over several seeds, so the choice rests on numbers:

    python benchmarks/bench_precision.py                       # smoke-mini, fp32 vs bf16, seeds 0 1 2
    python benchmarks/bench_precision.py --preset smoke --seeds 0 1 2 3

It writes ``precision-<preset>.md`` and ``.json`` to ``--out-dir`` (default ``benchmarks/results/``), updated
after every run, with the paired per-seed difference bf16 − fp32 beside fp32's own seed-to-seed spread.
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


def report(preset: str, device: str, precisions: list[str], rows: list[dict]) -> tuple[str, dict]:
    """Markdown (summary per precision, paired bf16 - fp32 differences per seed, every run) and JSON summary."""
    lines = [
        f"# bf16 vs fp32 training, preset `{preset}`, device {device} "
        f"(native CPU bf16: {'yes' if cpu_supports_bf16() else 'no'})",
        "",
        "| precision | seeds | best val AUC (mean ± sd) | test AUC (mean ± sd) | seconds per run (mean) |",
        "|---|---|---|---|---|",
    ]
    summary: dict[str, dict] = {}
    for precision in precisions:
        group = [r for r in rows if r["precision"] == precision]
        if not group:
            continue
        val = [r["best_val_auc"] for r in group]
        test = [r["test_auc"] for r in group if r["test_auc"] is not None]
        secs = statistics.mean(r["seconds"] for r in group)
        summary[precision] = {"val_auc": val, "test_auc": test, "seconds_mean": secs}
        test_text = f"{statistics.mean(test):.4f} ± {_sd(test):.4f}" if test else "–"
        lines.append(
            f"| {precision} | {len(group)} | {statistics.mean(val):.4f} ± {_sd(val):.4f} | {test_text} | {secs:.0f} |"
        )
    by_key = {(r["precision"], r["seed"]): r for r in rows}
    base = precisions[0]
    for other in precisions[1:]:
        pairs = [
            (by_key[(base, s)], by_key[(other, s)]) for (p, s) in by_key if p == base and (other, s) in by_key
        ]
        if not pairs:
            continue
        diffs = [b["best_val_auc"] - a["best_val_auc"] for a, b in pairs]
        summary[f"{other}-{base}"] = {"val_auc_diff": diffs}
        lines += [
            "",
            f"Paired by seed, best val AUC {other} − {base}: mean {statistics.mean(diffs):+.4f}, "
            f"sd {_sd(diffs):.4f}, range [{min(diffs):+.4f}, {max(diffs):+.4f}] over {len(diffs)} seed(s); "
            f"the {base} runs' own seed-to-seed sd is {_sd([a['best_val_auc'] for a, _ in pairs]):.4f}.",
        ]
    lines += ["", "| precision | seed | best val AUC | test AUC | seconds |", "|---|---|---|---|---|"]
    for r in rows:
        test = f"{r['test_auc']:.4f}" if r["test_auc"] is not None else "–"
        lines.append(
            f"| {r['precision']} | {r['seed']} | {r['best_val_auc']:.4f} | {test} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n", summary


def write_report(args: argparse.Namespace, rows: list[dict]) -> str:
    """Write ``precision-<preset>.md`` / ``.json`` to ``args.out_dir``; returns the Markdown."""
    text, summary = report(args.preset, args.device, args.precisions, rows)
    atomic_write_text(args.out_dir / f"precision-{args.preset}.md", text)
    atomic_write_json(
        args.out_dir / f"precision-{args.preset}.json",
        {"preset": args.preset, "rows": rows, "summary": summary},
    )
    return text


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
        for seed in args.seeds:  # seed by seed, so an interrupted sweep still holds complete pairs
            for precision in args.precisions:
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

                write_report(args, rows)  # after every run, so an interrupted sweep keeps what it measured
    print(write_report(args, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
