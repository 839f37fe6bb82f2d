"""The device-side training data path (attnmel.data.device_set): the same views as the v2 pipeline, drawn from
the same distribution (the paper's crop, and the recipe's resized crop and colour jitter), and a trainer that runs
on it and resumes exactly (on the CPU device)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from attnmel.config import TrainConfig
from attnmel.data import train_transform
from attnmel.data.dataset import LesionDataset
from attnmel.data.device_set import (
    DeviceTrainSet,
    augment_indices,
    colour_jitter_batch,
    draw_augmentation,
    draw_colour_jitter,
    draw_resized_crops,
    resized_crop_maps,
)
from attnmel.data.transforms import train_geometry
from tests.helpers import tiny_config

R, S = 12, 8


def _v2_view(x: torch.Tensor, top: int, left: int, k: int, hflip: int, vflip: int) -> torch.Tensor:
    """The v2 pipeline's order, with given draws: crop, quarter turns, horizontal then vertical flip."""
    out = torch.rot90(F.crop(x, top, left, S, S), k, dims=(-2, -1))
    out = F.horizontal_flip(out) if hflip else out
    return F.vertical_flip(out) if vflip else out


def test_every_draw_gives_the_v2_pipelines_pixels() -> None:
    x = torch.randint(0, 256, (3, R, R), dtype=torch.uint8)
    cases = list(itertools.product([0, R - S], [0, 3], range(4), (0, 1), (0, 1)))  # corners and inside, all 8
    draws = {
        name: torch.tensor([c[i] for c in cases])
        for i, name in enumerate(("top", "left", "k", "hflip", "vflip"))
    }
    index = augment_indices(draws, R, S)  # (n, S*S)
    views = x.reshape(3, -1)[:, index].permute(1, 0, 2).reshape(len(cases), 3, S, S)
    for view, case in zip(views, cases, strict=True):
        assert torch.equal(view, _v2_view(x, *case)), case


def _features(view: torch.Tensor) -> tuple[int, int, tuple[int, int, int, int]]:
    """Where the view's first pixel comes from (row, column), and the view's orientation: the source steps of its
    first row and first column, which tell the 8 rotations and flips apart. Channels 0/1 hold source row/col."""
    r, c = view[0].long(), view[1].long()
    steps = (int(r[0, 1] - r[0, 0]), int(c[0, 1] - c[0, 0]), int(r[1, 0] - r[0, 0]), int(c[1, 0] - c[0, 0]))
    return int(r[0, 0]), int(c[0, 0]), steps


def _total_variation(a: list, b: list) -> float:
    keys = set(a) | set(b)
    return sum(abs(a.count(k) / len(a) - b.count(k) / len(b)) for k in keys) / 2


def test_the_draws_have_the_v2_pipelines_distribution() -> None:
    """Views of an image whose pixels encode their position: the first pixel's source row, its column, and the
    orientation are distributed alike under the device path and train_geometry (total variation < 0.06 each,
    where sampling noise at n = 3000 gives about 0.03)."""
    rows, cols = torch.meshgrid(torch.arange(R), torch.arange(R), indexing="ij")
    x = torch.stack([rows, cols, torch.zeros_like(rows)]).to(torch.uint8)  # (3, R, R)
    n = 3000
    torch.manual_seed(0)
    geometry = train_geometry(S, R)[1:]  # without Preprocess: x is already the preprocessed image
    v2_features = []
    for _ in range(n):
        view = tv_tensors.Image(x)
        for step in geometry:
            view = step(view)
        v2_features.append(_features(view.as_subclass(torch.Tensor)))
    draws = draw_augmentation(n, R, S, torch.Generator().manual_seed(1), "cpu")
    views = x.reshape(3, -1)[:, augment_indices(draws, R, S)].permute(1, 0, 2).reshape(n, 3, S, S)
    device_features = [_features(view) for view in views]
    for i, name in enumerate(("source row", "source column", "orientation")):
        ours, theirs = [f[i] for f in device_features], [f[i] for f in v2_features]
        assert set(ours) == set(theirs), name  # the same reachable values
        assert _total_variation(ours, theirs) < 0.06, (name, _total_variation(ours, theirs))
    assert len(set(f[2] for f in device_features)) == 8  # all four rotations, each flipped or not
    for name, high in (("top", R - S), ("left", R - S), ("k", 3), ("hflip", 1), ("vflip", 1)):
        assert int(draws[name].min()) == 0 and int(draws[name].max()) == high
        share = torch.bincount(draws[name]).float() / n
        assert (share - 1 / (high + 1)).abs().max() < 0.05, name


def test_a_batch_is_the_preprocessed_image_augmented_and_normalised(tiny_synthetic) -> None:
    from attnmel.data import isic2017
    from attnmel.data.sampling import oversample

    samples = oversample(isic2017(tiny_synthetic, "Training"), 3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    dataset = LesionDataset(samples, train_transform(S, R, mean, std), roi="lesion")
    device_set = DeviceTrainSet(dataset, "cpu", size=S, mean=mean, std=std)
    assert len(device_set) == len(samples) and device_set.images.shape[0] < len(samples)  # duplicates once
    assert device_set.images.dtype == torch.uint8 and device_set.images.shape[1:] == (3, R, R)
    indices = torch.tensor([0, len(samples) - 1, 3])
    batch = device_set.batch(indices, torch.Generator().manual_seed(5))
    draws = draw_augmentation(3, R, S, torch.Generator().manual_seed(5), "cpu")  # the same draws again
    preprocess = dataset.transform.transforms[0]
    for row, i in enumerate(indices.tolist()):
        from attnmel.data.dataset import read_sample

        parts = preprocess(read_sample(samples[i]))
        case = [int(draws[name][row]) for name in ("top", "left", "k", "hflip", "vflip")]
        image = _v2_view(parts["image"].as_subclass(torch.Tensor), *case).float() / 255
        expected = (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        torch.testing.assert_close(batch["image"][row], expected)
        mask = (_v2_view(parts["mask"].as_subclass(torch.Tensor), *case) > 0).float()
        assert torch.equal(batch["mask"][row], mask) and torch.equal(batch["roi"][row], mask)
        assert int(batch["label"][row]) == samples[i].label
    assert batch["image"].shape == (3, 3, S, S) and batch["image"].dtype == torch.float32


def test_resized_crops_are_drawn_as_v2_draws_them() -> None:
    """Crop height, width, top and left of v2.RandomResizedCrop and of the device draws: the same reachable
    values and total variation < 0.06 each (sampling noise at n = 3000 gives about 0.03)."""
    R2, scale, ratio, n = 20, (0.35, 1.0), (3 / 4, 4 / 3), 3000
    torch.manual_seed(0)
    crop = v2.RandomResizedCrop(S, scale=scale, ratio=ratio)
    image = tv_tensors.Image(torch.zeros(3, R2, R2, dtype=torch.uint8))
    theirs = [crop.make_params([image]) for _ in range(n)]
    ours = draw_resized_crops(n, R2, scale, ratio, torch.Generator().manual_seed(1), "cpu")
    for name in ("height", "width", "top", "left"):
        a, b = ours[name].tolist(), [int(p[name]) for p in theirs]
        assert set(a) <= set(range(R2 + 1)) and _total_variation(a, b) < 0.06, (name, _total_variation(a, b))
    assert bool(((ours["top"] + ours["height"]) <= R2).all() and ((ours["left"] + ours["width"]) <= R2).all())
    area = (ours["height"] * ours["width"]).float() / R2**2
    assert (
        float(area.min()) >= 0.3 and float(area.max()) <= 1.0
    )  # the area share (up to rounding of the sides)


def test_a_resized_crop_samples_pixels_as_the_v2_resize_does() -> None:
    """For given crops, the bilinear grid gives v2's resized crop away from the crop's border (where v2 clamps to
    the crop and the grid reads the image's neighbouring pixels; a shrunk crop is compared without antialiasing),
    and the masks' index gives v2's nearest resize exactly."""
    R2 = 20
    x = torch.rand(1, 3, R2, R2)
    mask = (torch.rand(1, 1, R2, R2) > 0.5).to(torch.uint8)
    boxes = [(0, 0, R2, R2), (3, 5, 6, 7), (10, 2, 8, 5), (0, 14, 5, 6)]  # top, left, height, width
    crops = {
        name: torch.tensor([b[i] for b in boxes]) for i, name in enumerate(("top", "left", "height", "width"))
    }
    grid, nearest = resized_crop_maps(crops, R2, S)
    sampled = torch.nn.functional.grid_sample(
        x.expand(len(boxes), -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    for i, (top, left, height, width) in enumerate(boxes):
        shrunk = max(height, width) > S  # v2 antialiases a shrinking resize; the grid samples it plainly
        expected = F.resized_crop(x[0], top, left, height, width, [S, S], antialias=not shrunk)
        inner = (slice(None), slice(1, -1), slice(1, -1))
        torch.testing.assert_close(sampled[i][inner], expected[inner], atol=1e-5, rtol=0)
        if (height, width) == (R2, R2):  # the whole image: no neighbours outside, the border agrees too
            torch.testing.assert_close(sampled[i], expected, atol=1e-5, rtol=0)
        v2_mask = F.resized_crop(
            mask[0], top, left, height, width, [S, S], interpolation=InterpolationMode.NEAREST
        )
        assert torch.equal(mask[0].reshape(1, -1)[:, nearest[i]].reshape(1, S, S), v2_mask), (
            top,
            left,
            height,
            width,
        )


def _v2_jitter(image: torch.Tensor, factors: dict[str, float], order: list[int]) -> torch.Tensor:
    ops = (
        lambda x: F.adjust_brightness(x, factors["brightness"]),
        lambda x: F.adjust_contrast(x, factors["contrast"]),
        lambda x: F.adjust_saturation(x, factors["saturation"]),
        lambda x: F.adjust_hue(x, factors["hue"]),
    )
    for i in order:
        image = ops[i](image)
    return image


def test_colour_jitter_of_a_batch_is_torchvisions_per_image() -> None:
    """Each image of the batch gets torchvision's four colour operations with its own factors, in its own order."""
    torch.manual_seed(3)
    n = 24
    images = torch.rand(n, 3, 6, 6)
    images[0] = 0.4  # a grey image: hue and saturation leave it as it is
    draws = draw_colour_jitter(
        n, v2.ColorJitter(0.3, 0.3, 0.3, 0.05), torch.Generator().manual_seed(2), "cpu"
    )
    draws["order"] = torch.tensor(list(itertools.permutations(range(4))))  # every order once
    out = colour_jitter_batch(images, draws)
    for i in range(n):
        factors = {name: float(draws[name][i]) for name in ("brightness", "contrast", "saturation", "hue")}
        expected = _v2_jitter(images[i], factors, draws["order"][i].tolist())
        torch.testing.assert_close(out[i], expected, atol=2e-5, rtol=0)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_colour_jitter_draws_cover_the_ranges_and_every_order() -> None:
    n = 4800
    jitter = v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02)
    draws = draw_colour_jitter(n, jitter, torch.Generator().manual_seed(0), "cpu")
    bounds = {
        "brightness": (0.8, 1.2),
        "contrast": (0.8, 1.2),
        "saturation": (0.8, 1.2),
        "hue": (-0.02, 0.02),
    }
    for name, (low, high) in bounds.items():
        values = draws[name]
        assert low <= float(values.min()) < low + 0.01 and high - 0.01 < float(values.max()) <= high, name
    orders = [tuple(o) for o in draws["order"].tolist()]
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders) and len(set(orders)) == 24
    assert max(orders.count(o) for o in set(orders)) / n < 1 / 24 + 0.02  # about uniform
    plain = draw_colour_jitter(3, v2.ColorJitter(brightness=0.2), torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(plain["contrast"], torch.ones(3)) and torch.equal(plain["hue"], torch.zeros(3))


def test_a_recipe_batch_crops_turns_jitters_and_keeps_masks_aligned(tiny_synthetic) -> None:
    """With the recipe's resized crop and colour jitter: the batch's shapes and ranges, masks that are the nearest
    resize of the stored masks (in {0, 1}), the same views for the same generator, and other views for another."""
    from attnmel.data import isic2017

    samples = isic2017(tiny_synthetic, "Training")[:6]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    transform = train_transform(S, R, mean, std, crop_scale=0.35, color_jitter=0.2)
    device_set = DeviceTrainSet(
        LesionDataset(samples, transform, roi="lesion"), "cpu", size=S, mean=mean, std=std
    )
    assert isinstance(device_set.crop, v2.RandomResizedCrop) and isinstance(device_set.jitter, v2.ColorJitter)
    indices = torch.arange(6)
    batch = device_set.batch(indices, torch.Generator().manual_seed(7))
    again = device_set.batch(indices, torch.Generator().manual_seed(7))
    other = device_set.batch(indices, torch.Generator().manual_seed(8))
    assert batch["image"].shape == (6, 3, S, S) and batch["mask"].shape == (6, 1, S, S)
    assert torch.equal(batch["image"], again["image"]) and not torch.equal(batch["image"], other["image"])
    pixels = batch["image"] * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0} and torch.equal(batch["roi"], batch["mask"])
    # Alignment: store each image as its own mask (white lesion on black), jitter off, no normalisation: the
    # bilinear image and the nearest mask of every view then agree except at a few edge pixels.
    device_set.images = device_set.masks.expand(-1, 3, -1, -1) * 255
    device_set.jitter, device_set.mean, device_set.std = None, torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    views = device_set.batch(torch.arange(6).repeat(20), torch.Generator().manual_seed(9))
    agree = (views["image"][:, :1].round() == views["mask"]).float().mean()
    assert float(agree) > 0.9, float(agree)
    assert 0 < float(views["mask"].mean()) < 1  # lesion and background both present


def test_a_recipe_batch_is_the_v2_view_for_the_same_draws(tiny_synthetic) -> None:
    """Replaying the batch's draws (resized crop, quarter turns and flips, jitter factors and order) through
    torchvision's functional ops gives the batch: masks exactly, images away from the view's edge pixels (where
    the grid reads the image around the crop and v2 clamps to it)."""
    from attnmel.data import isic2017

    samples = isic2017(tiny_synthetic, "Training")[:8]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    transform = train_transform(S, R, mean, std, crop_scale=0.35, color_jitter=0.2)
    device_set = DeviceTrainSet(
        LesionDataset(samples, transform, roi="lesion"), "cpu", size=S, mean=mean, std=std
    )
    indices = torch.arange(8).repeat(4)
    n = len(indices)
    batch = device_set.batch(indices, torch.Generator().manual_seed(11))
    generator = torch.Generator().manual_seed(11)  # the same draws, in the order batch() makes them
    crop, jitter = device_set.crop, device_set.jitter
    crops = draw_resized_crops(n, R, tuple(crop.scale), tuple(crop.ratio), generator, "cpu")
    turns = draw_augmentation(n, S, S, generator, "cpu")
    colours = draw_colour_jitter(n, jitter, generator, "cpu")
    turned = 0
    for i, index in enumerate(indices.tolist()):
        stored = int(device_set.rows[index])
        box = [int(crops[name][i]) for name in ("top", "left", "height", "width")]
        case = [0, 0] + [int(turns[name][i]) for name in ("k", "hflip", "vflip")]
        image = F.resized_crop(device_set.images[stored].float() / 255, *box, [S, S], antialias=False)
        image = _v2_view(image, *case)  # crop offsets 0: the S x S view is only turned and flipped
        factors = {name: float(colours[name][i]) for name in ("brightness", "contrast", "saturation", "hue")}
        image = _v2_jitter(image, factors, colours["order"][i].tolist())
        expected = (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        inner = (slice(None), slice(1, -1), slice(1, -1))
        torch.testing.assert_close(batch["image"][i][inner], expected[inner], atol=3e-3 / min(std), rtol=0)
        mask = F.resized_crop(device_set.masks[stored], *box, [S, S], interpolation=InterpolationMode.NEAREST)
        assert torch.equal(batch["mask"][i], _v2_view(mask, *case).float()), i
        turned += int(case[2] != 0 or case[3] or case[4])
    assert turned > n // 2  # most views were turned or flipped, so the replay checked the turns and flips
    device_set.jitter = None  # the same draws without the jitter: the same masks, other colours
    unjittered = device_set.batch(indices, torch.Generator().manual_seed(11))
    assert torch.equal(batch["mask"], unjittered["mask"])
    assert (batch["image"] - unjittered["image"]).abs().max() > 0.05


def test_a_step_the_device_path_does_not_run_is_refused_by_name(tiny_synthetic) -> None:
    from attnmel.data import isic2017

    samples = isic2017(tiny_synthetic, "Training")[:2]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)

    def build(transform: v2.Compose, size: int = S, **normalisation) -> DeviceTrainSet:
        normalisation = {"mean": mean, "std": std, **normalisation}
        return DeviceTrainSet(LesionDataset(samples, transform), "cpu", size=size, **normalisation)

    blurred = train_transform(S, R, mean, std)
    blurred.transforms.insert(2, v2.GaussianBlur(3))
    with pytest.raises(ValueError, match="cannot run the training transform's step GaussianBlur"):
        build(blurred)
    with pytest.raises(ValueError, match=r"crops \(8, 8\), but size = 6"):
        build(train_transform(S, R, mean, std), size=6)
    with pytest.raises(ValueError, match=r"normalisation .* must be the given \[0, 0, 0\]"):
        build(train_transform(S, R, mean, std), mean=[0, 0, 0])
    unturned = train_transform(S, R, mean, std)
    del unturned.transforms[2]  # Preprocess, crop, (no quarter turns), flips, ...
    with pytest.raises(
        ValueError, match="quarter turns, then horizontal and vertical flips must follow the crop"
    ):
        build(unturned)
    jitter_first = train_transform(S, R, mean, std, crop_scale=0.5, color_jitter=0.2)
    steps = jitter_first.transforms
    steps.insert(1, steps.pop(6))  # colour jitter before the crop: contrast would see another view
    with pytest.raises(ValueError, match="a crop must follow Preprocess"):
        build(jitter_first)
    nearest = train_transform(S, R, mean, std, crop_scale=0.5)
    nearest.transforms[1] = v2.RandomResizedCrop(S, scale=(0.5, 1.0), interpolation=InterpolationMode.NEAREST)
    with pytest.raises(ValueError, match="must be bilinear"):
        build(nearest)
    recipe = TrainConfig(data_on_device=True, crop_scale=0.5, color_jitter=0.2)  # no longer refused
    assert recipe.data_on_device and recipe.crop_scale == 0.5


def test_training_on_the_device_path_runs_and_resumes_exactly(tiny_synthetic, tmp_path) -> None:
    from attnmel.trainer import fit

    def run(name: str, epochs: int, resume: bool = False):
        config = tiny_config(
            tiny_synthetic,
            tmp_path,
            epochs=epochs,
            data_on_device=True,
            run_dir=str(tmp_path / name),
            resume=resume,
            eval_splits="Validation",
            lr_step=1,
            crop_scale=0.35,
            color_jitter=0.2,
        )  # fmt: skip (the recipe's resized crop and jitter: the path with the most draws)
        return fit(config, log=lambda _m: None)

    straight = run("straight", 2)
    run("resumed", 1)
    resumed = run("resumed", 2, resume=True)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    assert all(r["train_images"] > 0 for r in straight.history)
    a = torch.load(tmp_path / "straight" / "checkpoints" / "latest.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "latest.pt", weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_roi_targets_are_the_same_for_an_item_and_a_batch() -> None:
    from attnmel.data.dataset import roi_target

    mask = (torch.rand(2, 1, 4, 4) > 0.5).float()
    batch = roi_target("background", mask, torch.tensor([True, False]))
    assert torch.equal(batch[0], 1.0 - mask[0]) and torch.equal(batch[1], torch.zeros(1, 4, 4))
    has_mask = torch.tensor([True, False])
    for kind in (None, "lesion", "background"):
        batched = roi_target(kind, mask, has_mask)
        for i, has in enumerate((True, False)):
            assert torch.equal(roi_target(kind, mask[i], has), batched[i]), (kind, has)
    assert torch.equal(roi_target("lesion", mask, torch.tensor([True, True])), mask)
    assert roi_target(None, mask, torch.tensor([True, True])).abs().sum() == 0


def test_colour_constancy_is_applied_once_to_the_stored_images(tiny_synthetic) -> None:
    from attnmel.data import isic2017, shades_of_gray
    from attnmel.data.dataset import read_sample

    samples = isic2017(tiny_synthetic, "Training")[:4]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    dataset = LesionDataset(samples, train_transform(S, R, mean, std, color_constancy=6), roi=None)
    device_set = DeviceTrainSet(dataset, "cpu", size=S, mean=mean, std=std)
    preprocess = dataset.transform.transforms[0]
    for row, sample in enumerate(samples):
        stored = device_set.images[device_set.rows[row]]
        expected = shades_of_gray(preprocess(read_sample(sample))["image"].as_subclass(torch.Tensor))
        assert torch.equal(stored, expected)
    assert TrainConfig(data_on_device=True, color_constancy=6).color_constancy == 6  # not refused
