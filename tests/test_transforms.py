"""Transforms (shared geometry for image and masks) and LesionDataset items."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from attnmel.data import (
    ISIC2017_MEAN,
    LesionDataset,
    Preprocess,
    RandomRotate90,
    default_resize,
    eval_transform,
    isic2017,
    split_preprocess,
    train_transform,
)


def _pair(height, width, seed=0):
    """A random uint8 image and a mask that equals ``image[0] > 127``, so geometry can be compared exactly."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
    mask = (image[:1] > 127).to(torch.uint8)
    return {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)}


def test_default_resize_keeps_the_paper_ratio():
    assert default_resize(224) == 256 and default_resize(128) == 146
    assert split_preprocess(train_transform(128, None))[0].resize == 146


def test_preprocess_crops_the_centre_0_8_square_then_resizes():
    mask = torch.zeros((1, 30, 40), dtype=torch.uint8)
    mask[:, 3:27, 8:32] = 1  # the centre 24 x 24 square: side 0.8 * min(30, 40) = 24
    image = tv_tensors.Image(mask.repeat(3, 1, 1) * 200)
    out = Preprocess(24)({"image": image, "mask": tv_tensors.Mask(mask)})
    assert out["mask"].shape == (1, 24, 24) and bool(out["mask"].all())
    assert out["image"].shape == (3, 24, 24) and bool((out["image"] == 200).all())
    big = Preprocess(48)({"image": image, "mask": tv_tensors.Mask(mask)})
    assert big["image"].shape == (3, 48, 48) and set(big["mask"].unique().tolist()) == {1}
    mask[:, 2, 8] = 1  # a pixel just outside the crop does not survive
    assert Preprocess(24)(tv_tensors.Mask(mask)).sum() == 24 * 24


def test_train_transform_applies_the_same_geometry_to_image_and_mask():
    # 40 x 40 -> crop 32 -> resize 32 (no resampling), so every step is a pixel permutation or crop
    transform = train_transform(16, 32, mean=(0, 0, 0), std=(1, 1, 1))
    for seed in range(12):
        torch.manual_seed(seed)
        out = transform(_pair(40, 40, seed))
        image, mask = out["image"], out["mask"]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32
        assert mask.shape == (1, 16, 16) and mask.dtype == torch.float32
        assert torch.equal(mask[0], ((image[0] * 255).round() > 127).float())


def test_train_transform_is_random_and_eval_transform_is_deterministic():
    pair = _pair(50, 60)
    train, evaluate = train_transform(24, 32), eval_transform(24, 32)
    torch.manual_seed(0)
    outs = [train(pair)["image"] for _ in range(6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    assert torch.equal(evaluate(pair)["image"], evaluate(pair)["image"])
    out = evaluate(pair)
    assert out["image"].shape == (3, 24, 24) and set(out["mask"].unique().tolist()) <= {0.0, 1.0}


def test_random_rotate90_draws_all_four_rotations_exactly():
    image = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4)
    rotate = RandomRotate90()
    seen = set()
    torch.manual_seed(0)
    for _ in range(40):
        out = rotate(tv_tensors.Mask(image))
        assert isinstance(out, tv_tensors.Mask)
        k = [m for m in range(4) if torch.equal(out, torch.rot90(image, m, dims=(-2, -1)))]
        assert len(k) == 1
        seen.add(k[0])
    assert seen == {0, 1, 2, 3}


def test_normalisation_and_mask_binarisation():
    image = tv_tensors.Image(torch.full((3, 20, 20), 255, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros((1, 20, 20), dtype=torch.uint8))
    mask[:, 5:15, 5:15] = 1
    out = eval_transform(8, 16)({"image": image, "mask": mask})
    expected = [(1.0 - m) / s for m, s in zip(ISIC2017_MEAN, (0.0840, 0.1140, 0.1282), strict=True)]
    assert torch.allclose(out["image"].mean(dim=(1, 2)), torch.tensor(expected), atol=1e-4)
    assert out["mask"].dtype == torch.float32 and torch.equal(out["mask"].unique(), torch.tensor([1.0]))


def test_bad_sizes():
    with pytest.raises(ValueError, match="size <= resize"):
        train_transform(256, 224)
    with pytest.raises(ValueError, match="fraction"):
        Preprocess(32, fraction=1.5)


# ------------------------------------------------------------------------------------------ LesionDataset
def test_items_collate_with_the_default_collate(isic2017_root):
    dataset = LesionDataset(isic2017(isic2017_root), train_transform(16, 20), roi="lesion")
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["label"].tolist() == [0, 1, 0, 1] and batch["label"].dtype == torch.int64
    assert batch["mask"].shape == (4, 1, 16, 16) and batch["roi"].shape == (4, 1, 16, 16)
    assert batch["has_mask"].tolist() == [True] * 4
    assert batch["image_id"] == [f"ISIC_{i:07d}" for i in range(4)]
    assert torch.equal(batch["roi"], batch["mask"])


def test_roi_kinds_and_samples_without_masks(isic2017_root):
    (isic2017_root / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000005_segmentation.png").unlink()
    _left_half_mask(isic2017_root, "ISIC_0000004")
    samples = isic2017(isic2017_root)
    transform = eval_transform(16, 20)
    plain, lesion, background = (
        LesionDataset(samples, transform, roi=r)[4] for r in (None, "lesion", "background")
    )
    assert plain["mask"].sum() > 0 and plain["roi"].sum() == 0
    assert torch.equal(lesion["roi"], plain["mask"])
    assert torch.equal(background["roi"], 1.0 - plain["mask"])
    for roi in (None, "lesion", "background"):  # no mask: zeros everywhere, has_mask False
        item = LesionDataset(samples, transform, roi=roi)[5]
        assert item["has_mask"] is False and item["mask"].sum() == 0 and item["roi"].sum() == 0
        assert item["mask"].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="roi must be one of"):
        LesionDataset(samples, transform, roi="lesions")


def _left_half_mask(root, image_id):
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[:, :20] = 255
    Image.fromarray(mask).save(root / "ISIC-2017_Training_Part1_GroundTruth" / f"{image_id}_segmentation.png")


def test_mask_pixels_follow_the_image_through_the_pipeline(isic2017_root):
    _left_half_mask(isic2017_root, "ISIC_0000005")
    samples = isic2017(isic2017_root)
    # 40 x 30 -> centre crop 24 x 24 starting at column 8 -> the mask's columns 8..19 are the crop's 0..11
    item = LesionDataset(samples, eval_transform(24, 24, mean=(0, 0, 0), std=(1, 1, 1)))[5]
    expected = torch.zeros((1, 24, 24))
    expected[..., :12] = 1
    assert torch.equal(item["mask"], expected)
    red = round(float(item["image"][0].mean()) * 255)
    assert abs(red - 50) <= 2  # image 5 of conftest has red = 10 * 5: the right image came with the mask


def _textured(seed: int = 0, side: int = 40) -> torch.Tensor:
    """A float image in [0.1, 0.7] with a lesion-like darker blob: a scene to put colour casts on."""
    g = torch.Generator().manual_seed(seed)
    base = 0.4 + 0.3 * (torch.rand(1, side, side, generator=g) - 0.5) * 2
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    blob = ((yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (side / 4) ** 2).float()
    return (base * (1 - 0.5 * blob)).expand(3, side, side).clone()


def test_shades_of_gray_leaves_a_grey_image_alone_and_removes_a_colour_cast():
    from attnmel.data import shades_of_gray

    grey = (_textured() * 255).round().to(torch.uint8)
    assert torch.equal(shades_of_gray(grey), grey)  # a grey light: gain 1 on every channel
    cast = torch.tensor([1.0, 0.75, 0.55]).view(3, 1, 1)  # a warm dermoscope light
    corrected = shades_of_gray(_textured() * cast)
    illuminant = corrected.pow(6).mean(dim=(-2, -1)).pow(1 / 6)
    assert torch.allclose(illuminant, illuminant.mean().expand(3), rtol=1e-4)  # the light is grey again
    # the scene under both lights comes out the same up to one brightness factor
    ratio = corrected / _textured()
    assert torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-4)
    batch = torch.stack([_textured(0) * cast, _textured(1)])  # (N, 3, H, W): each image has its own light
    assert torch.allclose(shades_of_gray(batch)[0], corrected) and torch.allclose(
        shades_of_gray(batch)[1], shades_of_gray(_textured(1))
    )


def test_shades_of_gray_refuses_what_it_cannot_correct():
    from attnmel.data import shades_of_gray
    from attnmel.data.transforms import ShadesOfGray

    with pytest.raises(ValueError, match="p >= 1, got 0.5"):
        shades_of_gray(torch.zeros(3, 4, 4), p=0.5)
    with pytest.raises(ValueError, match="p >= 1, got nan"):
        ShadesOfGray(float("nan"))  # the pipeline step refuses at construction
    with pytest.raises(ValueError, match=r"RGB images, got shape \(1, 4, 4\)"):
        shades_of_gray(torch.zeros(1, 4, 4))
    black = torch.zeros(3, 4, 4, dtype=torch.uint8)
    assert torch.equal(shades_of_gray(black), black)  # no light to estimate: left as it is


def test_colour_constancy_makes_evaluation_inputs_independent_of_the_light():
    from attnmel.data.transforms import ShadesOfGray

    scene = _textured(side=64)
    cast = torch.tensor([1.0, 0.8, 0.6]).view(3, 1, 1)
    plain = {"image": tv_tensors.Image((scene * 255).round().to(torch.uint8))}
    warm = {"image": tv_tensors.Image((scene * cast * 255).round().to(torch.uint8))}
    identity = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # look at the [0, 1] pixels themselves

    def channel_ratios(transform) -> torch.Tensor:
        """Per channel, the mean of plain / warm pixels: equal across channels = only brightness differs."""
        return (transform(plain)["image"] / transform(warm)["image"].clamp_min(1e-3)).mean(dim=(-2, -1))

    paper = channel_ratios(eval_transform(32, 40, **identity))
    corrected = channel_ratios(eval_transform(32, 40, **identity, color_constancy=6))
    assert paper[2] / paper[0] > 1.5  # without it the cast reaches the network
    assert torch.allclose(corrected, corrected.mean().expand(3), rtol=0.02)  # with it, one brightness factor
    preprocess, rest = split_preprocess(train_transform(32, 40, color_constancy=6))
    # Preprocess stays first, so the pipeline is still cacheable
    assert isinstance(preprocess, Preprocess) and isinstance(rest.transforms[0], ShadesOfGray)
    pair = _pair(50, 50)
    out = train_transform(32, 40, color_constancy=6)(pair)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}  # masks pass through the colour step
