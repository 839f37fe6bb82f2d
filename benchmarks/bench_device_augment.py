"""Milliseconds per training batch of the device path's augmentation (attnmel.data.device_set): the paper's
crop, quarter turns and flips against the from-scratch recipe's resized crop and colour jitter on top.

What the recipe adds to every step of a `data_on_device` run; compare it with the step itself (bench_train.py).

    python benchmarks/bench_device_augment.py data/isic2017 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

from attnmel.data import ISIC2017_MEAN, ISIC2017_STD, isic2017, train_transform
from attnmel.data.dataset import LesionDataset
from attnmel.data.device_set import DeviceTrainSet

VARIANTS = {"paper": {}, "recipe": {"crop_scale": 0.35, "color_jitter": 0.2}}


def time_batches(device_set: DeviceTrainSet, batch: int, repeats: int, device: torch.device) -> float:
    """Mean ms per ``batch()`` call over ``repeats`` calls, after 3 untimed ones."""
    generator = torch.Generator(device=device).manual_seed(0)
    indices = torch.arange(batch) % len(device_set)
    for _ in range(3):
        device_set.batch(indices, generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        device_set.batch(indices, generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="an ISIC 2017 folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=64, help="training images held (default 64)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    samples = isic2017(args.data, "Training")[: args.images]
    resize = round(args.size * 256 / 224)
    for name, recipe in VARIANTS.items():
        transform = train_transform(args.size, resize, **recipe)
        device_set = DeviceTrainSet(
            LesionDataset(samples, transform, roi="lesion"),
            device,
            size=args.size,
            mean=ISIC2017_MEAN,
            std=ISIC2017_STD,
            channels_last=True,
        )
        ms = time_batches(device_set, args.batch, args.repeats, device)
        print(f"device batch augmentation, {name}: {ms:.2f} ms per batch of {args.batch} at {args.size} px")


if __name__ == "__main__":
    main()
