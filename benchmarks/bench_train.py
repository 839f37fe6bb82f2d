"""Training and inference speed of AttnMel-CNN on this machine, against its own matmul ceiling (issue 7).

Measures the fp32 / bf16 matmul ceilings, then training-step and inference images/s for every image size,
batch size and mode, each as a fraction of the matching ceiling (FLOPs counted with
``torch.utils.flop_counter``), plus JPEG decoding on the GPU when there is one. Writes ``bench_train.json`` and
``bench_train.md`` to ``--out-dir``. The measurement code is :mod:`attnmel.bench`.

    python benchmarks/bench_train.py                  # full run: 224 and 128 px, batch 8 and 32, every mode
    python benchmarks/bench_train.py --quick          # check the script works: 64 px, batch 2, 2 steps
    python benchmarks/bench_train.py --device cuda --modes fp32 channels_last bf16 bf16+channels_last compile fp16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from attnmel.bench import (  # noqa: E402
    DEFAULT_BATCHES,
    DEFAULT_COMPILE_TIMEOUT_S,
    DEFAULT_MATMUL_SIZES,
    DEFAULT_MODES,
    DEFAULT_SIZES,
    MODES,
    render_report,
    run_suite,
)
from attnmel.io import atomic_write_json, atomic_write_text  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=None, help=f"image sides (default {DEFAULT_SIZES})"
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", default=None, help=f"batch sizes (default {DEFAULT_BATCHES})"
    )
    parser.add_argument(
        "--modes", nargs="+", default=None, choices=sorted(MODES), help=f"default: {' '.join(DEFAULT_MODES)}"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per case (default: 3 to batch 8, 2 to 16, else 1)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing (default 1)")
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=None,
        help="keep timing each case until its steps fill this many seconds (default 2 on CUDA, 0 on the CPU)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    parser.add_argument("--model", default="attnmel_cnn", help="builder name (default attnmel_cnn)")
    parser.add_argument(
        "--compile-shapes",
        choices=("smallest", "all", "none"),
        default=None,
        help="where the compiled modes run: the smallest size and batch only (default on CPU, where each shape is a "
        "compile of minutes), every shape (default on CUDA), or nowhere",
    )
    parser.add_argument(
        "--compile-timeout",
        type=float,
        default=DEFAULT_COMPILE_TIMEOUT_S,
        help=f"seconds allowed to each compiled case, compile included (default {DEFAULT_COMPILE_TIMEOUT_S:.0f})",
    )
    parser.add_argument("--no-inference", action="store_true", help="training steps only")
    parser.add_argument("--no-jpeg", action="store_true", help="skip the JPEG decoding measurement")
    parser.add_argument(
        "--matmul-n",
        type=int,
        nargs="+",
        default=None,
        help="matrix sides for the ceiling, the best is kept (default 1024 2048 4096)",
    )
    parser.add_argument("--matmul-seconds", type=float, default=None, help="time per ceiling (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--quick", action="store_true", help="64 px, batch 2, 2 steps: checks the script works"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=None, help=f"default {DEFAULT_OUT} (quick: .../quick)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or [64]
        args.batches = args.batches or [2]
        args.steps = args.steps or 2
        args.matmul_n = args.matmul_n or [512]
        args.matmul_seconds = args.matmul_seconds if args.matmul_seconds is not None else 0.5
    args.sizes = args.sizes or list(DEFAULT_SIZES)
    args.batches = args.batches or list(DEFAULT_BATCHES)
    args.modes = args.modes or list(DEFAULT_MODES)
    args.matmul_n = args.matmul_n or list(DEFAULT_MATMUL_SIZES)
    args.matmul_seconds = args.matmul_seconds if args.matmul_seconds is not None else 2.0
    args.out_dir = args.out_dir or (DEFAULT_OUT / "quick" if args.quick else DEFAULT_OUT)
    for name in ("sizes", "batches"):
        bad = [v for v in getattr(args, name) if v < (32 if name == "sizes" else 1)]
        if bad:
            parser.error(f"--{name}: {bad} too small (sizes >= 32 px, batches >= 1)")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.min_seconds is not None and not args.min_seconds >= 0:
        parser.error(f"--min-seconds must be >= 0, got {args.min_seconds}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    return args


def compile_shapes(
    choice: str | None, device: str, sizes: list[int], batches: list[int]
) -> list[tuple[int, int]] | None:
    """The (size, batch) pairs where the compiled modes run; None means every pair."""
    choice = choice or ("all" if device.startswith("cuda") else "smallest")
    if choice == "all":
        return None
    if choice == "none":
        return []
    return [(min(sizes), min(batches))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[bench_train {time.perf_counter() - start:7.1f} s] {message}", flush=True)

    result = run_suite(
        args.sizes,
        args.batches,
        args.modes,
        model_name=args.model,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
        inference=not args.no_inference,
        matmul_n=args.matmul_n,
        matmul_seconds=args.matmul_seconds,
        compile_shapes=compile_shapes(args.compile_shapes, args.device, args.sizes, args.batches),
        compile_timeout=args.compile_timeout,
        min_seconds=args.min_seconds,
        jpeg=not args.no_jpeg,
        progress=progress,
    )
    result["config"]["quick"] = args.quick
    result["config"]["command"] = " ".join(["python", "benchmarks/bench_train.py", *(argv or sys.argv[1:])])
    report = render_report(result)
    json_path = atomic_write_json(args.out_dir / "bench_train.json", result)
    md_path = atomic_write_text(args.out_dir / "bench_train.md", report)
    print("\n" + report)
    print(f"wrote {json_path} and {md_path} in {result['elapsed_s'] / 60:.1f} min")
    failed = [r for r in result["rows"] if "failed" in (r.get("train_status"), r.get("infer_status"))]
    eager_failed = [r for r in failed if r["mode"] != "compile"]
    return 1 if eager_failed else 0  # a failing compile is a finding, a failing eager mode is a bug


if __name__ == "__main__":
    sys.exit(main())
