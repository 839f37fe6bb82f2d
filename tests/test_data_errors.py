"""Bad input gives a DataError naming the file and the problem (readers, image decoding, masks, roots)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from attnmel.data import (
    DataError,
    LesionDataset,
    eval_transform,
    isic2016,
    isic2017,
    load_mask,
    load_rgb,
    ph2,
)
from attnmel.data import images as images_module


def _csv(root, split="Training"):
    return root / f"ISIC-2017_{split}_Part3_GroundTruth.csv"


def _data(root, split="Training"):
    return root / f"ISIC-2017_{split}_Data"


# ------------------------------------------------------------------------------------- missing / extra files
def test_csv_id_without_image_errors_or_is_skipped_and_counted(isic2017_root):
    (_data(isic2017_root) / "ISIC_0000003.jpg").unlink()
    with pytest.raises(
        DataError, match=r"ISIC-2017_Training_Part3_GroundTruth\.csv.*not found.*ISIC_0000003"
    ):
        isic2017(isic2017_root)
    with pytest.warns(UserWarning, match="skipped 1 sample"):
        samples = isic2017(isic2017_root, missing="skip")
    assert samples.n_skipped == 1 and "ISIC_0000003" not in samples.ids and len(samples) == 5
    assert samples.skipped[0][0] == "ISIC_0000003"


def test_image_without_csv_row_errors_or_is_ignored(isic2017_root):
    Image.new("RGB", (40, 30)).save(_data(isic2017_root) / "ISIC_0099999.jpg")
    with pytest.raises(
        DataError, match=r"ISIC-2017_Training_Data.*no row in .*GroundTruth\.csv.*ISIC_0099999"
    ):
        isic2017(isic2017_root)
    with pytest.warns(UserWarning, match="ISIC_0099999"):
        samples = isic2017(isic2017_root, missing="skip")
    assert len(samples) == 6 and samples.meta["n_unlabelled_images"] == 1


def test_ph2_row_without_image_and_image_folder_without_row(ph2_root):
    image = ph2_root / "PH2 Dataset images" / "IMD005" / "IMD005_Dermoscopic_Image" / "IMD005.bmp"
    image.unlink()
    with pytest.raises(DataError, match=r"PH2_dataset\.txt.*IMD005"):
        ph2(ph2_root)
    with pytest.warns(UserWarning):
        assert ph2(ph2_root, missing="skip").n_skipped == 1


def test_missing_argument_is_checked(isic2017_root):
    with pytest.raises(ValueError, match="missing"):
        isic2017(isic2017_root, missing="ignore")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- table contents
def _edit(path, old, new):
    text = path.read_bytes().decode()
    assert old in text
    path.write_bytes(text.replace(old, new, 1).encode())


def test_duplicate_ids(isic2017_root, isic2016_root, ph2_root):
    _edit(_csv(isic2017_root), "ISIC_0000004,", "ISIC_0000001,")
    with pytest.raises(
        DataError, match=r"GroundTruth\.csv: duplicate image id 'ISIC_0000001' on lines 3 and 6"
    ):
        isic2017(isic2017_root)
    _edit(isic2016_root / "ISBI2016_ISIC_Part3_Test_GroundTruth.csv", "ISIC_0000002,", "ISIC_0000000,")
    with pytest.raises(DataError, match="duplicate image id 'ISIC_0000000'"):
        isic2016(isic2016_root, "Test")
    _edit(ph2_root / "PH2_dataset.txt", "|| IMD004 ||", "|| IMD003 ||")
    with pytest.raises(DataError, match=r"PH2_dataset\.txt: duplicate image id 'IMD003'"):
        ph2(ph2_root)


def test_duplicate_image_files_for_one_id(isic2017_root):
    Image.new("RGB", (40, 30)).save(_data(isic2017_root) / "ISIC_0000001.png")
    with pytest.raises(DataError, match="duplicate image id 'ISIC_0000001'"):
        isic2017(isic2017_root)


@pytest.mark.parametrize("bad", ["0.5", "yes", "", "2.0"])
def test_isic2017_bad_label(isic2017_root, bad):
    _edit(_csv(isic2017_root), "ISIC_0000001,1.0,", f"ISIC_0000001,{bad},")
    with pytest.raises(
        DataError, match=rf"GroundTruth\.csv: line 3: melanoma for ISIC_0000001 is '{re.escape(bad)}'"
    ):
        isic2017(isic2017_root)


def test_isic2017_both_classes_and_wrong_header(isic2017_root):
    _edit(_csv(isic2017_root), "ISIC_0000001,1.0,0.0", "ISIC_0000001,1.0,1.0")
    with pytest.raises(DataError, match="both melanoma and seborrheic keratosis"):
        isic2017(isic2017_root)
    _csv(isic2017_root).write_text("id,label\r\nISIC_0000000,0\r\n")
    with pytest.raises(DataError, match="expected a header with image_id and melanoma"):
        isic2017(isic2017_root)
    _csv(isic2017_root).write_text("")
    with pytest.raises(DataError, match="empty file"):
        isic2017(isic2017_root)


def test_isic2017_row_with_wrong_field_count(isic2017_root):
    _edit(_csv(isic2017_root), "ISIC_0000002,0.0,1.0", "ISIC_0000002,0.0")
    with pytest.raises(DataError, match="line 4: expected 3 fields, got 2"):
        isic2017(isic2017_root)


@pytest.mark.parametrize("bad", ["maybe", "0.3", "Malignant!"])
def test_isic2016_bad_label(isic2016_root, bad):
    _edit(
        isic2016_root / "ISBI2016_ISIC_Part3_Training_GroundTruth.csv",
        "ISIC_0000001,malignant",
        f"ISIC_0000001,{bad}",
    )
    with pytest.raises(
        DataError, match=rf"Training_GroundTruth\.csv: line 2: label for ISIC_0000001 is '{re.escape(bad)}'"
    ):
        isic2016(isic2016_root, "Training")


def test_ph2_bad_diagnosis_and_missing_header(ph2_root):
    table = ph2_root / "PH2_dataset.txt"
    original = table.read_text()
    table.write_text(original.replace("|| IMD004 ||  || 1 ||", "|| IMD004 ||  || 3 ||"))
    with pytest.raises(DataError, match=r"PH2_dataset\.txt: line 3: Clinical Diagnosis of IMD004 is '3'"):
        ph2(ph2_root)
    table.write_text("\n".join(original.splitlines()[1:]))
    with pytest.raises(DataError, match="no header"):
        ph2(ph2_root)


# ------------------------------------------------------------------------------------------------ roots
def test_nonexistent_empty_and_wrong_roots(tmp_path, isic2016_root):
    with pytest.raises(DataError, match="does not exist"):
        isic2017(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError,
        match=r"not an ISIC 2017 folder: expected ISIC-2017_Training_Part3_GroundTruth\.csv "
        r"and ISIC-2017_Training_Data/; the folder is empty",
    ):
        isic2017(tmp_path / "empty")
    with pytest.raises(DataError, match=r"not an ISIC 2017 folder.*holds ISBI2016_ISIC"):
        isic2017(isic2016_root)
    with pytest.raises(
        DataError,
        match=r"not an ISIC 2016 folder for split 'Test': missing "
        r"ISBI2016_ISIC_Part3_Test_GroundTruth\.csv, ISBI2016_ISIC_Part3_Test_Data/",
    ):
        isic2016(tmp_path / "empty", "Test")
    with pytest.raises(DataError, match=r"not a PH2 folder: missing PH2_dataset\.txt, PH2 Dataset images/"):
        ph2(tmp_path / "empty")


def test_parent_folder_gets_a_hint(isic2017_root, ph2_root):
    with pytest.raises(DataError, match=r"did you mean .*isic2017\?"):
        isic2017(isic2017_root.parent)
    with pytest.raises(DataError, match=r"did you mean .*PH2Dataset\?"):
        ph2(ph2_root.parent)


def test_missing_image_folder(isic2017_root):
    for path in _data(isic2017_root).iterdir():
        path.unlink()
    _data(isic2017_root).rmdir()
    with pytest.raises(
        DataError, match=r"image folder ISIC-2017_Training_Data/ for split 'Training' is missing"
    ):
        isic2017(isic2017_root)


# --------------------------------------------------------------------------------------------- images
def test_corrupt_and_truncated_images(tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(DataError, match=r"garbage\.jpg: not a readable image"):
        load_rgb(garbage)
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated\.jpg: corrupt or truncated image"):
        load_rgb(truncated)
    with pytest.raises(DataError, match=r"absent\.png: image file not found"):
        load_mask(tmp_path / "absent.png")
    assert load_rgb(good).shape == (64, 64, 3)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(images_module, "MAX_PIXELS", 5000)
    with pytest.raises(DataError, match=r"big\.png: image claims 100x100 = 10000 pixels.*decompression bomb"):
        load_rgb(path)


def test_corrupt_image_in_a_dataset_names_the_file(isic2017_root):
    (_data(isic2017_root) / "ISIC_0000001.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    dataset = LesionDataset(isic2017(isic2017_root), eval_transform(16, 20))
    with pytest.raises(DataError, match=r"ISIC_0000001\.jpg"):
        dataset[1]


def test_mask_size_differs_from_image(isic2017_root):
    mask = isic2017_root / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000002_segmentation.png"
    Image.new("L", (41, 30)).save(mask)
    samples = isic2017(isic2017_root)  # header checks are opt-in
    with pytest.raises(
        DataError, match=r"ISIC_0000002_segmentation\.png: mask size 41x30 differs from image .* 40x30"
    ):
        LesionDataset(samples, eval_transform(16, 20))[2]
    with pytest.raises(DataError, match=r"ISIC_0000002_segmentation\.png: size \(41, 30\) differs"):
        isic2017(isic2017_root, verify=True)
