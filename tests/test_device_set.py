"""The device-side training data path (attnmel.data.device_set): the same views as the v2 pipeline, drawn from
the same distribution, and a trainer that runs on it and resumes exactly (on the CPU device)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from attnmel.config import TrainConfig
from attnmel.data import train_transform
from attnmel.data.dataset import LesionDataset
from attnmel.data.device_set import DeviceTrainSet, augment_indices, draw_augmentation
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


def test_the_recipe_augmentation_is_refused_with_the_reason() -> None:
    with pytest.raises(
        ValueError, match=r"data_on_device runs the paper's augmentation only.*crop_scale=0.5"
    ):
        TrainConfig(data_on_device=True, crop_scale=0.5)


def test_training_on_the_device_path_runs_and_resumes_exactly(tiny_synthetic, tmp_path) -> None:
    from attnmel.trainer import fit

    def run(name: str, epochs: int, resume: bool = False):
        config = tiny_config(
            tiny_synthetic, tmp_path, epochs=epochs, data_on_device=True, run_dir=str(tmp_path / name),
            resume=resume, eval_splits="Validation", lr_step=1,
        )  # fmt: skip
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
