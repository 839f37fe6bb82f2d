"""Readers of the official ISIC 2017 / ISIC 2016 / PH2 layouts on tiny generated folders (see conftest.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from attnmel.data import (
    DataError,
    Sample,
    SampleList,
    isic2016,
    isic2017,
    isic2017_splits,
    load_mask,
    load_rgb,
    ph2,
)


# ----------------------------------------------------------------------------------------------- ISIC 2017
def test_isic2017_reads_labels_and_pairs_every_file_by_id(isic2017_root):
    samples = isic2017(isic2017_root, "Training")
    assert isinstance(samples, SampleList) and (samples.name, samples.split) == ("isic2017", "Training")
    assert samples.ids == [f"ISIC_{i:07d}" for i in range(6)]
    assert samples.labels == [0, 1, 0, 1, 0, 0]  # melanoma = 1; the SK row (index 2) is 0
    assert samples.class_counts() == {0: 4, 1: 2} and samples.n_skipped == 0
    for i, s in enumerate(samples):
        assert s.image_path.name == f"{s.image_id}.jpg" and s.image_path.is_absolute()
        assert s.lesion_mask_path.name == f"{s.image_id}_segmentation.png"
        assert s.superpixels_path.name == f"{s.image_id}_superpixels.png"
        assert s.features_path.name == f"{s.image_id}_features.json"
        assert load_mask(s.lesion_mask_path).sum(axis=0).astype(bool).sum() == i + 1  # encodes its index
    assert samples[2].meta["seborrheic_keratosis"] == 1 and samples[1].meta["seborrheic_keratosis"] == 0
    assert samples[3].meta["age_approximate"] == 43 and samples[3].meta["sex"] == "female"


@pytest.mark.parametrize(
    ("crlf", "final_newline", "fmt"),
    [(True, True, "{:.1f}"), (False, True, "{:.1f}"), (True, False, "{:.1f}"), (False, False, "{:d}")],
)
def test_isic2017_line_ends_final_newline_and_number_formats(
    tmp_path, make_isic2017_layout, crlf, final_newline, fmt
):
    labels = ((0, 0), (1, 0), (0, 1))
    root = make_isic2017_layout(tmp_path, labels=labels, crlf=crlf, final_newline=final_newline, fmt=fmt)
    samples = isic2017(root)
    assert samples.labels == [0, 1, 0]
    assert [s.meta["seborrheic_keratosis"] for s in samples] == [0, 0, 1]


def test_a_missing_mask_does_not_shift_later_pairs(isic2017_root):
    (isic2017_root / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000002_segmentation.png").unlink()
    samples = isic2017(isic2017_root, "Training")
    assert samples[2].lesion_mask_path is None and samples.meta["n_without_mask"] == 1
    for i in (3, 4, 5):  # each later mask is still the one drawn for its own image
        mask = load_mask(samples[i].lesion_mask_path)
        assert mask.sum(axis=0).astype(bool).sum() == i + 1
        assert abs(int(load_rgb(samples[i].image_path)[..., 0].mean()) - 10 * i) <= 2


def test_isic2017_extra_split_and_splits_listing(isic2017_root, make_isic2017_layout):
    make_isic2017_layout(isic2017_root, "Test_shift", labels=((1, 0), (0, 0)), masks=False, dermo=False)
    assert isic2017_splits(isic2017_root) == ["Training", "Validation", "Test_shift"]
    shift = isic2017(isic2017_root, "Test_shift")
    assert shift.labels == [1, 0] and shift.split == "Test_shift"
    assert all(s.lesion_mask_path is None and not s.has_dermo for s in shift)
    with pytest.raises(
        DataError, match=r"no split 'Test_v2'.*splits found: \['Training', 'Validation', 'Test_shift'\]"
    ):
        isic2017(isic2017_root, "Test_v2")


def test_validation_split_uses_lf_file(isic2017_root):
    val = isic2017(isic2017_root, "Validation")
    assert val.labels == [1, 0, 0, 0] and len(val) == 4


# ----------------------------------------------------------------------------------------------- ISIC 2016
def test_isic2016_official_test_split(isic2016_root):
    test = isic2016(isic2016_root, "Test")
    assert test.labels == [0, 1, 0, 0] and "validation_split" not in test.meta
    assert all(s.lesion_mask_path.name == f"{s.image_id}_Segmentation.png" for s in test)  # capital S


@pytest.mark.parametrize("fmt", ["{:d}", "{:.1f}"])
def test_isic2016_accepts_integer_and_float_labels(tmp_path, make_isic2016_layout, fmt):
    root = make_isic2016_layout(tmp_path, "Test", (1, 0, 1), words=False)
    csv = root / "ISBI2016_ISIC_Part3_Test_GroundTruth.csv"
    csv.write_bytes(b"\r\n".join(f"ISIC_{i:07d},{fmt.format(y)}".encode() for i, y in enumerate((1, 0, 1))))
    assert isic2016(root, "Test").labels == [1, 0, 1]


def test_isic2016_validation_is_stratified_seeded_and_recorded(tmp_path, make_isic2016_layout):
    labels = [1] * 10 + [0] * 30
    root = make_isic2016_layout(tmp_path, labels=labels, masks=False)
    train = isic2016(root, "Training", val_fraction=0.2, seed=0)
    val = isic2016(root, "Validation", val_fraction=0.2, seed=0)
    assert set(train.ids).isdisjoint(val.ids) and len(train) + len(val) == 40
    assert val.class_counts() == {0: 6, 1: 2} and train.class_counts() == {0: 24, 1: 8}
    record = train.meta["validation_split"]
    assert record == val.meta["validation_split"]
    assert record["Validation"] == val.ids and record["Training"] == train.ids and record["seed"] == 0
    assert isic2016(root, "Validation", seed=0).ids == val.ids  # deterministic
    assert isic2016(root, "Validation", seed=1).ids != val.ids  # the seed matters
    written = json.loads(val.to_json(tmp_path / "run" / "split_isic2016_val.json").read_text())
    assert [s["image_id"] for s in written["samples"]] == val.ids
    assert written["meta"]["validation_split"]["Validation"] == val.ids
    assert len(isic2016(root, "Training", val_fraction=0.0)) == 40
    with pytest.raises(ValueError, match="Validation"):
        isic2016(root, "Validation", val_fraction=0.0)
    with pytest.raises(ValueError, match="split"):
        isic2016(root, "Test_v2")


# ------------------------------------------------------------------------------------------------------ PH2
def test_ph2_reads_table_skips_legend_and_pairs_masks(ph2_root):
    samples = ph2(ph2_root)
    assert samples.ids == ["IMD003", "IMD004", "IMD005", "IMD006", "IMD007"]
    assert samples.labels == [0, 0, 1, 0, 1]  # Clinical Diagnosis 2 = melanoma
    assert [s.meta["clinical_diagnosis"] for s in samples] == [0, 1, 2, 0, 2]
    assert samples[2].meta["histological_diagnosis"] == "Melanoma"
    for i, s in enumerate(samples):
        assert s.image_path.suffix == ".bmp" and s.lesion_mask_path.name == f"{s.image_id}_lesion.bmp"
        assert load_mask(s.lesion_mask_path).sum(axis=0).astype(bool).sum() == i + 1


def test_ph2_table_with_double_bars_everywhere(ph2_root):
    table = ph2_root / "PH2_dataset.txt"
    table.write_text(table.read_text().replace(" | ", " || "))
    assert ph2(ph2_root).labels == [0, 0, 1, 0, 1]


# -------------------------------------------------------------------------------------------------- samples
def test_sample_is_frozen_and_sample_list_behaves_like_a_sequence(isic2017_root):
    samples = isic2017(isic2017_root)
    with pytest.raises(dataclasses.FrozenInstanceError):
        samples[0].label = 1  # type: ignore[misc]
    head = samples[:3]
    assert isinstance(head, SampleList) and head.ids == samples.ids[:3] and head.name == "isic2017"
    assert samples.subset(["ISIC_0000003", "ISIC_0000001"]).ids == ["ISIC_0000001", "ISIC_0000003"]
    with pytest.raises(DataError, match="unknown"):
        samples.subset(["nope"])
    with pytest.raises(DataError, match="label"):
        Sample("x", samples[0].image_path, 2)
    assert "positives=2" in repr(samples) and hash(samples[0]) == hash(isic2017(isic2017_root)[0])
    assert np.array_equal(np.array(samples.labels), np.array([0, 1, 0, 1, 0, 0]))


def test_reads_the_synthetic_set_with_its_shift_split_and_artifact_flags(tmp_path):
    from attnmel.data import LesionDataset, make_synthetic, train_transform

    root = tmp_path / "synthetic"
    make_synthetic(root, n=24, size=32, seed=0, artifact_bias=1.0)
    assert isic2017_splits(root) == ["Training", "Validation", "Test_v2", "Test_shift"]
    train = isic2017(root, "Training", verify=True)
    assert all(s.meta["artifact"] == s.label for s in train)  # bias 1: the artifact marks every melanoma
    assert all(s.has_dermo and s.lesion_mask_path is not None for s in train)
    item = LesionDataset(train, train_transform(24, 28), roi="dermo")[0]
    assert item["roi"].shape == (1, 24, 24) and item["has_mask"]
    assert len(isic2017(root, "Test_shift")) > 0
