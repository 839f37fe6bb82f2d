"""Data reliability: one decoder for every entry point, bombs in headers, .tif datasets, quoted predict CSV."""

from __future__ import annotations

import csv
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from attnmel import predict
from attnmel.data import (
    DataError,
    LesionDataset,
    PreprocessCache,
    Sample,
    eval_transform,
    image_size,
    isic2016,
    isic2017,
    load_mask,
    load_rgb,
    ph2,
)
from attnmel.data.dataset import read_sample
from attnmel.data.images import decode_jpegs, is_plain_jpeg

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 30, 40


# ------------------------------------------------------------------------------------------- pictures
def _colour_picture() -> tuple[np.ndarray, np.ndarray]:
    """(palette index (H, W), palette (48, 3)): 5 x 5 blocks of 48 colours; colour 0 (top-left) is white."""
    palette = np.random.default_rng(0).integers(0, 256, (48, 3)).astype(np.uint8)
    palette[0] = 255
    rows, cols = np.mgrid[0:H, 0:W]
    return ((rows // 5) * 8 + cols // 5).astype(np.uint8), palette


def _grey_picture() -> np.ndarray:
    """uint8 (H, W): every level from 0 to 255 appears somewhere; the top-left 5 x 5 block is white."""
    grey = (np.arange(H * W).reshape(H, W) * 255 // (H * W - 1)).astype(np.uint8)
    grey[:5, :5] = 255
    return grey


def _write_colour_variants(folder) -> tuple[np.ndarray, list]:
    """The colour picture as RGB PNG, palette PNG, palette + transparency, RGBA PNG and CMYK TIFF."""
    index, palette = _colour_picture()
    rgb = palette[index]  # (H, W, 3)
    paths = []
    Image.fromarray(rgb).save(path := folder / "rgb.png")
    paths.append(path)
    pal = Image.fromarray(index, "P")
    pal.putpalette(palette.reshape(-1).tolist())
    pal.save(path := folder / "palette.png")
    paths.append(path)
    hidden = palette.copy()
    hidden[0] = 0  # black, but transparent: composited over white it is white again
    pal_t = Image.fromarray(index, "P")
    pal_t.putpalette(hidden.reshape(-1).tolist())
    pal_t.save(path := folder / "palette_transparent.png", transparency=0)
    paths.append(path)
    rgba = np.dstack([rgb, np.full((H, W), 255, np.uint8)])
    rgba[:5, :5] = (0, 0, 0, 0)  # a transparent black corner
    Image.fromarray(rgba, "RGBA").save(path := folder / "rgba.png")
    paths.append(path)
    Image.fromarray(rgb).convert("CMYK").save(path := folder / "cmyk.tif")
    paths.append(path)
    return rgb, paths


def _write_grey_variants(folder) -> tuple[np.ndarray, list]:
    """The grey picture as L PNG, 16-bit PNG, big-endian 16-bit TIFF, 32-bit I TIFF, float TIFF and LA PNG."""
    grey = _grey_picture()
    paths = []
    Image.fromarray(grey).save(path := folder / "grey.png")
    paths.append(path)
    wide = grey.astype(np.uint16) * 257  # the same picture on the 16-bit scale (255 -> 65535)
    Image.fromarray(wide).save(path := folder / "grey16.png")
    paths.append(path)
    Image.frombytes("I;16B", (W, H), wide.astype(">u2").tobytes()).save(path := folder / "grey16b.tif")
    paths.append(path)
    Image.fromarray(wide.astype(np.int32)).save(path := folder / "grey_i.tif")
    paths.append(path)
    Image.fromarray((grey / 255.0).astype(np.float32)).save(path := folder / "grey_f.tif")
    paths.append(path)
    la = np.dstack([grey, np.full((H, W), 255, np.uint8)])
    la[:5, :5] = (0, 0)  # transparent black corner -> white
    Image.fromarray(la, "LA").save(path := folder / "grey_la.png")
    paths.append(path)
    return np.repeat(grey[..., None], 3, axis=2), paths


def _modes(paths) -> list[str]:
    modes = []
    for path in paths:
        with Image.open(path) as img:
            modes.append(img.mode)
    return modes


# ------------------------------------------------------------------------------------ one decoder
@pytest.mark.parametrize("picture", ["colour", "grey"])
def test_every_entry_point_decodes_each_mode_to_the_same_pixels(tmp_path, picture):
    folder = tmp_path / "in"
    folder.mkdir()
    writer = _write_colour_variants if picture == "colour" else _write_grey_variants
    expected, paths = writer(folder)
    if picture == "colour":
        assert _modes(paths) == ["RGB", "P", "P", "RGBA", "CMYK"]
    else:
        assert _modes(paths) == ["L", "I;16", "I;16B", "I", "F", "LA"]
    expected_chw = torch.from_numpy(expected).permute(2, 0, 1)  # (3, H, W)
    samples = [Sample(image_id=p.stem, image_path=p, label=i % 2) for i, p in enumerate(paths)]
    reference = Sample(image_id="reference", image_path=folder / "reference.png", label=0)
    Image.fromarray(expected).save(reference.image_path)

    transform = eval_transform(16, 20)
    plain = LesionDataset([reference, *samples], transform)
    cached = LesionDataset(
        [reference, *samples], transform, cache=PreprocessCache(tmp_path / "c1", resize=20)
    )
    filled_cache = PreprocessCache(tmp_path / "c2", resize=20)
    filled_cache.fill(samples)
    filled = LesionDataset([reference, *samples], transform, cache=filled_cache)
    want = plain[0]["image"]
    for i, (sample, path) in enumerate(zip(samples, paths, strict=True), start=1):
        np.testing.assert_array_equal(load_rgb(path), expected, err_msg=path.name)
        np.testing.assert_array_equal(predict.load_image_rgb(path), expected, err_msg=path.name)
        assert torch.equal(read_sample(sample)["image"].as_subclass(torch.Tensor), expected_chw), path.name
        for dataset in (plain, cached, filled):
            assert torch.equal(dataset[i]["image"], want), path.name
    assert filled_cache.misses == len(samples) and all(filled[i] for i in range(len(samples)))


def test_predict_and_training_share_one_decoder():
    assert predict.load_image_rgb is load_rgb


def test_sixteen_bit_grey_is_scaled_by_257_not_saturated(tmp_path):
    values = np.random.default_rng(1).integers(0, 65536, (H, W)).astype(np.uint16)
    path = tmp_path / "random16.png"
    Image.fromarray(values).save(path)
    out = load_rgb(path)
    want = np.rint(values / 257.0).astype(np.uint8)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    assert (out != 255).mean() > 0.9  # saturating at 255 would make ~99.6 % of it white
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], want)
    image = read_sample(Sample(image_id="random16", image_path=path, label=0))["image"]
    assert torch.equal(image.as_subclass(torch.Tensor), torch.from_numpy(want)[None].expand(3, H, W))


def test_partial_alpha_and_eight_bit_int_images(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = (200, 100, 0)
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "half.png")
    blend = [round((c * 128 + 255 * 127) / 255) for c in (200, 100, 0)]  # over white
    assert load_rgb(tmp_path / "half.png")[0, 0].tolist() == blend
    small = np.array([[0, 17], [128, 255]], np.int32)  # mode I, max <= 255: already on the 8-bit scale
    Image.fromarray(small).save(tmp_path / "small_i.tif")
    np.testing.assert_array_equal(load_rgb(tmp_path / "small_i.tif")[..., 1], small)


def test_sixteen_bit_masks_are_thresholded_at_half_their_range(tmp_path):
    mask = np.zeros((H, W), np.uint16)
    mask[:, :10] = 65535  # foreground
    mask[:, 10:20] = 30000  # below half of 65535: background (saturating to 8 bits made it foreground)
    mask[:, 20:25] = 1000  # faint: background
    Image.fromarray(mask).save(tmp_path / "mask16.png")
    want = np.zeros((H, W), np.uint8)
    want[:, :10] = 1
    np.testing.assert_array_equal(load_mask(tmp_path / "mask16.png"), want)
    Image.fromarray((want * 255).astype(np.uint16)).save(tmp_path / "mask16_255.png")  # 0/255 in 16 bits
    np.testing.assert_array_equal(load_mask(tmp_path / "mask16_255.png"), want)
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(tmp_path / "image.png")
    sample = Sample(
        image_id="image", image_path=tmp_path / "image.png", label=1, lesion_mask_path=tmp_path / "mask16.png"
    )
    assert torch.equal(read_sample(sample)["mask"][0].as_subclass(torch.Tensor), torch.from_numpy(want))


def test_jpegs_decode_alike_on_every_path(tmp_path):
    index, palette = _colour_picture()
    rgb = palette[index]
    Image.fromarray(rgb).save(tmp_path / "colour.jpg", quality=95)
    Image.fromarray(_grey_picture()).save(tmp_path / "grey.jpg", quality=95)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert [is_plain_jpeg(tmp_path / n) for n in ("colour.jpg", "grey.jpg", "cmyk.jpg")] == [
        True,
        True,
        False,
    ]
    assert not is_plain_jpeg(tmp_path / "missing.jpg")
    plain = [tmp_path / "colour.jpg", tmp_path / "grey.jpg"]
    for path, tensor in zip(plain, decode_jpegs(plain), strict=True):  # torchvision agrees with load_rgb
        difference = (tensor.permute(1, 2, 0).int() - torch.from_numpy(load_rgb(path)).int()).abs()
        assert difference.float().mean() < 1.0 and difference.max() <= 8, (path.name, difference.max())
    cmyk = load_rgb(tmp_path / "cmyk.jpg")
    assert np.abs(cmyk.astype(int) - rgb.astype(int)).mean() < 8  # lossy, but the right colours
    samples = [Sample(image_id=p.stem, image_path=p, label=0) for p in [*plain, tmp_path / "cmyk.jpg"]]
    filled = PreprocessCache(tmp_path / "filled", resize=20)
    counts = filled.fill(samples)
    assert (counts["decoded"], counts["other"]) == (2, 1)  # the CMYK JPEG takes load_rgb's way
    fresh = PreprocessCache(tmp_path / "fresh", resize=20)
    assert torch.equal(filled.load(samples[2])["image"], fresh.load(samples[2])["image"])


# --------------------------------------------------------------------------------- decompression bombs
def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose IHDR claims ``width`` x ``height`` 8-bit grey pixels, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_verify_reports_a_crafted_bomb_header_as_a_data_error(isic2017_root):
    mask = isic2017_root / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000002_segmentation.png"
    _png_header_only(mask, 100_000, 100_000)  # 10^10 pixels: PIL raises DecompressionBombError on open
    assert len(isic2017(isic2017_root)) == 6  # header checks are opt-in
    with pytest.raises(DataError, match=r"ISIC_0000002_segmentation\.png: .*decompression bomb"):
        isic2017(isic2017_root, verify=True)
    with pytest.raises(DataError, match=r"ISIC_0000002_segmentation\.png: .*decompression bomb"):
        image_size(mask)


@pytest.mark.parametrize(
    "limit", [500, 1000]
)  # 40 x 30 = 1200 pixels: over twice 500 (error), over 1000 (warning)
def test_verify_turns_pil_bomb_errors_and_warnings_into_data_errors(isic2017_root, monkeypatch, limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(DataError, match=r"ISIC_0000000\.jpg: refused as a possible decompression bomb"):
        isic2017(isic2017_root, verify=True)
    with pytest.raises(DataError, match=r"ISIC_0000000\.jpg: refused as a possible decompression bomb"):
        load_rgb(isic2017_root / "ISIC-2017_Training_Data" / "ISIC_0000000.jpg")


def test_image_size_of_a_missing_or_garbage_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"absent\.png: image file not found"):
        image_size(tmp_path / "absent.png")
    (tmp_path / "garbage.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"garbage\.png: not a readable image"):
        image_size(tmp_path / "garbage.png")


# ---------------------------------------------------------------------------------------- .tif datasets
def _to(path, suffix: str):
    """Re-save an image under another suffix (same pixels for lossless formats) and remove the original."""
    target = path.with_suffix(suffix)
    with Image.open(path) as img:
        img.save(target, format={".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}.get(suffix.lower()))
    path.unlink()
    return target


def test_tif_and_bmp_images_and_masks_are_read(isic2017_root):
    data = isic2017_root / "ISIC-2017_Training_Data"
    masks = isic2017_root / "ISIC-2017_Training_Part1_GroundTruth"
    tif = _to(data / "ISIC_0000000.jpg", ".tif")
    upper = _to(data / "ISIC_0000001.jpg", ".TIFF")
    bmp = _to(data / "ISIC_0000002.jpg", ".bmp")
    mask_tif = _to(masks / "ISIC_0000003_segmentation.png", ".tif")
    superpixels_tif = _to(data / "ISIC_0000004_superpixels.png", ".tif")
    samples = isic2017(isic2017_root, verify=True)
    assert [s.image_path for s in samples[:3]] == [tif, upper, bmp]
    assert samples[3].lesion_mask_path == mask_tif and samples[4].superpixels_path == superpixels_tif
    assert samples.ids == [f"ISIC_{i:07d}" for i in range(6)]
    dataset = LesionDataset(samples, eval_transform(16, 20), roi="dermo")
    assert all(dataset[i]["image"].shape == (3, 16, 16) for i in range(len(samples)))
    assert dataset[3]["has_mask"]


def test_isic2016_and_ph2_read_tif_files(isic2016_root, ph2_root):
    data = isic2016_root / "ISBI2016_ISIC_Part3_Test_Data"
    tif = _to(data / "ISIC_0000001.jpg", ".tif")
    mask = _to(
        isic2016_root / "ISBI2016_ISIC_Part1_Test_GroundTruth" / "ISIC_0000001_Segmentation.png", ".tiff"
    )
    sample = isic2016(isic2016_root, "Test")[1]
    assert (sample.image_path, sample.lesion_mask_path) == (tif, mask)
    folder = ph2_root / "PH2 Dataset images" / "IMD004"
    image = _to(folder / "IMD004_Dermoscopic_Image" / "IMD004.bmp", ".tif")
    lesion = _to(folder / "IMD004_lesion" / "IMD004_lesion.bmp", ".png")
    sample = ph2(ph2_root, verify=True)[1]
    assert (sample.image_path, sample.lesion_mask_path) == (image, lesion)


def test_an_image_with_an_unread_suffix_is_named(isic2017_root):
    data = isic2017_root / "ISIC-2017_Training_Data"
    (data / "ISIC_0000003.jpg").rename(data / "ISIC_0000003.gif")
    with pytest.raises(
        DataError,
        match=r"not found .*ISIC_0000003; found ISIC_0000003\.gif but only \.jpg/.*\.tif/\.tiff files",
    ):
        isic2017(isic2017_root)
    with pytest.warns(UserWarning, match="skipped 1 sample"):
        samples = isic2017(isic2017_root, missing="skip")
    assert samples.skipped[0][0] == "ISIC_0000003" and "found ISIC_0000003.gif" in samples.skipped[0][1]


# ------------------------------------------------------------------------------------- predict CSV
def test_predictions_csv_quotes_paths_with_quotes_and_commas(checkpoint, tmp_path):
    folder = tmp_path / 'odd "name", here'
    folder.mkdir()
    good = folder / 'lesion "a", 1.png'
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(good)
    bad = folder / 'broken "b".jpg'
    bad.write_bytes(b"not an image")
    results = predict.predict_images(checkpoint, [good, bad], tmp_path / "out", device="cpu", overlays=False)
    with (tmp_path / "out" / "predictions.csv").open(newline="") as handle:
        assert handle.readline() == "path,melanoma,error\n"
        handle.seek(0)
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == [str(good), str(bad)]
    assert float(rows[0]["melanoma"]) == results[0].probability and rows[0]["error"] == ""
    assert rows[1]["melanoma"] == "" and rows[1]["error"] == results[1].error
    assert str(bad) in rows[1]["error"] and "not a readable image" in rows[1]["error"]
