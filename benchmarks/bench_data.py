"""Images per second of one training epoch's data pipeline: decode every time vs cold cache vs warm cache.

Runs the training transform (0.8 centre crop, resize, random crop, rotation, flips, normalise; lesion mask as
ROI) over ``../shared/data/isic2017-fullres`` (60 real ISIC 2017 JPEGs at full resolution, up to 3072 x 2304)
through a DataLoader with 2 workers, three ways:

- ``decode``: no cache; every image and mask is decoded at full size and cropped + resized every epoch;
- ``cold``: a fresh :class:`PreprocessCache`; the epoch decodes and also writes the entries;
- ``warm``: the same cache again; the epoch reads the 256 x 256 entries only.

Files are read once beforehand so every mode sees them in the OS page cache (the comparison is decoding, not
disk). Prints a Markdown table and writes JSON (``--out``, default ``benchmarks/results/data.json``).

    python benchmarks/bench_data.py [--data DIR] [--size 224] [--resize 256] [--workers 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import PIL
import torch
import torchvision
from torch.utils.data import DataLoader

from attnmel.data import LesionDataset, PreprocessCache, image_size, isic2017, train_transform
from attnmel.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "isic2017-fullres"


def run_epoch(dataset: LesionDataset, workers: int, batch_size: int, seed: int) -> float:
    """Seconds for one shuffled pass over ``dataset`` (worker start-up included, as in training)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )
    start = time.perf_counter()
    n = 0
    for batch in loader:
        n += batch["image"].shape[0]
    elapsed = time.perf_counter() - start
    assert n == len(dataset)
    return elapsed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ISIC 2017 layout folder")
    parser.add_argument("--split", default="Training")
    parser.add_argument("--size", type=int, default=224, help="training crop")
    parser.add_argument("--resize", type=int, default=256, help="side after the 0.8 centre crop")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="default: a temporary folder, removed after"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data.json")
    args = parser.parse_args(argv)

    if not args.data.is_dir():
        parser.error(f"data folder {args.data} not found")
    samples = isic2017(args.data, args.split)
    sizes = [image_size(s.image_path) for s in samples]
    megapixels = [w * h / 1e6 for w, h in sizes]
    for s in samples:  # warm the OS page cache for every mode alike
        s.image_path.read_bytes()
        if s.lesion_mask_path is not None:
            s.lesion_mask_path.read_bytes()

    transform = train_transform(args.size, args.resize)
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="attnmel-bench-cache-"))
    if cache_dir.exists() and any(cache_dir.iterdir()):
        raise SystemExit(f"--cache-dir {cache_dir} must be empty (the 'cold' run needs a fresh cache)")
    try:
        cache = PreprocessCache(cache_dir, resize=args.resize)
        runs = [
            ("decode", LesionDataset(samples, transform, roi="lesion")),
            ("cold", LesionDataset(samples, transform, roi="lesion", cache=cache)),
            ("warm", LesionDataset(samples, transform, roi="lesion", cache=cache)),
        ]
        results = []
        for seed, (mode, dataset) in enumerate(runs):
            seconds = run_epoch(dataset, args.workers, args.batch_size, seed)
            results.append(
                {"mode": mode, "seconds": round(seconds, 3), "images_per_s": round(len(samples) / seconds, 2)}
            )
        cache_bytes = sum(p.stat().st_size for p in cache_dir.rglob("*.npz"))
        n_entries = len(list(cache_dir.rglob("*.npz")))
    finally:
        if args.cache_dir is None:
            shutil.rmtree(cache_dir, ignore_errors=True)

    report = {
        "benchmark": "data pipeline, one training epoch",
        "data": str(args.data),
        "split": args.split,
        "n_images": len(samples),
        "image_megapixels": {
            "min": round(min(megapixels), 2),
            "mean": round(sum(megapixels) / len(megapixels), 2),
            "max": round(max(megapixels), 2),
        },
        "size": args.size,
        "resize": args.resize,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "cache_entries": n_entries,
        "cache_megabytes": round(cache_bytes / 1e6, 2),
        "results": results,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "pillow": PIL.__version__,
        },
    }
    atomic_write_json(args.out, report)
    base = results[0]["images_per_s"]
    print(
        f"Data pipeline, one epoch over {len(samples)} images ({report['image_megapixels']['mean']} MP mean), "
        f"crop {args.size} from {args.resize}, {args.workers} workers, batch {args.batch_size}\n"
    )
    print("| mode | seconds | images/s | vs decode |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['mode']} | {r['seconds']:.2f} | {r['images_per_s']:.1f} | {r['images_per_s'] / base:.1f}x |"
        )
    print(f"\ncache: {n_entries} entries, {report['cache_megabytes']} MB; JSON written to {args.out}")
    return report


if __name__ == "__main__":
    main()
