"""ISIC 2017 Task 2: superpixel decoding, feature JSON validation, the Dermo ROI and roi='dermo' items."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from attnmel.data import DataError, LesionDataset, dermo_roi, isic2017, load_features, load_superpixels
from attnmel.data.dermo import FEATURE_NAMES, decode_superpixels
from attnmel.data.transforms import BinariseMasks
from tests.conftest import SP_BLOCK, encode_superpixels, superpixel_grid


def _features(n, **active):
    out = {name: [0.0] * n for name in FEATURE_NAMES}
    for name, items in active.items():
        for index, value in items:
            out[name][index] = value
    return out


def test_superpixel_index_uses_all_three_channels(tmp_path):
    index = np.array([[0, 1, 255, 256], [257, 65535, 65536, 70000 + (3 << 16)]])
    path = tmp_path / "sp.png"
    Image.fromarray(encode_superpixels(index)).save(path)
    assert np.array_equal(load_superpixels(path), index)
    rgb = np.array([[[1, 2, 3]]], dtype=np.uint8)
    assert decode_superpixels(rgb)[0, 0] == 1 + (2 << 8) + (3 << 16)


def test_roi_is_union_of_features_at_threshold_half(tmp_path):
    sp, js = tmp_path / "x_superpixels.png", tmp_path / "x_features.json"
    grid = superpixel_grid()  # 12 blocks of 10 x 10 on a 40 x 30 image
    Image.fromarray(encode_superpixels(grid)).save(sp)
    features = _features(
        12,
        pigment_network=[(0, 1.0)],
        streaks=[(5, 0.5)],  # exactly the threshold: in
        milia_like_cyst=[(7, 0.49)],  # below: out
        negative_network=[(11, 1)],
    )
    js.write_text(json.dumps(features))
    roi = dermo_roi(sp, js)
    assert roi.shape == (30, 40) and roi.dtype == np.uint8
    assert np.array_equal(roi, np.isin(grid, [0, 5, 11]).astype(np.uint8))
    assert dermo_roi(sp, js, threshold=0.4).sum() == 4 * SP_BLOCK * SP_BLOCK


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({k: [0] * 12 for k in FEATURE_NAMES[:3]}), r"missing feature keys \['streaks'\]"),
        (json.dumps({**{k: [0] * 12 for k in FEATURE_NAMES}, "streaks": [0] * 11}), "differ in length"),
        (json.dumps({**{k: [0] * 12 for k in FEATURE_NAMES}, "streaks": [2] * 12}), "outside"),
        (json.dumps({**{k: [0] * 12 for k in FEATURE_NAMES}, "streaks": ["a"] * 12}), "finite numbers"),
    ],
)
def test_bad_features_json(tmp_path, content, message):
    path = tmp_path / "ISIC_0000000_features.json"
    path.write_text(content)
    with pytest.raises(DataError, match=rf"ISIC_0000000_features\.json: .*{message}"):
        load_features(path)


def test_superpixel_index_out_of_range(tmp_path):
    sp, js = tmp_path / "a_superpixels.png", tmp_path / "a_features.json"
    Image.fromarray(encode_superpixels(superpixel_grid())).save(sp)
    js.write_text(json.dumps(_features(10)))
    with pytest.raises(
        DataError, match=r"a_superpixels\.png: superpixel index 11 is out of range .* lists 10"
    ):
        dermo_roi(sp, js)


def _identity():
    """Keep geometry: uint8 -> float, masks -> {0, 1}; no crop or resize."""
    return v2.Compose(
        [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True), BinariseMasks()]
    )


def test_dataset_dermo_roi_matches_the_active_superpixel(isic2017_root):
    samples = isic2017(isic2017_root)
    dataset = LesionDataset(samples, _identity(), roi="dermo")
    grid = torch.from_numpy(superpixel_grid())
    for i in (0, 4):
        item = dataset[i]
        assert item["roi"].shape == (1, 30, 40) and item["roi"].dtype == torch.float32
        assert torch.equal(item["roi"][0], (grid == i).float())  # conftest activates superpixel i for image i
        assert item["has_mask"] and item["mask"].sum() == 30 * (i + 1)


def test_roi_dermo_needs_task2_files(isic2017_root):
    (isic2017_root / "ISIC-2017_Training_Part2_GroundTruth" / "ISIC_0000004_features.json").unlink()
    samples = isic2017(isic2017_root)
    assert samples[4].features_path is None and samples[4].superpixels_path is not None
    with pytest.raises(DataError, match=r"roi='dermo' needs .* 1 of 6 lack them: \['ISIC_0000004'\]"):
        LesionDataset(samples, _identity(), roi="dermo")
    LesionDataset(samples, _identity(), roi="lesion")  # other ROIs do not need Task 2 files
