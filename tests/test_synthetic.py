"""The synthetic dermoscopy set: ISIC 2017 layout and formats, determinism, the artifact protocol, class cues."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import attnmel.data.synthetic as synthetic
from attnmel.data import dermo_roi, isic2017
from attnmel.data.synthetic import FEATURES, ID_START, MANIFEST, SPLITS, make_synthetic, render

SIZE = 64


@pytest.fixture(scope="module")
def biased(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synthetic.SyntheticSummary]:
    """A small set whose training artifact is perfectly correlated with melanoma."""
    root = tmp_path_factory.mktemp("synth") / "biased"
    return root, make_synthetic(root, n=30, size=SIZE, seed=3, artifact_bias=1.0)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def decode_superpixels(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)


def load_mask(path: Path) -> np.ndarray:
    image = Image.open(path)
    assert image.mode == "L", path
    values = np.asarray(image)
    assert set(np.unique(values)) <= {0, 255}, path
    return values == 255


def test_summary_counts(biased):
    root, summary = biased
    assert summary.root == root
    assert summary.counts == {"Training": 21, "Validation": 3, "Test_v2": 6, "Test_shift": 6}
    assert summary.n_melanoma == {"Training": 6, "Validation": 1, "Test_v2": 2, "Test_shift": 2}
    assert summary.seconds > 0
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["seed"] == 3 and manifest["artifact_bias"] == 1.0 and manifest["counts"] == summary.counts
    assert not list(root.parent.glob(".biased.*")), "staging folder left behind"


def test_layout_and_file_formats(biased):
    root, summary = biased
    all_ids = []
    for split in SPLITS:
        table = root / f"ISIC-2017_{split}_Part3_GroundTruth.csv"
        raw = table.read_bytes()
        assert raw.startswith(b"image_id,melanoma,seborrheic_keratosis\r\n")
        assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
        rows = read_csv(table)
        assert len(rows) == summary.counts[split]
        for row in rows:
            assert row["melanoma"] in ("0.0", "1.0") and row["seborrheic_keratosis"] in ("0.0", "1.0")
            assert not (row["melanoma"] == "1.0" and row["seborrheic_keratosis"] == "1.0")
        assert sum(row["melanoma"] == "1.0" for row in rows) == summary.n_melanoma[split]
        artifacts = root / f"ISIC-2017_{split}_artifacts.csv"
        assert artifacts.read_bytes().startswith(b"image_id,artifact\r\n")
        assert [r["image_id"] for r in read_csv(artifacts)] == [r["image_id"] for r in rows]
        for row in rows:
            image_id = row["image_id"]
            all_ids.append(image_id)
            image = Image.open(root / f"ISIC-2017_{split}_Data" / f"{image_id}.jpg")
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (SIZE, SIZE)
            lesion = load_mask(root / f"ISIC-2017_{split}_Part1_GroundTruth" / f"{image_id}_segmentation.png")
            artifact = load_mask(root / f"ISIC-2017_{split}_Artifact_Masks" / f"{image_id}_artifact.png")
            assert lesion.shape == artifact.shape == (SIZE, SIZE)
            index = decode_superpixels(root / f"ISIC-2017_{split}_Data" / f"{image_id}_superpixels.png")
            assert index.shape == (SIZE, SIZE)
            features = json.loads(
                (root / f"ISIC-2017_{split}_Part2_GroundTruth" / f"{image_id}_features.json").read_text()
            )
            assert sorted(features) == sorted(FEATURES)
            n_superpixels = index.max() + 1
            assert np.array_equal(np.unique(index), np.arange(n_superpixels)), "superpixel indices have gaps"
            for values in features.values():
                assert len(values) == n_superpixels and set(values) <= {0, 1}
    assert all_ids[0] == f"ISIC_{ID_START}" and len(set(all_ids)) == len(all_ids)
    assert all(len(i) == len("ISIC_0000000") and int(i[5:]) >= ID_START for i in all_ids)


def test_artifact_follows_bias_in_training_and_is_independent_in_test_shift(biased):
    root, _ = biased
    for split in ("Training", "Validation", "Test_v2"):  # bias 1: artifact if and only if melanoma
        labels = {
            r["image_id"]: r["melanoma"] == "1.0"
            for r in read_csv(root / f"ISIC-2017_{split}_Part3_GroundTruth.csv")
        }
        artifact = {
            r["image_id"]: r["artifact"] == "1" for r in read_csv(root / f"ISIC-2017_{split}_artifacts.csv")
        }
        assert artifact == labels, split
    labels = {
        r["image_id"]: r["melanoma"] == "1.0"
        for r in read_csv(root / "ISIC-2017_Test_shift_Part3_GroundTruth.csv")
    }
    artifact = {
        r["image_id"]: r["artifact"] == "1" for r in read_csv(root / "ISIC-2017_Test_shift_artifacts.csv")
    }
    for cls in (True, False):  # half of each class, whatever the bias
        members = [i for i in labels if labels[i] == cls]
        assert sum(artifact[i] for i in members) == round(len(members) / 2)
    # the mask is non-empty exactly when the CSV says so, and never touches the lesion
    for split in SPLITS:
        for row in read_csv(root / f"ISIC-2017_{split}_artifacts.csv"):
            mask = load_mask(root / f"ISIC-2017_{split}_Artifact_Masks" / f"{row['image_id']}_artifact.png")
            lesion = load_mask(
                root / f"ISIC-2017_{split}_Part1_GroundTruth" / f"{row['image_id']}_segmentation.png"
            )
            assert mask.any() == (row["artifact"] == "1")
            assert not (mask & lesion).any()


@pytest.mark.parametrize("bias", [0.0, 0.5])
def test_artifact_counts_per_class(bias):
    """P(artifact | melanoma) = 0.5 + b/2, P(artifact | benign) = 0.5 - b/2, as exact counts per class."""
    counts = {"Training": 300, "Validation": 40, "Test_v2": 60, "Test_shift": 60}
    items = synthetic._plan(counts, seed=0, artifact_bias=bias, melanoma_fraction=0.3)
    train = [it for it in items if it.split == "Training"]
    mel = [it for it in train if it.kind == "melanoma"]
    ben = [it for it in train if it.kind != "melanoma"]
    assert len(mel) == 90
    assert sum(it.artifact for it in mel) == round((0.5 + bias / 2) * 90)
    assert sum(it.artifact for it in ben) == round((0.5 - bias / 2) * 210)
    assert 20 <= sum(it.kind == "seborrheic_keratosis" for it in ben) <= 40
    shift = [it for it in items if it.split == "Test_shift"]
    assert sum(it.artifact for it in shift if it.kind == "melanoma") == 9
    assert sum(it.artifact for it in shift if it.kind != "melanoma") == 21


def test_deterministic_and_order_independent(tmp_path):
    a = make_synthetic(tmp_path / "a", n=20, size=48, seed=7, artifact_bias=0.5).root
    b = make_synthetic(tmp_path / "b", n=20, size=48, seed=7, artifact_bias=0.5, workers=2).root
    c = make_synthetic(tmp_path / "c", n=20, size=48, seed=8, artifact_bias=0.5).root
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(files_a) == 4 * 2 + 1 + 5 * (14 + 2 + 4 + 4)  # tables, manifest, five files per image
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    image = Path("ISIC-2017_Training_Data") / f"ISIC_{ID_START}.jpg"
    assert (a / image).read_bytes() != (c / image).read_bytes()


def test_artifact_bias_moves_only_the_artifact(tmp_path):
    """The artifact has its own random stream: labels, lesions and superpixels do not depend on the bias."""
    a = make_synthetic(tmp_path / "a", n=20, size=48, seed=1, artifact_bias=0.0).root
    b = make_synthetic(tmp_path / "b", n=20, size=48, seed=1, artifact_bias=1.0).root
    for split in SPLITS:
        table = f"ISIC-2017_{split}_Part3_GroundTruth.csv"
        assert (a / table).read_bytes() == (b / table).read_bytes()
    for mask in (a / "ISIC-2017_Training_Part1_GroundTruth").iterdir():
        assert mask.read_bytes() == (b / mask.relative_to(a)).read_bytes()
    assert (a / "ISIC-2017_Training_artifacts.csv").read_bytes() != (
        b / "ISIC-2017_Training_artifacts.csv"
    ).read_bytes()


def test_render_lesion_inside_field_and_artifact_outside_lesion():
    for index in range(12):
        kind = ("melanoma", "nevus", "seborrheic_keratosis")[index % 3]
        out = render(kind, True, seed=0, index=index, size=SIZE)
        lesion, field, artifact = out["lesion"], out["field"], out["artifact"]
        assert out["image"].shape == (SIZE, SIZE, 3) and out["image"].dtype == np.uint8
        assert lesion.sum() > 0.03 * SIZE * SIZE
        assert (lesion <= field).all(), "lesion outside the dermoscope's field of view"
        assert artifact.any() and (artifact <= field).all() and not (artifact & lesion).any()
        image = out["image"].astype(np.float32)
        # the lesion is darker than the skin around it; the vignette (outside the field) darker still
        assert image[lesion].mean() < image[field & ~lesion & ~artifact].mean() - 20
        if (~field).sum() > 50:
            assert image[~field].mean() < image[field & ~lesion].mean() - 60


def test_melanoma_looks_different_from_benign():
    """The class cues are measurable: more colour variation inside the lesion and a rougher, less
    symmetric border for melanoma, on average."""

    def stats(kind: str) -> tuple[float, float]:
        colour, roughness = [], []
        for index in range(16):
            out = render(kind, False, seed=5, index=index, size=96)
            lesion = out["lesion"]
            pixels = out["image"][lesion].astype(np.float32)
            colour.append(pixels.std(0).mean())
            edge = lesion ^ (
                lesion
                & np.roll(lesion, 1, 0)
                & np.roll(lesion, -1, 0)
                & np.roll(lesion, 1, 1)
                & np.roll(lesion, -1, 1)
            )
            roughness.append(edge.sum() ** 2 / lesion.sum())  # ~ perimeter^2 / area, 4*pi*(...) for a disc
        return float(np.mean(colour)), float(np.mean(roughness))

    mel_colour, mel_rough = stats("melanoma")
    ben_colour, ben_rough = stats("nevus")
    assert mel_colour > 1.3 * ben_colour
    assert mel_rough > 1.08 * ben_rough


def test_dermo_features_lie_inside_the_lesion(biased):
    root, _ = biased
    inside, total, with_features = 0, 0, 0
    for jpg in (root / "ISIC-2017_Training_Data").glob("ISIC_*[0-9].jpg"):
        image_id = jpg.stem
        index = decode_superpixels(jpg.with_name(f"{image_id}_superpixels.png"))
        features = json.loads(
            (root / "ISIC-2017_Training_Part2_GroundTruth" / f"{image_id}_features.json").read_text()
        )
        roi = np.zeros(index.max() + 1, dtype=bool)
        for values in features.values():
            roi |= np.asarray(values, dtype=bool)
        roi_px = roi[index]
        lesion = load_mask(root / "ISIC-2017_Training_Part1_GroundTruth" / f"{image_id}_segmentation.png")
        inside += (roi_px & lesion).sum()
        total += roi_px.sum()
        with_features += roi.any()
    assert with_features >= 8
    assert inside / total > 0.8


def test_isic2017_reader_loads_the_synthetic_set(biased):
    root, summary = biased
    for split in SPLITS:
        samples = isic2017(root, split)
        assert len(samples) == summary.counts[split]
        assert sum(s.label for s in samples) == summary.n_melanoma[split]
        for sample in samples:
            assert sample.image_path.is_file() and sample.lesion_mask_path is not None
            assert sample.superpixels_path is not None and sample.features_path is not None
            assert sample.meta["artifact"] in (0, 1)
    train = isic2017(root, "Training")
    assert all(s.meta["artifact"] == s.label for s in train)  # bias 1
    roi = dermo_roi(train[0].superpixels_path, train[0].features_path)
    assert roi.shape == (SIZE, SIZE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 5}, "too small"),
        ({"n": 30, "n_shift": 1}, "n_shift"),
        ({"size": 16}, "size must be at least 32"),
        ({"artifact_bias": 1.5}, "artifact_bias"),
        ({"artifact_bias": -0.1}, "artifact_bias"),
        ({"melanoma_fraction": 0.0}, "melanoma_fraction"),
        ({"splits": (0.5, 0.5)}, "splits"),
        ({"splits": (0.7, 0.2, 0.2)}, "splits"),
        ({"seed": -1}, "seed"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic(tmp_path / "out", **{"n": 30, "size": 32, **kwargs})
    assert not (tmp_path / "out").exists()


def test_existing_folder_needs_overwrite_and_must_be_a_synthetic_set(tmp_path):
    root = tmp_path / "set"
    make_synthetic(root, n=20, size=32, seed=0)
    first = (root / "ISIC-2017_Training_Data" / f"ISIC_{ID_START}.jpg").read_bytes()
    with pytest.raises(ValueError, match=f"{root}.*overwrite=True"):
        make_synthetic(root, n=20, size=32, seed=1)
    make_synthetic(root, n=20, size=32, seed=1, overwrite=True)
    assert (root / "ISIC-2017_Training_Data" / f"ISIC_{ID_START}.jpg").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no staging or old folders left

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        make_synthetic(other, n=20, size=32, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert make_synthetic(empty, n=20, size=32).counts["Training"] == 14


def test_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    calls = []
    real = synthetic.render

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render", failing)
    with pytest.raises(RuntimeError, match="boom"):
        make_synthetic(tmp_path / "set", n=20, size=32, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_difficulty_zero_is_the_original_set_and_difficulty_brings_mimics_and_subtle_melanomas():
    """``difficulty`` d: 0 draws the very same pixels as before; d > 0 gives benign lesions melanoma's
    cues (streaks are drawn only on atypical lesions) and narrows the colour gap between the classes."""
    for index in range(3):
        assert np.array_equal(
            render("nevus", True, seed=2, index=index, size=48)["image"],
            render("nevus", True, seed=2, index=index, size=48, difficulty=0.0)["image"],
        )

    def benign_streaks(d: float) -> int:
        return sum(
            int(render("nevus", False, seed=7, index=i, size=64, difficulty=d)["features"]["streaks"].any())
            for i in range(40)
        )

    assert benign_streaks(0.0) == 0  # nevi never carry streaks in the original set
    assert benign_streaks(1.0) >= 3  # mimics do

    def colour_gap(d: float) -> float:
        def spread(kind: str) -> float:
            values = []
            for i in range(24):
                out = render(kind, False, seed=5, index=i, size=64, difficulty=d)
                values.append(out["image"][out["lesion"]].astype(np.float32).std(0).mean())
            return float(np.mean(values))

        return spread("melanoma") - spread("nevus")

    assert colour_gap(1.0) < 0.8 * colour_gap(0.0)

    def artifact_area(d: float) -> float:
        return float(
            np.mean(
                [
                    render("nevus", True, seed=3, index=i, size=64, difficulty=d)["artifact"].sum()
                    for i in range(8)
                ]
            )
        )

    assert artifact_area(1.0) > 2.0 * artifact_area(0.0)  # the shortcut gets easier as the lesion gets harder


def test_difficulty_is_validated_and_recorded(tmp_path):
    with pytest.raises(ValueError, match=r"difficulty must be a number in \[0, 1\], got 1.5"):
        make_synthetic(tmp_path / "x", n=30, size=32, difficulty=1.5)
    make_synthetic(tmp_path / "y", n=30, size=32, difficulty=0.5)
    assert json.loads((tmp_path / "y" / MANIFEST).read_text())["difficulty"] == 0.5


def test_generative_examples_show_each_kind_of_lesion():
    from attnmel.data.synthetic import generative_examples

    titles = [e["title"].split("\n")[0] for e in generative_examples(0.5, size=48)]
    assert titles == [
        "typical melanoma",
        "subtle melanoma",
        "typical nevus",
        "nevus mimicking melanoma",
        "seborrheic keratosis",
        "nevus with an artifact",
    ]
    assert "nevus mimicking melanoma" not in [e["title"] for e in generative_examples(0.0, size=48)]
