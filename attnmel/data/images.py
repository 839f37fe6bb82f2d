"""Validated image decoding: every file is decoded completely, and any failure names the file.

PIL decodes lazily and, for a truncated JPEG, may only fail (or silently pad with grey when
``ImageFile.LOAD_TRUNCATED_IMAGES`` is set somewhere) once pixels are touched. These helpers force a full decode
inside a ``try`` and turn every decoder failure into a :class:`~attnmel.data.samples.DataError` naming the file
and the problem. Images larger than :data:`MAX_PIXELS` are refused before decoding (a decompression bomb guard:
a small file that claims a huge size would otherwise allocate gigabytes); so is anything PIL itself flags as
a decompression bomb, also when only the header is read (:func:`image_size`).

:func:`load_rgb` is the one decoder from file to RGB pixels for training, evaluation, the preprocessing cache
and ``attnmel predict`` (the mode rules are in :func:`to_rgb`). :func:`decode_jpegs` (torchvision / nvJPEG) is the
only other path; it takes 8-bit YCbCr or grey JPEGs only (:func:`is_plain_jpeg`), for which it agrees with
:func:`load_rgb` up to the decoders' rounding (a few grey levels).
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

__all__ = [
    "MAX_PIXELS",
    "image_size",
    "is_jpeg",
    "is_plain_jpeg",
    "decode_jpegs",
    "load_rgb",
    "to_rgb",
    "load_mask",
    "open_image",
]

MAX_PIXELS = 64_000_000  # ~ 8000 x 8000; the largest ISIC images are about 6700 x 4500 (30 M pixels)


def _check_size(path: Path, width: int, height: int) -> None:
    """A DataError for an empty size or one above :data:`MAX_PIXELS` (a possible decompression bomb)."""
    if width <= 0 or height <= 0:
        raise DataError(f"{path}: image has an empty size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise DataError(
            f"{path}: image claims {width}x{height} = {width * height} pixels, more than "
            f"MAX_PIXELS={MAX_PIXELS} (possible decompression bomb)"
        )


@contextlib.contextmanager
def _pil_errors(path: Path, what: str = "corrupt or truncated image") -> Iterator[None]:
    """Run PIL calls with decompression-bomb warnings as errors; turn every PIL failure into a DataError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file not found") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused as a possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise DataError(f"{path}: not a readable image file (unknown or corrupt format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated / corrupt data, bad headers
        raise DataError(f"{path}: {what} ({exc})") from exc


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open ``path``, decode all of its pixels and return the PIL image; a DataError on any failure."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone relaxed PIL globally: truncation would be silent
        raise DataError(f"{path}: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to decode silently")
    with _pil_errors(path), Image.open(path) as img:
        _check_size(path, *img.size)
        img.load()  # full decode: truncated or corrupt data fails here, not later
        return img


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the file header only (cheap; does not validate the pixel data).

    The same size limits as :func:`open_image` apply, so ``verify=True`` in the readers finds the files that
    decoding would refuse.
    """
    path = Path(path)
    with _pil_errors(path, "not a readable image file"), Image.open(path) as img:
        _check_size(path, *img.size)
        return img.size


def is_jpeg(path: str | os.PathLike) -> bool:
    """Whether the file starts with the JPEG start-of-image marker (FF D8 FF), whatever its name says."""
    try:
        with open(path, "rb") as handle:
            return handle.read(3) == b"\xff\xd8\xff"
    except OSError:
        return False


def is_plain_jpeg(path: str | os.PathLike) -> bool:
    """Whether :func:`decode_jpegs` may decode the file: a JPEG whose header says 8-bit colour or grey.

    CMYK / YCCK JPEGs go through :func:`load_rgb` instead, so every decoder applies the same colour rules.
    """
    if not is_jpeg(path):
        return False
    path = Path(path)
    with _pil_errors(path, "not a readable image file"), Image.open(path) as img:
        return img.mode in ("RGB", "L")


def decode_jpegs(
    paths: Sequence[str | os.PathLike], device: str | torch.device = "cpu"
) -> list[torch.Tensor]:
    """Decode JPEG files as RGB uint8 ``(3, H, W)`` tensors on ``device`` in one batched call.

    For the 8-bit colour and grey JPEGs of :func:`is_plain_jpeg` the pixels are those of :func:`load_rgb` up
    to the decoders' rounding (grey is replicated to three channels by both).

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
        image_size(path)  # size limits, as for open_image
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


_WIDE = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # one channel wider than 8 bits


def _wide_to_8bit(img: Image.Image, *, strict16: bool) -> np.ndarray:
    """A one-channel image wider than 8 bits as uint8 (H, W); see :func:`to_rgb` for the rules.

    ``strict16``: 16-bit modes are always divided by 257 (images); else only when their maximum is above 255
    (masks stored as 0 / 255 in a 16-bit file stay 0 / 255).
    """
    arr = np.nan_to_num(np.asarray(img, dtype=np.float64))  # (H, W)
    top = arr.max(initial=0.0)
    if img.mode.startswith("I;16") and strict16:
        arr = arr / 257.0
    elif img.mode == "F" and top <= 1.0:
        arr = arr * 255.0
    elif top > 255:
        arr = arr / 257.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image, path: str | os.PathLike = "<image>") -> np.ndarray:
    """A decoded PIL image as uint8 RGB ``(H, W, 3)``, by these rules (the same for every entry point):

    - 16-bit grey (``I;16``, ``I;16B``, ...): ``round(value / 257)`` (65535 -> 255), not saturated at 255;
    - ``I`` (32-bit integer): as 16-bit when its maximum is above 255, else taken as 8-bit values;
    - ``F`` (float): values in [0, 1] are scaled by 255; else as ``I``;
    - an alpha channel (RGBA, LA, PA, a palette or L / RGB with a transparent colour) is composited over white,
      ``round((c * a + 255 * (255 - a)) / 255)``;
    - palette, CMYK, YCbCr and other colour modes: PIL's conversion to RGB;
    - grey (L, 1 and the wide modes above): replicated to three channels.

    16-bit colour PNGs arrive here already reduced to 8 bits by PIL (the high byte of each value).
    """
    mode = img.mode
    if mode in _WIDE:
        gray = _wide_to_8bit(img, strict16=True)  # (H, W)
        return np.repeat(gray[..., None], 3, axis=2)
    try:
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
            rgba = np.asarray(img.convert("RGBA"), dtype=np.uint32)  # (H, W, 4)
            alpha = rgba[..., 3:]
            out = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
            return out.astype(np.uint8)
        if mode != "RGB":
            img = img.convert("RGB")  # L, 1, P, CMYK, YCbCr, HSV
    except ValueError as exc:
        raise DataError(f"{path}: cannot convert image mode {mode} to RGB ({exc})") from exc
    return np.array(img, dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file as uint8 RGB ``(H, W, 3)`` by the rules of :func:`to_rgb`; a DataError naming the
    file on any failure. Training, evaluation, the cache and ``attnmel predict`` all decode through here."""
    return to_rgb(open_image(path), path)


def load_mask(path: str | os.PathLike, threshold: int = 128) -> np.ndarray:
    """Decode a binary mask (0/255 PNG or BMP, any mode) as uint8 (H, W) with values {0, 1}.

    Pixels ``>= threshold`` (on the 8-bit grey scale) are foreground; ISIC masks are exactly 0 and 255, and
    masks resized bilinearly are conventionally re-thresholded at 128. A 16-bit mask whose maximum is above
    255 is scaled by 1/257 first (0 / 65535 -> 0 / 255), so the threshold is at half its range, not at 128 of
    65535.
    """
    img = open_image(path)
    if img.mode in _WIDE:
        return (_wide_to_8bit(img, strict16=False) >= threshold).astype(np.uint8)
    if img.mode != "L":
        img = img.convert("L")  # mode "1" becomes 0 / 255; palette and RGB masks become grey
    arr = np.asarray(img)
    return (arr >= threshold).astype(np.uint8)
