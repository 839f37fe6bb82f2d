"""attnmel predict: odd image modes work, hostile files fail one line each and the rest still runs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from attnmel.cli import main
from attnmel.predict import load_image_rgb, predict_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(rgb).save(d / "plain.jpg")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:5, :5, 3] = 0  # a transparent corner
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    Image.fromarray(rgb).convert("L").save(d / "gray.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65536, (40, 52))).astype(np.uint16)).save(d / "gray16.png")
    (d / "notes.jpg").write_text("not an image")
    data = (d / "plain.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.new("L", (400, 400)).save(d / "bomb.png")  # over the lowered MAX_IMAGE_PIXELS below
    return d


def test_modes_are_converted_properly(images) -> None:
    gray16 = np.asarray(Image.open(images / "gray16.png")).astype(np.float64)
    out = load_image_rgb(images / "gray16.png")
    assert out.dtype == np.uint8 and out.shape == (40, 52, 3)
    np.testing.assert_array_equal(out[..., 0], np.clip(np.rint(gray16 / 257), 0, 255).astype(np.uint8))
    rgba = load_image_rgb(images / "rgba.png")
    assert (rgba[:5, :5] == 255).all()  # transparent pixels composited over white
    assert load_image_rgb(images / "cmyk.jpg").shape == (40, 52, 3)
    gray = load_image_rgb(images / "gray.png")
    assert (gray[..., 0] == gray[..., 2]).all()


def test_predict_good_and_bad_files(checkpoint, images, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # bomb.png claims 160,000 pixels
    names = [
        "plain.jpg",
        "notes.jpg",
        "rgba.png",
        "gray.png",
        "truncated.jpg",
        "cmyk.jpg",
        "gray16.png",
        "bomb.png",
    ]
    results = predict_images(checkpoint, [images / n for n in names], tmp_path / "out", device="cpu")
    monkeypatch.undo()  # the overlays themselves are larger than the lowered limit
    by_name = {r.path.name: r for r in results}
    for good in ("plain.jpg", "rgba.png", "gray.png", "cmyk.jpg", "gray16.png"):
        r = by_name[good]
        assert r.ok and 0.0 <= r.probability <= 1.0
        assert r.overlay.is_file() and Image.open(r.overlay).size[0] > 100
    for bad, needle in (
        ("notes.jpg", "not a readable image"),
        ("truncated.jpg", "truncated"),
        ("bomb.png", "decompression bomb"),
    ):
        r = by_name[bad]
        assert not r.ok and r.probability is None and needle in r.error and "\n" not in r.error
        assert str(images / bad) in r.error
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert [r["path"].split("/")[-1] for r in rows] == names
    assert sum(bool(r["error"]) for r in rows) == 3


def test_predict_command_exit_codes(checkpoint, images, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    ok = [str(images / "plain.jpg"), str(images / "gray.png")]
    assert (
        main(["predict", "--checkpoint", str(checkpoint), "--out-dir", str(out), "--device", "cpu", *ok]) == 0
    )
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    argv = [
        "predict",
        "--checkpoint",
        str(checkpoint),
        "--out-dir",
        str(out),
        "--device",
        "cpu",
        str(images / "notes.jpg"),
        str(images / "plain.jpg"),
    ]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "plain.jpg" in captured.out  # the good image was still processed
    err_lines = captured.err.strip().splitlines()
    assert err_lines[0].startswith("attnmel predict: error:") and "notes.jpg" in err_lines[0]
    assert "Traceback" not in captured.err


def test_inputs_sharing_a_file_name_get_distinct_image_ids(checkpoint, images, tmp_path, capsys) -> None:
    other = tmp_path / "other"
    other.mkdir()
    Image.open(images / "gray.png").save(other / "plain.png")  # same stem as in/plain.jpg, another image
    out = tmp_path / "o"
    argv = ["predict", "--checkpoint", str(checkpoint), "--out-dir", str(out), "--device", "cpu"]
    assert main([*argv, str(images / "plain.jpg"), str(other / "plain.png")]) == 0
    err = capsys.readouterr().err
    assert f"{other / 'plain.png'} -> plain_2" in err
    isic = list(csv.DictReader((out / "predictions_isic.csv").open()))
    assert [r["image_id"] for r in isic] == ["plain", "plain_2"]
    assert (out / "plain_attention.png").is_file() and (out / "plain_2_attention.png").is_file()
    paths = [r["path"] for r in csv.DictReader((out / "predictions.csv").open())]
    assert paths == [str(images / "plain.jpg"), str(other / "plain.png")]
