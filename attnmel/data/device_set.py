"""The training set held on the device as uint8, augmented there a whole batch at a time (issue 12, item 1).

On a GPU the per-image loader (decode or cache read, v2 transforms, collate, host-to-device copy) cannot feed
a step of ~2000 img/s. Here the preprocessed images (the 0.8 centre crop resized to ``resize``: what the
:class:`~attnmel.data.cache.PreprocessCache` stores) are read once into one ``(N, 3, R, R)`` uint8 tensor on the
device (2000 ISIC images at 256 px: 0.4 GB), masks beside them, and each batch is augmented on the device:

1. a random ``size`` crop (offsets uniform in ``[0, R - size]``, as ``v2.RandomCrop``),
2. a rotation by ``k * 90`` degrees, ``k`` uniform in {0, 1, 2, 3} (as :class:`RandomRotate90`),
3. horizontal, then vertical flips with p = 0.5 each (as ``v2.RandomHorizontalFlip`` / ``RandomVerticalFlip``),
4. float in [0, 1] and the dataset's normalisation; masks binarised and carried through steps 1-3 with the image.

Steps 1-3 are one pixel permutation per image, so they are computed as one index map and applied with a single
``gather``: exact (no resampling), the same pixels the v2 pipeline gives for the same draws, and the same
distribution of draws (tested in ``tests/test_device_set.py``). Only the paper's augmentation runs here: the
from-scratch recipe's RandomResizedCrop and colour jitter need the loader path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .dataset import LesionDataset, read_sample, roi_target
from .transforms import ShadesOfGray, shades_of_gray, split_preprocess

__all__ = ["DeviceTrainSet", "draw_augmentation", "augment_indices", "device_augmentation_problem"]


def draw_augmentation(
    n: int, resize: int, size: int, generator: torch.Generator, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """The random draws of ``n`` training views: crop offsets ``top``/``left`` in ``[0, resize - size]``,
    ``k`` quarter turns, and the ``hflip`` / ``vflip`` bits; each (n,) on ``device``, from ``generator``."""
    if not 0 < size <= resize:
        raise ValueError(f"need 0 < size <= resize, got size={size}, resize={resize}")
    span = resize - size + 1

    def draw(high: int) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=generator, device=device)

    return {"top": draw(span), "left": draw(span), "k": draw(4), "hflip": draw(2), "vflip": draw(2)}


def augment_indices(draws: dict[str, torch.Tensor], resize: int, size: int) -> torch.Tensor:
    """(n, size * size) flat indices into a ``resize x resize`` image: output pixel ``(u, v)`` of view ``i`` is
    source pixel ``index[i, u * size + v]`` after crop -> rot90(k) -> hflip -> vflip (the v2 pipeline's order).

    Worked backwards from the output: undo the vertical flip (row ``u -> m - u``), the horizontal flip
    (column ``v -> m - v``), then the rotation (``torch.rot90`` by one turn maps output ``(u, v)`` to input
    ``(v, m - u)``), and add the crop's offset; ``m = size - 1``.
    """
    m = size - 1
    device = draws["k"].device
    grid = torch.arange(size, device=device)
    u = grid.view(1, size, 1).expand(len(draws["k"]), size, size)  # (n, S, S) output rows
    v = grid.view(1, 1, size).expand(len(draws["k"]), size, size)  # (n, S, S) output columns
    u = torch.where(draws["vflip"].view(-1, 1, 1) == 1, m - u, u)
    v = torch.where(draws["hflip"].view(-1, 1, 1) == 1, m - v, v)
    k = draws["k"].view(-1, 1, 1)
    rows = torch.where(k == 0, u, torch.where(k == 1, v, torch.where(k == 2, m - u, m - v)))
    cols = torch.where(k == 0, v, torch.where(k == 1, m - u, torch.where(k == 2, m - v, u)))
    rows = rows + draws["top"].view(-1, 1, 1)
    cols = cols + draws["left"].view(-1, 1, 1)
    return (rows * resize + cols).reshape(len(draws["k"]), size * size)


def _gather(stack: torch.Tensor, rows: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """``stack[rows]`` (B, C, R, R) permuted by ``index`` (B, S*S) into (B, C, S, S)."""
    picked = stack.index_select(0, rows)
    flat = picked.reshape(picked.shape[0], picked.shape[1], -1)
    out = flat.gather(2, index.unsqueeze(1).expand(-1, flat.shape[1], -1))
    return out.reshape(picked.shape[0], picked.shape[1], size, size)


class DeviceTrainSet:
    """A :class:`LesionDataset`'s preprocessed images, masks and labels on ``device``; :meth:`batch` returns
    a training batch (the trainer's collated layout) for a tensor of dataset indices.

    Duplicate entries of an oversampled list are stored once. ``dataset`` must use the paper's training
    augmentation (``train_transform`` with ``crop_scale=1`` and no colour jitter): check with
    :func:`device_augmentation_problem` first.
    """

    def __init__(
        self,
        dataset: LesionDataset,
        device: torch.device | str,
        *,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        channels_last: bool = False,
    ) -> None:
        preprocess, rest = split_preprocess(dataset.transform)
        if preprocess is None:
            raise ValueError(
                "a DeviceTrainSet needs a transform that starts with Preprocess (train_transform)"
            )
        self.device = torch.device(device)
        self.size, self.resize = size, preprocess.resize
        self.roi = dataset.roi
        self.channels_last = channels_last
        slots: dict[str, int] = {}
        images, masks, dermo, has_mask, labels = [], [], [], [], []
        rows = []
        for sample in dataset.samples:
            if sample.image_id not in slots:
                slots[sample.image_id] = len(slots)
                parts = self._preprocessed(dataset, preprocess, sample)
                images.append(parts["image"])
                has_mask.append(parts.get("mask") is not None)
                masks.append(
                    parts["mask"]
                    if has_mask[-1]
                    else torch.zeros((1, self.resize, self.resize), dtype=torch.uint8)
                )
                if self.roi == "dermo":
                    dermo.append(parts["dermo"])
                labels.append(sample.label)
            rows.append(slots[sample.image_id])
        self.rows = torch.tensor(rows, dtype=torch.long, device=self.device)  # dataset index -> stored image
        self.images = torch.stack(images).to(self.device)  # (U, 3, R, R) uint8
        constancy = _constancy_step(rest)
        if constancy is not None:  # deterministic per image: done once here, as the loader does per item
            self.images = shades_of_gray(self.images, constancy.p)
        self.masks = (torch.stack(masks) > 0).to(torch.uint8).to(self.device)  # (U, 1, R, R) {0, 1}
        self.dermo = (torch.stack(dermo) > 0).to(torch.uint8).to(self.device) if dermo else None
        self.has_mask = torch.tensor(has_mask, device=self.device)  # (U,)
        self.labels = torch.tensor(labels, dtype=torch.int64, device=self.device)  # (U,)
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    @staticmethod
    def _preprocessed(dataset: LesionDataset, preprocess: Any, sample: Any) -> dict[str, torch.Tensor]:
        """The sample's preprocessed uint8 tensors: from the dataset's cache, or decoded and preprocessed."""
        dermo = dataset.roi == "dermo"
        if dataset.cache is not None:
            parts = dataset.cache.load(sample, dermo=dermo)
        else:
            parts = preprocess(read_sample(sample, dermo=dermo))
        return {key: value.as_subclass(torch.Tensor) for key, value in parts.items() if value is not None}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        held = [self.images, self.masks] + ([self.dermo] if self.dermo is not None else [])
        return sum(t.numel() * t.element_size() for t in held)

    def batch(self, indices: torch.Tensor, generator: torch.Generator) -> dict[str, Any]:
        """Augmented views of dataset entries ``indices`` (B,): ``image`` (B, 3, S, S) normalised float,
        ``label`` (B,), ``mask`` / ``roi`` (B, 1, S, S) float {0, 1}, ``has_mask`` (B,); all on the device."""
        stored = self.rows[indices.to(self.device)]
        draws = draw_augmentation(len(stored), self.resize, self.size, generator, self.device)
        index = augment_indices(draws, self.resize, self.size)
        image = _gather(self.images, stored, index, self.size).float().div_(255.0)
        image = (image - self.mean) / self.std
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        mask = _gather(self.masks, stored, index, self.size).float()
        has_mask = self.has_mask[stored]
        dermo = _gather(self.dermo, stored, index, self.size).float() if self.dermo is not None else None
        roi = roi_target(self.roi, mask, has_mask, dermo)
        return {"image": image, "label": self.labels[stored], "mask": mask, "has_mask": has_mask, "roi": roi}


def _constancy_step(rest: Any) -> ShadesOfGray | None:
    """The ShadesOfGray step that follows Preprocess in a training transform, if it has one."""
    steps = getattr(rest, "transforms", [])
    return steps[0] if steps and isinstance(steps[0], ShadesOfGray) else None


def device_augmentation_problem(crop_scale: float, color_jitter: float) -> str | None:
    """Why the device path cannot run this augmentation (None when it can): it implements the paper's only."""
    if crop_scale != 1.0 or color_jitter > 0:
        return (
            f"data_on_device runs the paper's augmentation only (random crop, quarter turns, flips); "
            f"crop_scale={crop_scale} / color_jitter={color_jitter} need the loader path (data_on_device=False)"
        )
    return None
