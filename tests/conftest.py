"""Shared pytest fixtures.

Data fixtures write tiny files in the official layouts (ISIC 2017 with Task 1 masks and Task 2 superpixels +
features JSON, ISIC 2016, PH2 with its ``||`` table and legend lines) under ``tmp_path``. The ``make_*`` fixtures
return the writer functions so a test can build a variant (CRLF or LF, a missing file, a bad label, ...).

Every generated image encodes its index so pairing can be checked: image ``i`` has a flat colour
(``10 * i`` in the red channel) and its lesion mask has foreground in exactly its first ``i + 1`` columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

IMAGE_SIZE = (40, 30)  # (width, height): not square, so the 0.8 centre crop matters
SP_BLOCK = 10  # superpixels are 10 x 10 blocks -> a 4 x 3 grid of 12 superpixels
N_SUPERPIXELS = (IMAGE_SIZE[0] // SP_BLOCK) * (IMAGE_SIZE[1] // SP_BLOCK)


def write_image(path: Path, index: int, size: tuple[int, int] = IMAGE_SIZE, fmt: str | None = None) -> None:
    """A flat-colour RGB image whose red channel is ``10 * index`` (JPEG quality 95 or BMP/PNG by suffix)."""
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[..., 0] = (10 * index) % 256
    arr[..., 1] = 120
    arr[..., 2] = 60
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(arr).save(path, format=fmt, **kwargs)


def write_mask(path: Path, index: int, size: tuple[int, int] = IMAGE_SIZE) -> None:
    """A 0/255 mask with foreground in the first ``index + 1`` columns."""
    arr = np.zeros((size[1], size[0]), dtype=np.uint8)
    arr[:, : index + 1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def superpixel_grid(size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """int64 (H, W) superpixel indices: 10 x 10 blocks numbered row by row."""
    width, height = size
    rows, cols = np.mgrid[0:height, 0:width]
    return (rows // SP_BLOCK) * (width // SP_BLOCK) + cols // SP_BLOCK


def encode_superpixels(index: np.ndarray) -> np.ndarray:
    """int (H, W) -> uint8 (H, W, 3) with R + (G << 8) + (B << 16) = index."""
    return np.stack([index & 255, (index >> 8) & 255, (index >> 16) & 255], axis=-1).astype(np.uint8)


def write_dermo(image_folder: Path, feature_folder: Path, image_id: str, active: Sequence[int]) -> None:
    """Task 2 files: superpixels PNG beside the image; features JSON with the ``active`` superpixels set."""
    Image.fromarray(encode_superpixels(superpixel_grid())).save(image_folder / f"{image_id}_superpixels.png")
    features = {
        name: [0] * N_SUPERPIXELS for name in ("pigment_network", "negative_network", "milia_like_cyst")
    }
    features["streaks"] = [0] * N_SUPERPIXELS
    for k, sp in enumerate(active):  # spread the active superpixels over different features
        name = ("pigment_network", "negative_network", "milia_like_cyst", "streaks")[k % 4]
        features[name][sp] = 1
    feature_folder.mkdir(parents=True, exist_ok=True)
    (feature_folder / f"{image_id}_features.json").write_text(json.dumps(features))


def write_csv(path: Path, lines: Sequence[str], crlf: bool = True, final_newline: bool = True) -> None:
    end = "\r\n" if crlf else "\n"
    text = end.join(lines) + (end if final_newline else "")
    path.write_bytes(text.encode())


def make_isic2017(
    root: Path,
    split: str = "Training",
    labels: Sequence[tuple[int, int]] = ((0, 0), (1, 0), (0, 1), (1, 0), (0, 0), (0, 0)),
    *,
    masks: bool = True,
    dermo: bool = True,
    crlf: bool = True,
    final_newline: bool = True,
    fmt: str = "{:.1f}",
) -> Path:
    """ISIC 2017 layout for one split; ``labels`` are (melanoma, seborrheic_keratosis) per image."""
    data = root / f"ISIC-2017_{split}_Data"
    data.mkdir(parents=True, exist_ok=True)
    lines = ["image_id,melanoma,seborrheic_keratosis"]
    for i, (mel, sk) in enumerate(labels):
        image_id = f"ISIC_{i:07d}"
        lines.append(f"{image_id},{fmt.format(mel)},{fmt.format(sk)}")
        write_image(data / f"{image_id}.jpg", i)
        if masks:
            write_mask(root / f"ISIC-2017_{split}_Part1_GroundTruth" / f"{image_id}_segmentation.png", i)
        if dermo:
            write_dermo(
                data, root / f"ISIC-2017_{split}_Part2_GroundTruth", image_id, active=[i % N_SUPERPIXELS]
            )
    write_csv(root / f"ISIC-2017_{split}_Part3_GroundTruth.csv", lines, crlf, final_newline)
    write_csv(
        data / f"ISIC-2017_{split}_Data_metadata.csv",
        ["image_id,age_approximate,sex"] + [f"ISIC_{i:07d},{40 + i},female" for i in range(len(labels))],
    )
    return root


def make_isic2016(
    root: Path,
    split: str = "Training",
    labels: Sequence[int] = (0, 1, 0, 0, 1, 0, 0, 0, 1, 0),
    *,
    masks: bool = True,
    crlf: bool = True,
    final_newline: bool = False,
    words: bool | None = None,
) -> Path:
    """ISIC 2016 layout for ``Training`` (benign/malignant words) or ``Test`` (0.0/1.0), no header."""
    words = split == "Training" if words is None else words
    data = root / f"ISBI2016_ISIC_Part3_{split}_Data"
    data.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, label in enumerate(labels):
        image_id = f"ISIC_{i:07d}"
        lines.append(f"{image_id},{('benign', 'malignant')[label] if words else f'{label:.1f}'}")
        write_image(data / f"{image_id}.jpg", i)
        if masks:
            write_mask(root / f"ISBI2016_ISIC_Part1_{split}_GroundTruth" / f"{image_id}_Segmentation.png", i)
    write_csv(root / f"ISBI2016_ISIC_Part3_{split}_GroundTruth.csv", lines, crlf, final_newline)
    return root


PH2_HEADER = (
    "||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry | Pigment Network | Dots/Globules"
    " | Streaks | Regression Areas | Blue-Whitish Veil | White | Red | Light-Brown | Dark-Brown | Blue-Gray | Black ||"
)
PH2_LEGEND = [
    "",
    "|| Legend: ||",
    "|| Clinical Diagnosis: 0 - Common Nevus; 1 - Atypical Nevus; 2 - Melanoma ||",
    "|| Asymmetry: 0 - Fully Symmetric; 1 - Symmetric in 1 axe; 2 - Fully Asymmetric ||",
    "Pigment Network, Dots/Globules, Streaks, Regression Areas, Blue-Whitish Veil: A - Absent, AT - Atypical, T - Typical",
]


def make_ph2(root: Path, diagnoses: Sequence[int] = (0, 1, 2, 0, 2), *, masks: bool = True) -> Path:
    """PH2 layout: ``PH2_dataset.txt`` (header, rows, legend) and BMP images / lesion masks."""
    images = root / "PH2 Dataset images"
    lines = [PH2_HEADER]
    for i, diagnosis in enumerate(diagnoses):
        name = f"IMD{i + 3:03d}"
        histology = "Melanoma" if diagnosis == 2 else ""
        lines.append(
            f"|| {name} || {histology} || {diagnosis} || 0 | T | A | A | A | A |  |  | X | X |  |  ||"
        )
        write_image(images / name / f"{name}_Dermoscopic_Image" / f"{name}.bmp", i)
        if masks:
            write_mask(images / name / f"{name}_lesion" / f"{name}_lesion.bmp", i)
    write_csv(root / "PH2_dataset.txt", lines + PH2_LEGEND, crlf=True)
    return root


@pytest.fixture
def make_isic2017_layout() -> Callable[..., Path]:
    return make_isic2017


@pytest.fixture
def make_isic2016_layout() -> Callable[..., Path]:
    return make_isic2016


@pytest.fixture
def make_ph2_layout() -> Callable[..., Path]:
    return make_ph2


@pytest.fixture
def isic2017_root(tmp_path: Path) -> Path:
    """Tiny ISIC 2017 folder: Training (6 images: 2 melanoma, 1 SK, masks, Task 2) and Validation (4)."""
    make_isic2017(tmp_path / "isic2017")
    make_isic2017(tmp_path / "isic2017", "Validation", ((1, 0), (0, 0), (0, 1), (0, 0)), crlf=False)
    return tmp_path / "isic2017"


@pytest.fixture
def isic2016_root(tmp_path: Path) -> Path:
    """Tiny ISIC 2016 folder: Training (10: 3 malignant) and Test (4: 1 malignant)."""
    make_isic2016(tmp_path / "isic2016")
    make_isic2016(tmp_path / "isic2016", "Test", (0, 1, 0, 0), final_newline=True)
    return tmp_path / "isic2016"


@pytest.fixture
def ph2_root(tmp_path: Path) -> Path:
    """Tiny PH2 folder: 5 images, Clinical Diagnosis (0, 1, 2, 0, 2)."""
    return make_ph2(tmp_path / "PH2Dataset")


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real ISIC data); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: extra threads only add overhead (and contention) on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """A 40-image synthetic set at 48 px (seed 0), made once per session and shared by the engine tests.

    Tests must not change it: one that needs a broken copy copies it first (``shutil.copytree``).
    """
    from attnmel.data import make_synthetic

    root = tmp_path_factory.mktemp("tiny-synthetic") / "syn"
    make_synthetic(root, n=40, size=48, seed=0)
    return root


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained AttnMel-CNN checkpoint (seed 0) with a 32 px config: the prediction and CSV tests' model."""
    import torch

    from attnmel.checkpoint import make_checkpoint, save_checkpoint
    from attnmel.config import TrainConfig
    from attnmel.models import build_model

    torch.manual_seed(0)
    config = TrainConfig(image_size=32, resize=40)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    return save_checkpoint(path, make_checkpoint(build_model("attnmel_cnn").eval(), config=config.to_dict()))


def pytest_report_header(config) -> str:
    """Say how much disk the temporary folders have: the suite checkpoints VGG-16s and needs a few GB free."""
    import shutil
    import tempfile

    free = shutil.disk_usage(tempfile.gettempdir()).free / 2**30
    return f"attnmel: {free:.1f} GiB free under {tempfile.gettempdir()} (the full suite needs about 17 GiB: the chapters keep their runs until the session ends)"
