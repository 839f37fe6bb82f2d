"""Seconds for the bootstrap intervals every evaluation reports (attnmel.metrics), against a 1 s target.

Each evaluated split gets AUC and AP intervals from 1000 stratified resamples (``bootstrap_ci``), and
``attnmel compare`` adds a paired interval (``paired_bootstrap``); on a Test_v2-sized split (600 images) both
intervals together should take under a second, or a sweep of many runs spends its time resampling.

    python benchmarks/bench_metrics.py             # n = 600, 1000 resamples, best of 3
    python benchmarks/bench_metrics.py --n 2000 --n-boot 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from attnmel.metrics import bootstrap_ci, paired_bootstrap  # noqa: E402

TARGET_S = 1.0


def toy_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels with ~25% melanoma, like ISIC 2017's Test_v2 (20%), and two correlated predictors."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    a = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    b = np.clip(a + rng.normal(0, 0.05, n), 0, 1)
    return y, a, b


def best_of(repeats: int, fn) -> float:
    """The fastest of ``repeats`` timed calls of ``fn`` (the least disturbed by other work)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=600, help="images in the split (default 600, Test_v2's size)"
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed repeats; the fastest counts (default 3)"
    )
    args = parser.parse_args(argv)
    if args.n < 20 or args.n_boot < 1 or args.repeats < 1:
        parser.error(
            f"--n must be >= 20 (both classes), --n-boot and --repeats >= 1; got {args.n}, {args.n_boot}, {args.repeats}"
        )
    y, a, b = toy_split(args.n)
    rows = {
        "bootstrap_ci AUC + AP": best_of(
            args.repeats,
            lambda: (
                bootstrap_ci(y, a, "auc", n_boot=args.n_boot),
                bootstrap_ci(y, a, "ap", n_boot=args.n_boot),
            ),
        ),
        "paired_bootstrap AUC": best_of(
            args.repeats, lambda: paired_bootstrap(y, a, b, "auc", n_boot=args.n_boot)
        ),
    }
    print(f"n = {args.n}, {args.n_boot} resamples, best of {args.repeats}; target < {TARGET_S:.1f} s each")
    missed = []
    for name, seconds in rows.items():
        verdict = "ok" if seconds < TARGET_S else "SLOWER THAN TARGET"
        print(f"  {name:<24} {seconds:6.3f} s  {verdict}")
        missed += [name] if seconds >= TARGET_S else []
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
