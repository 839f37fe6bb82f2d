"""Validated image decoding: every file is decoded completely, and any failure names the file.

PIL decodes lazily and, for a truncated JPEG, may only fail (or silently pad with grey when
``ImageFile.LOAD_TRUNCATED_IMAGES`` is set somewhere) once pixels are touched. These helpers force a full decode
inside a ``try`` and turn every decoder failure into a :class:`~attnmel.data.samples.DataError` naming the file
and the problem. Images larger than :data:`MAX_PIXELS` are refused before decoding (a decompression bomb guard:
a small file that claims a huge size would otherwise allocate gigabytes).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from .samples import DataError

__all__ = ["MAX_PIXELS", "image_size", "is_jpeg", "decode_jpegs", "load_rgb", "load_mask", "open_image"]

MAX_PIXELS = 64_000_000  # ~ 8000 x 8000; the largest ISIC images are about 6700 x 4500 (30 M pixels)


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open ``path``, decode all of its pixels and return the PIL image; a DataError on any failure."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone relaxed PIL globally: truncation would be silent
        raise DataError(f"{path}: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to decode silently")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width <= 0 or height <= 0:
                    raise DataError(f"{path}: image has an empty size {width}x{height}")
                if width * height > MAX_PIXELS:
                    raise DataError(
                        f"{path}: image claims {width}x{height} = {width * height} pixels, more than "
                        f"MAX_PIXELS={MAX_PIXELS} (possible decompression bomb)"
                    )
                img.load()  # full decode: truncated or corrupt data fails here, not later
                return img
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused as a possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise DataError(f"{path}: not a readable image file (unknown or corrupt format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated / corrupt data, bad headers
        raise DataError(f"{path}: corrupt or truncated image ({exc})") from exc


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the file header only (cheap; does not validate the pixel data)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file not found") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image file ({exc})") from exc


def is_jpeg(path: str | os.PathLike) -> bool:
    """Whether the file starts with the JPEG start-of-image marker (FF D8 FF), whatever its name says."""
    try:
        with open(path, "rb") as handle:
            return handle.read(3) == b"\xff\xd8\xff"
    except OSError:
        return False


def decode_jpegs(
    paths: Sequence[str | os.PathLike], device: str | torch.device = "cpu"
) -> list[torch.Tensor]:
    """Decode JPEG files as RGB uint8 ``(3, H, W)`` tensors on ``device`` in one batched call.

    On CUDA this is nvJPEG (``torchvision.io.decode_jpeg(device="cuda")``); on the CPU, libjpeg-turbo. The
    same checks as :func:`open_image` apply: a missing file, a non-JPEG, a size above :data:`MAX_PIXELS` or a
    corrupt stream is a DataError naming the file (a failed batch is retried file by file to find it).
    """
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    device = torch.device(device)
    datas = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: image file not found")
        if not is_jpeg(path):
            raise DataError(f"{path}: not a JPEG file (decode_jpegs reads JPEG only)")
        width, height = image_size(path)
        if width * height > MAX_PIXELS:
            raise DataError(
                f"{path}: image claims {width}x{height} = {width * height} pixels, more than "
                f"MAX_PIXELS={MAX_PIXELS} (possible decompression bomb)"
            )
        with _torchvision_io():
            datas.append(read_file(str(path)))  # (bytes,) uint8
    if not datas:
        return []
    try:
        with _torchvision_io():
            return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        pass
    images = []
    for path, data in zip(paths, datas, strict=True):
        try:
            with _torchvision_io():
                images.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError as exc:
            raise DataError(f"{path}: corrupt or truncated JPEG ({exc})") from exc
    return images


@contextlib.contextmanager
def _torchvision_io() -> Iterator[None]:
    """torchvision 0.29 deprecates its image codecs in favour of TorchCodec; they still work, so be quiet."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*decoding and encoding capabilities", category=DeprecationWarning
        )
        yield


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image as RGB. Returns uint8 (H, W, 3)."""
    img = open_image(path)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)


def load_mask(path: str | os.PathLike, threshold: int = 128) -> np.ndarray:
    """Decode a binary mask (0/255 PNG or BMP, any mode) as uint8 (H, W) with values {0, 1}.

    Pixels ``>= threshold`` (on the 8-bit grey scale) are foreground; ISIC masks are exactly 0 and 255, and
    masks resized bilinearly are conventionally re-thresholded at 128.
    """
    img = open_image(path)
    if img.mode != "L":
        img = img.convert("L")  # mode "1" becomes 0 / 255; palette and RGB masks become grey
    arr = np.asarray(img)
    return (arr >= threshold).astype(np.uint8)
