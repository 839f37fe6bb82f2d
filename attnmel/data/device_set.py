"""The training set held on the device as uint8, augmented there a whole batch at a time (issue 12, item 1).

On a GPU the per-image loader (decode or cache read, v2 transforms, collate, host-to-device copy) cannot feed
a step of ~2000 img/s. Here the preprocessed images (the 0.8 centre crop resized to ``resize``: what the
:class:`~attnmel.data.cache.PreprocessCache` stores) are read once into one ``(N, 3, R, R)`` uint8 tensor on the
device (2000 ISIC images at 256 px: 0.4 GB), masks beside them, and each batch is augmented on the device with
the steps of the dataset's own training transform (read from it, so the two paths cannot disagree):

1. the crop: a random ``size`` crop (offsets uniform in ``[0, R - size]``, as ``v2.RandomCrop``), or, for the
   from-scratch recipe (``crop_scale < 1``), a random resized crop drawn as ``v2.RandomResizedCrop`` draws it
   (area share uniform in ``[crop_scale, 1]``, log-aspect uniform, 10 tries, then the whole image);
2. a rotation by ``k * 90`` degrees, ``k`` uniform in {0, 1, 2, 3} (as :class:`RandomRotate90`),
3. horizontal, then vertical flips with p = 0.5 each (as ``v2.RandomHorizontalFlip`` / ``RandomVerticalFlip``),
4. float in [0, 1]; the recipe's colour jitter (brightness, contrast, saturation, hue in a random order per
   image, as ``v2.ColorJitter``); the dataset's normalisation. Masks are binarised and follow steps 1-3.

With the fixed-size crop, steps 1-3 are one pixel permutation per image, computed as one index map and applied
with a single ``gather``: exact (no resampling), the same pixels the v2 pipeline gives for the same draws, and
the same distribution of draws (tested in ``tests/test_device_set.py``). A resized crop samples the image
bilinearly at the crop's pixel centres (``grid_sample``) and indexes the masks as v2's nearest-neighbour resize
does (exactly). The images differ from the loader's by small amounts, none of them a different augmentation:
no antialiasing when a crop is shrunk (by at most 256/224 for ISIC: a mean difference of about 0.002 on [0, 1]);
at a crop's edge pixels the neighbouring image pixels are read where v2 clamps to the crop; and the jitter works
in float where the loader's uint8 pipeline rounds down after each operation (its views are about 0.006 darker).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from .dataset import LesionDataset, read_sample, roi_target
from .transforms import BinariseMasks, RandomRotate90, ShadesOfGray, shades_of_gray, split_preprocess

__all__ = [
    "DeviceTrainSet",
    "draw_augmentation",
    "augment_indices",
    "draw_resized_crops",
    "resized_crop_maps",
    "draw_colour_jitter",
    "colour_jitter_batch",
]


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


def draw_resized_crops(
    n: int,
    resize: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    device: torch.device | str,
    tries: int = 10,
) -> dict[str, torch.Tensor]:
    """``n`` random resized crops of a ``resize`` square, drawn as ``v2.RandomResizedCrop`` draws one: an area
    share uniform in ``scale`` and an aspect ratio log-uniform in ``ratio``, the first of ``tries`` that fits,
    placed uniformly; the whole image when none fits. Returns ``top``, ``left``, ``height``, ``width`` (n,)."""
    area = float(resize * resize)
    share = torch.rand(n, tries, generator=generator, device=device) * (scale[1] - scale[0]) + scale[0]
    low, high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(torch.rand(n, tries, generator=generator, device=device) * (high - low) + low)
    width = torch.round(torch.sqrt(area * share * aspect)).long()
    height = torch.round(torch.sqrt(area * share / aspect)).long()
    fits = (width > 0) & (width <= resize) & (height > 0) & (height <= resize)
    first = fits.long().argmax(dim=1, keepdim=True)  # the first try that fits (0 when none does)
    found = fits.any(dim=1)
    width = torch.where(found, width.gather(1, first).squeeze(1), resize)
    height = torch.where(found, height.gather(1, first).squeeze(1), resize)
    place = torch.rand(n, 2, generator=generator, device=device)
    top = (place[:, 0] * (resize - height + 1)).long().clamp_max(resize - height)
    left = (place[:, 1] * (resize - width + 1)).long().clamp_max(resize - width)
    return {"top": top, "left": left, "height": height, "width": width}


def resized_crop_maps(
    crops: dict[str, torch.Tensor], resize: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each pixel of the ``size x size`` resized crops comes from in the ``resize`` square.

    Returns ``grid`` (n, S, S, 2), the ``grid_sample`` coordinates (x, y in [-1, 1], align_corners=False) of the
    output pixel centres, for bilinear images; and ``nearest`` (n, S*S), flat source indices of a nearest-neighbour
    resize (``floor(u * (h / S))``, as torch's ``nearest``), for masks.
    """
    device = crops["top"].device
    steps = torch.arange(size, device=device, dtype=torch.float32)
    top, left = crops["top"].view(-1, 1).float(), crops["left"].view(-1, 1).float()
    height, width = crops["height"].view(-1, 1).float(), crops["width"].view(-1, 1).float()
    y = (top + (steps + 0.5) * height / size) * (2.0 / resize) - 1.0  # (n, S) row centres
    x = (left + (steps + 0.5) * width / size) * (2.0 / resize) - 1.0  # (n, S) column centres
    n = y.shape[0]
    grid = torch.stack(
        [x.view(n, 1, size).expand(n, size, size), y.view(n, size, 1).expand(n, size, size)], -1
    )
    rows = crops["top"].view(-1, 1) + torch.minimum(
        (steps.view(1, -1) * (height / size)).floor().long(), crops["height"].view(-1, 1) - 1
    )
    cols = crops["left"].view(-1, 1) + torch.minimum(
        (steps.view(1, -1) * (width / size)).floor().long(), crops["width"].view(-1, 1) - 1
    )
    nearest = (rows.view(n, size, 1) * resize + cols.view(n, 1, size)).reshape(n, size * size)
    return grid, nearest


def draw_colour_jitter(
    n: int, jitter: v2.ColorJitter, generator: torch.Generator, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """Per-image factors of ``jitter`` (uniform in its ranges; 1 or 0 where it has none) and a random order of
    its four operations (``order`` (n, 4), a permutation per image, as ``v2.ColorJitter``'s ``randperm(4)``)."""

    def uniform(bounds: Any, neutral: float) -> torch.Tensor:
        if bounds is None:
            return torch.full((n,), neutral, device=device)
        low, high = float(bounds[0]), float(bounds[1])
        return torch.rand(n, generator=generator, device=device) * (high - low) + low

    draws = {
        "brightness": uniform(jitter.brightness, 1.0),
        "contrast": uniform(jitter.contrast, 1.0),
        "saturation": uniform(jitter.saturation, 1.0),
        "hue": uniform(jitter.hue, 0.0),
    }
    draws["order"] = torch.rand(n, 4, generator=generator, device=device).argsort(dim=1)
    return draws


def _grey(image: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of (B, 3, H, W) RGB, with torchvision's weights."""
    r, g, b = image.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _shift_hue(image: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of (B, 3, H, W) RGB in [0, 1] by ``shift`` (B,) turns: RGB -> HSV -> RGB."""
    r, g, b = image.unbind(dim=1)
    high, _ = image.max(dim=1)
    low, _ = image.min(dim=1)
    grey = high == low
    chroma = high - low
    saturation = chroma / torch.where(grey, torch.ones_like(high), high)
    divisor = torch.where(grey, torch.ones_like(chroma), chroma)
    rc, gc, bc = (high - r) / divisor, (high - g) / divisor, (high - b) / divisor
    hue = torch.where(
        high == r, bc - gc, torch.where(high == g, 2.0 + rc - bc, 4.0 + gc - rc)
    )  # sector of the maximum channel, red first
    hue = torch.remainder(hue / 6.0 + shift.view(-1, 1, 1), 1.0)
    sector = hue * 6.0
    i = torch.floor(sector)
    f = sector - i
    i = i.long() % 6
    v = high
    p = (v * (1.0 - saturation)).clamp(0.0, 1.0)
    q = (v * (1.0 - saturation * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - saturation * (1.0 - f))).clamp(0.0, 1.0)
    table = torch.stack(
        [
            torch.stack([v, q, p, p, t, v]),  # red by sector
            torch.stack([t, v, v, q, p, p]),  # green
            torch.stack([p, p, t, v, v, q]),  # blue
        ]
    )  # (3, 6, B, H, W)
    pick = i.unsqueeze(0).unsqueeze(0).expand(3, 1, *i.shape)
    return table.gather(1, pick).squeeze(1).permute(1, 0, 2, 3)


def colour_jitter_batch(image: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
    """``v2.ColorJitter`` of float (B, 3, H, W) images in [0, 1] with per-image factors and order (``draws`` of
    :func:`draw_colour_jitter`): brightness scales, contrast blends with the view's mean luma, saturation with its
    luma, hue rotates; each result is clipped to [0, 1], as torchvision does."""
    view = (-1, 1, 1, 1)

    def blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        return (factor.view(view) * x + (1.0 - factor.view(view)) * other).clamp(0.0, 1.0)

    operations = (  # each takes the images and their luma, computed once per position for contrast and saturation
        lambda x, grey: blend(x, torch.zeros_like(x), draws["brightness"]),
        lambda x, grey: blend(x, grey.mean(dim=(1, 2, 3), keepdim=True), draws["contrast"]),
        lambda x, grey: blend(x, grey, draws["saturation"]),
        lambda x, grey: _shift_hue(x, draws["hue"]),
    )
    for position in range(4):  # each image applies its own operation at each position of its order
        chosen = draws["order"][:, position]
        grey = _grey(image)
        out = image
        for op_index, operation in enumerate(operations):
            out = torch.where((chosen == op_index).view(view), operation(image, grey), out)  # no host sync
        image = out
    return image


class DeviceTrainSet:
    """A :class:`LesionDataset`'s preprocessed images, masks and labels on ``device``; :meth:`batch` returns
    a training batch (the trainer's collated layout) for a tensor of dataset indices.

    Duplicate entries of an oversampled list are stored once. ``dataset`` must use a :func:`train_transform`
    (its crop, colour constancy and colour jitter are read from it); any other step is refused with its name.
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
        steps = _augmentation_steps(rest, size, mean, std)
        self.crop: v2.RandomResizedCrop | None = steps["crop"]  # None: the paper's fixed-size crop
        self.jitter: v2.ColorJitter | None = steps["jitter"]
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
        constancy = steps["constancy"]
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
        n, size = len(stored), self.size
        if self.crop is None:  # the paper's crop: steps 1-3 are one exact pixel permutation
            draws = draw_augmentation(n, self.resize, size, generator, self.device)
            index = augment_indices(draws, self.resize, size)
            image = _gather(self.images, stored, index, size).float().div_(255.0)
        else:  # a resized crop, then the same quarter turns and flips of the S x S view
            crops = draw_resized_crops(
                n, self.resize, tuple(self.crop.scale), tuple(self.crop.ratio), generator, self.device
            )
            grid, nearest = resized_crop_maps(crops, self.resize, size)
            turns = draw_augmentation(n, size, size, generator, self.device)  # offsets are 0: no crop left
            order = augment_indices(turns, size, size)
            index = nearest.gather(1, order)
            grid = grid.reshape(n, size * size, 2).gather(1, order.unsqueeze(-1).expand(-1, -1, 2))
            picked = self.images.index_select(0, stored).float().div_(255.0)
            image = torch.nn.functional.grid_sample(
                picked,
                grid.view(n, size, size, 2),
                mode="bilinear",
                padding_mode="border",
                align_corners=False,
            )
        if self.jitter is not None:
            image = colour_jitter_batch(image, draw_colour_jitter(n, self.jitter, generator, self.device))
        image = (image - self.mean) / self.std
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        mask = _gather(self.masks, stored, index, size).float()
        has_mask = self.has_mask[stored]
        dermo = _gather(self.dermo, stored, index, size).float() if self.dermo is not None else None
        roi = roi_target(self.roi, mask, has_mask, dermo)
        return {"image": image, "label": self.labels[stored], "mask": mask, "has_mask": has_mask, "roi": roi}


# What the device path implements: the steps of :func:`~attnmel.data.transforms.train_transform` after its
# Preprocess, in this order (constancy and jitter optional).
_KNOWN_STEPS = (
    ShadesOfGray,
    v2.RandomCrop,
    v2.RandomResizedCrop,
    RandomRotate90,
    v2.RandomHorizontalFlip,
    v2.RandomVerticalFlip,
    v2.ColorJitter,
    v2.ToDtype,
    v2.Normalize,
    BinariseMasks,
)
_AFTER_CROP = (RandomRotate90, v2.RandomHorizontalFlip, v2.RandomVerticalFlip)
_FINISH = (v2.ToDtype, v2.Normalize, BinariseMasks)


def _augmentation_steps(rest: Any, size: int, mean: Sequence[float], std: Sequence[float]) -> dict[str, Any]:
    """The crop, colour constancy and colour jitter of a training transform after its Preprocess step.

    The transform must be :func:`train_transform`'s: [constancy], a ``size`` crop (fixed, or resized and
    bilinear with aspect ratios around 1), quarter turns, flips with p = 0.5, [colour jitter], float, the
    normalisation of ``mean`` / ``std``, masks binarised. Anything else is refused with its name, so the device
    path never runs other augmentation than the loader would."""
    steps = list(getattr(rest, "transforms", [rest]))
    for step in steps:
        if not isinstance(step, _KNOWN_STEPS):
            raise ValueError(f"DeviceTrainSet cannot run the training transform's step {type(step).__name__}")
    names = ", ".join(type(step).__name__ for step in steps)

    def refuse(why: str) -> None:
        raise ValueError(f"DeviceTrainSet runs train_transform's steps: {why} (the transform has: {names})")

    found: dict[str, Any] = {"crop": None, "constancy": None, "jitter": None}
    if steps and isinstance(steps[0], ShadesOfGray):
        found["constancy"] = steps.pop(0)
    crop = steps.pop(0) if steps else None
    if not isinstance(crop, (v2.RandomCrop, v2.RandomResizedCrop)):
        refuse("a crop must follow Preprocess (and colour constancy)")
    if tuple(crop.size) != (size, size):
        raise ValueError(f"DeviceTrainSet: the transform crops {tuple(crop.size)}, but size = {size}")
    if isinstance(crop, v2.RandomResizedCrop):
        mode = getattr(crop.interpolation, "value", crop.interpolation)  # an InterpolationMode, or its name
        if str(mode).lower() != "bilinear" or not crop.ratio[0] <= 1 <= crop.ratio[1]:
            refuse(f"a resized crop must be bilinear with 1 among its aspect ratios, not {crop!r}")
        found["crop"] = crop
    elif crop.padding is not None or crop.pad_if_needed:
        refuse(f"a fixed crop without padding, not {crop!r}")
    turns = [steps.pop(0) if steps else None for _ in _AFTER_CROP]
    if not all(isinstance(step, kind) for step, kind in zip(turns, _AFTER_CROP, strict=True)):
        refuse("quarter turns, then horizontal and vertical flips must follow the crop")
    if any(step.p != 0.5 for step in turns[1:]):
        raise ValueError(f"DeviceTrainSet flips with p = 0.5 only, the transform has {turns[1:]!r}")
    if steps and isinstance(steps[0], v2.ColorJitter):
        found["jitter"] = steps.pop(0)
    if len(steps) != len(_FINISH) or not all(isinstance(s, k) for s, k in zip(steps, _FINISH, strict=True)):
        refuse("float, normalise and binarise masks must come last")
    normalize = steps[1]
    if not (_close(normalize.mean, mean) and _close(normalize.std, std)):
        refuse(
            f"its normalisation {normalize.mean} / {normalize.std} must be the given {list(mean)} / {list(std)}"
        )
    return found


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(float(x) - float(y)) < 1e-6 for x, y in zip(a, b, strict=True))
