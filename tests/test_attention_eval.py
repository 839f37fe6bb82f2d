"""Attention evaluation: the Table 3 protocol on hand-built maps, pointing game, Grad-CAM identity with CAM,
deletion curves on a toy model, attention share, overlays."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from attnmel.attention_eval import (
    attention_report,
    binarise_map,
    deletion_auc,
    deletion_curve,
    grad_cam,
    jaccard,
    mean_jaccard,
    minmax,
    overlay,
    pointing_game,
    share_on_region,
    upsample,
)

MASKS = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "isic2017"
    / "ISIC-2017_Validation_Part1_GroundTruth"
)


def _box(n: int, size: int, top: int, left: int, h: int, w: int) -> torch.Tensor:
    m = torch.zeros(n, 1, size, size)
    m[:, :, top : top + h, left : left + w] = 1
    return m


# ---------------------------------------------------------------------------------------------- protocol


def test_binarise_without_upsampling():
    m = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # min-max -> 0, 1/3, 2/3, 1
    assert binarise_map(m, 2).tolist() == [[[False, False], [True, True]]]


def test_binarise_upsamples_bilinearly_before_minmax():
    # 2x2 -> 4x4, align_corners=False: the weights of the bottom-right source pixel along each axis are
    # 0, .25, .75, 1, so the map is w_y * w_x; >= .5 only for w_y, w_x in {.75, 1}.
    m = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])
    expected = torch.zeros(1, 4, 4, dtype=torch.bool)
    expected[:, 2:, 2:] = True
    assert torch.equal(binarise_map(m, (4, 4)), expected)
    w = torch.tensor([0.0, 0.25, 0.75, 1.0])
    torch.testing.assert_close(upsample(m, 4)[0, 0], w[:, None] * w[None, :])


def test_constant_map_binarises_to_nothing_and_minmax_handles_it():
    assert not binarise_map(torch.full((2, 1, 3, 3), 0.7), 6).any()
    assert torch.equal(minmax(torch.full((1, 1, 2, 2), 5.0)), torch.zeros(1, 1, 2, 2))
    assert binarise_map(torch.rand(2, 3, 3), 6).shape == (2, 6, 6)  # (N, h, w) accepted
    with pytest.raises(ValueError, match=r"\(N, 1, h, w\)"):
        binarise_map(torch.rand(2, 2, 3, 3), 6)


def test_jaccard_by_hand():
    pred = _box(1, 4, 0, 0, 2, 2)  # 4 pixels: rows 0-1, cols 0-1
    mask = _box(1, 4, 1, 0, 2, 3)  # 6 pixels: rows 1-2, cols 0-2; overlap row 1, cols 0-1 = 2
    assert jaccard(pred, mask).tolist() == [pytest.approx(2 / 8)]
    empty = torch.zeros(1, 4, 4)
    assert jaccard(empty, empty).tolist() == [1.0]
    assert jaccard(empty, mask).tolist() == [0.0]
    with pytest.raises(ValueError, match="shapes differ"):
        jaccard(torch.zeros(1, 4, 4), torch.zeros(1, 5, 5))


def test_mean_jaccard_uses_only_images_with_masks():
    maps = torch.zeros(3, 1, 4, 4)
    maps[:, :, :2, :2] = 1  # after the protocol: top-left 2x2 block
    masks = torch.cat([_box(1, 4, 0, 0, 2, 2), _box(1, 4, 2, 2, 2, 2), torch.zeros(1, 1, 4, 4)])
    assert mean_jaccard(maps, masks, has_mask=[True, True, False]) == pytest.approx(0.5)  # (1 + 0) / 2
    assert mean_jaccard(maps, masks) == pytest.approx(1 / 3)  # the empty mask counts 0
    with pytest.raises(ValueError, match="no image has a lesion mask"):
        mean_jaccard(maps, masks, has_mask=torch.zeros(3, dtype=torch.bool))


def test_pointing_game_hit_miss_tolerance_and_constant():
    mask = _box(1, 8, 2, 2, 2, 2).repeat(4, 1, 1, 1)  # lesion rows/cols 2-3
    maps = torch.zeros(4, 1, 8, 8)
    maps[0, 0, 3, 3] = 1  # inside -> hit
    maps[1, 0, 7, 7] = 1  # far -> miss
    maps[2, 0, 5, 3] = 1  # 2 px below the lesion -> hit only with tolerance 2
    # maps[3] constant -> miss
    assert pointing_game(maps, mask).tolist() == [True, False, False, False]
    assert pointing_game(maps, mask, tolerance=2).tolist() == [True, False, True, False]


def test_attention_report_is_json():
    masks = _box(2, 8, 0, 0, 4, 4)
    maps = {"good": _box(2, 8, 0, 0, 4, 4), "bad": _box(2, 8, 4, 4, 4, 4)}
    report = attention_report(maps, masks, has_mask=torch.tensor([True, True]))
    json.dumps(report, allow_nan=False)
    assert report["good"] == {"jaccard_mean": 1.0, "jaccard_std": 0.0, "pointing_rate": 1.0, "n": 2}
    assert report["bad"]["jaccard_mean"] == 0.0 and report["bad"]["pointing_rate"] == 0.0


@pytest.mark.skipif(not MASKS.is_dir(), reason="real ISIC 2017 masks (../shared/data) not available")
def test_protocol_on_real_lesion_masks():
    from PIL import Image

    paths = sorted(MASKS.glob("*_segmentation.png"))[:6]
    masks = torch.stack(
        [torch.from_numpy(np.array(Image.open(p).convert("L")) > 127) for p in paths]
    )  # (6, H, W)
    # An "attention map" that is the lesion mask pooled to the pool-4 grid (14x14) should survive the
    # protocol (upsample, min-max, >= 0.5) with a high Jaccard and point inside the lesion.
    pooled = torch.nn.functional.adaptive_avg_pool2d(masks[:, None].float(), 14)  # (6, 1, 14, 14)
    assert mean_jaccard(pooled, masks) > 0.8
    assert pointing_game(pooled, masks).all()
    shifted = torch.roll(pooled, shifts=(7, 7), dims=(2, 3))
    assert mean_jaccard(shifted, masks) < mean_jaccard(pooled, masks) - 0.3


# ---------------------------------------------------------------------------------------------- Grad-CAM


class Out(NamedTuple):
    logits: torch.Tensor
    attn3: torch.Tensor | None
    attn4: torch.Tensor | None


class TinyGAP(nn.Module):
    """Conv -> BN -> ReLU -> global average pooling -> Linear: CAM is defined on the ReLU output."""

    def __init__(self, named_output: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(6, 2)
        self.named_output = named_output

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))  # (N, 6, H, W)

    def forward(self, x: torch.Tensor):
        logits = self.fc(self.features(x).mean(dim=(2, 3)))
        return Out(logits, None, None) if self.named_output else logits


@pytest.mark.parametrize("named_output", [True, False])
def test_grad_cam_equals_cam_for_gap_network(named_output):
    torch.manual_seed(0)
    model = TinyGAP(named_output)
    model.bn.running_mean.uniform_(-0.2, 0.2)  # non-trivial eval-mode statistics
    model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 3, 10, 12)
    cam_map = grad_cam(model, x, model.relu, class_index=1)  # (3, 1, 10, 12)
    with torch.no_grad():
        model.eval()
        features = model.features(x)
        cam = torch.einsum("k,nkhw->nhw", model.fc.weight[1], features).unsqueeze(1)
        model.train()
    assert cam_map.shape == (3, 1, 10, 12)
    torch.testing.assert_close(cam_map, torch.relu(cam) / (10 * 12), rtol=1e-5, atol=1e-7)
    assert cam_map.max() > 0


def test_grad_cam_equals_cam_for_vgg16_gap():
    models = pytest.importorskip("attnmel.models")
    saliency = pytest.importorskip("attnmel.saliency")
    torch.manual_seed(0)
    model = models.vgg16_gap(weights=None)
    x = torch.randn(2, 3, 64, 64)
    cam_map = grad_cam(model, x, model.features, select="pool5")  # (2, 1, 2, 2)
    model.eval()
    with torch.no_grad():
        cam = saliency.class_activation_map(model, x)
    assert cam_map.shape == cam.shape == (2, 1, 2, 2)
    torch.testing.assert_close(cam_map, torch.relu(cam) / 4, rtol=1e-4, atol=1e-6)


def test_grad_cam_leaves_no_trace():
    torch.manual_seed(1)
    model = TinyGAP()
    model.train()
    x = torch.randn(4, 3, 8, 8)
    full = grad_cam(model, x, model.relu)
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())
    assert not model.relu._forward_hooks
    torch.testing.assert_close(grad_cam(model, x[:1], model.relu), full[:1])  # eval mode: images independent
    for p in model.parameters():
        p.requires_grad_(False)
    torch.testing.assert_close(grad_cam(model, x, model.relu), full)  # frozen model works
    other = nn.ReLU()
    with pytest.raises(RuntimeError, match="not called"):
        grad_cam(model, x, other)
    assert not other._forward_hooks  # removed on error too


# ---------------------------------------------------------------------------------------------- deletion


class RegionMean(nn.Module):
    """Melanoma logit = 8 * mean of channel 0 over the top-left 8x8 block; the other logit is 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 8 * x[:, 0, :8, :8].mean(dim=(1, 2))
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_deletion_curve_on_toy_model():
    images = torch.ones(2, 3, 16, 16)
    right = _box(2, 16, 0, 0, 8, 8)  # saliency on the region the model reads
    curve = deletion_curve(RegionMean(), images, right, steps=10, baseline="zero")
    fractions, mean_prob, probs = curve
    np.testing.assert_allclose(fractions, np.linspace(0, 1, 11))
    assert probs.shape == (2, 11)
    assert probs[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(8.0)).item(), rel=1e-6)
    # 10% = round(25.6) = 26 pixels deleted, all inside the 64-pixel region
    assert probs[0, 1] == pytest.approx(torch.sigmoid(torch.tensor(8 * (1 - 26 / 64))).item(), rel=1e-5)
    assert (np.diff(mean_prob) <= 1e-7).all()  # monotone non-increasing
    np.testing.assert_allclose(probs[:, 3:], 0.5, atol=1e-6)  # region fully gone after 25%
    wrong = deletion_curve(RegionMean(), images, 1 - right, steps=10, baseline="zero")
    assert deletion_auc(fractions, mean_prob) < deletion_auc(wrong.fractions, wrong.mean_prob) - 0.3


@pytest.mark.parametrize("baseline", ["mean", "zero", "blur"])
def test_deletion_curve_baselines(baseline):
    torch.manual_seed(0)
    images = torch.randn(3, 3, 16, 16)
    curve = deletion_curve(
        RegionMean(), images, torch.rand(3, 1, 4, 4), steps=4, baseline=baseline, batch_size=2
    )
    assert curve.probs.shape == (3, 5) and np.isfinite(curve.probs).all()
    intact = torch.softmax(RegionMean()(images), dim=1)[:, 1].numpy()
    np.testing.assert_allclose(curve.probs[:, 0], intact, rtol=1e-6)


def test_deletion_curve_rejects_unknown_baseline():
    with pytest.raises(ValueError, match="baseline"):
        deletion_curve(RegionMean(), torch.ones(1, 3, 8, 8), torch.rand(1, 1, 2, 2), baseline="noise")


def test_deletion_auc_by_hand():
    assert deletion_auc([0, 0.5, 1], [1, 0.5, 0]) == pytest.approx(0.5)
    np.testing.assert_allclose(deletion_auc([0, 1], [[1, 1], [0, 1]]), [1.0, 0.5])


# ---------------------------------------------------------------------------------------------- share, overlay


def test_share_on_region():
    region = _box(3, 4, 0, 0, 2, 2)  # 4 of 16 pixels
    maps = torch.ones(3, 1, 4, 4)
    maps[1] = 0
    maps[1, 0, 0, 0], maps[1, 0, 3, 3] = 3.0, 1.0  # 3 of 4 units inside
    maps[2] = -1.0  # no positive mass
    share = share_on_region(maps, region)
    assert share[0] == pytest.approx(0.25) and share[1] == pytest.approx(0.75) and math.isnan(share[2])
    low_res = share_on_region(torch.ones(1, 1, 2, 2), region[:1])  # upsampled to 4x4 first
    assert low_res.tolist() == [pytest.approx(0.25)]
    neg = torch.zeros(1, 1, 4, 4)
    neg[0, 0, 0, 0], neg[0, 0, 3, 3] = 1.0, -5.0  # negative values are clipped, not subtracted
    assert share_on_region(neg, region[:1]).tolist() == [pytest.approx(1.0)]


def test_overlay_blends_jet_heat_map():
    image = np.full((8, 8, 3), 200, dtype=np.uint8)
    att = torch.zeros(2, 2)
    att[1, 1] = 1.0
    out = overlay(image, att, alpha=0.4)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    # top-left: map minimum -> jet(0) = (0, 0, 0.5); bottom-right: maximum -> jet(1) = (0.5, 0, 0)
    np.testing.assert_allclose(out[0, 0], 0.6 * 200 + 0.4 * np.array([0, 0, 127.5]), atol=1.5)
    np.testing.assert_allclose(out[7, 7], 0.6 * 200 + 0.4 * np.array([127.5, 0, 0]), atol=1.5)
    assert np.array_equal(overlay(image, att, alpha=0.0), image)


def test_overlay_accepts_normalised_chw_tensors():
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    chw = torch.zeros(3, 8, 8)  # normalised zeros = grey 0.5
    out = overlay(chw, torch.rand(1, 4, 4), alpha=0.0, mean=mean, std=std)
    assert out.shape == (8, 8, 3) and (out == 128).all()
    with pytest.raises(ValueError, match="attention must be"):
        overlay(chw, torch.rand(2, 4, 4), mean=mean, std=std)


def test_grad_cam_moved_to_saliency_and_re_exported():
    saliency = pytest.importorskip("attnmel.saliency")
    assert grad_cam is saliency.grad_cam


def test_grad_cam_equals_cam_for_gap_on_resnet50():
    """The identity holds on any backbone: Grad-CAM at the global tap (layer4) is relu(CAM) / (h w)."""
    models = pytest.importorskip("attnmel.models")
    saliency = pytest.importorskip("attnmel.saliency")
    torch.manual_seed(0)
    model = models.vgg16_gap(backbone="resnet50").eval()
    x = torch.randn(2, 3, 64, 64)
    maps = saliency.compute_maps(model, x, gradcam=True)
    assert set(maps) == {"cam", "gradcam"}
    torch.testing.assert_close(maps["gradcam"], torch.relu(maps["cam"].detach()) / 4, rtol=1e-4, atol=1e-6)
