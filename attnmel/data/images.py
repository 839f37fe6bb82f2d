"""Validated image decoding: every file is decoded completely, and any failure names the file.

PIL decodes lazily and, for a truncated JPEG, may only fail (or silently pad with grey when
``ImageFile.LOAD_TRUNCATED_IMAGES`` is set somewhere) once pixels are touched. These helpers force a full decode
inside a ``try`` and turn every decoder failure into a :class:`~attnmel.data.samples.DataError` naming the file
and the problem. Images larger than :data:`MAX_PIXELS` are refused before decoding (a decompression bomb guard:
a small file that claims a huge size would otherwise allocate gigabytes).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .samples import DataError

__all__ = ["MAX_PIXELS", "image_size", "load_rgb", "load_mask", "open_image"]

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
