"""LesionDataset: samples -> dicts of tensors for training and evaluation, with the ROI of Eq. 4 / 5.

Each item is ``{"image": float (3, S, S) normalised, "label": int64 scalar, "mask": float (1, S, S) lesion mask in
{0, 1}, "has_mask": bool, "roi": float (1, S, S), "image_id": str}``; the default collate function batches it.
The ``roi`` is the reference map of the attention regulariser (paper Eq. 4):

- ``None``: zeros (models trained without regularisation);
- ``"lesion"``: the lesion mask (AttnMel-CNN-Lesion);
- ``"background"``: ``1 - lesion mask`` (AttnMel-CNN-Bkg);
- ``"dermo"``: union of the ISIC 2017 Task 2 dermoscopic features (AttnMel-CNN-Dermo, see :mod:`.dermo`).

A sample without a lesion mask gets ``mask`` zeros and ``has_mask`` False; with ``roi="lesion"`` or
``"background"`` its ``roi`` is zeros too (unknown, not "everything"), so use ``has_mask`` to tell it apart.
``roi="dermo"`` requires every sample to have its Task 2 files (checked when the dataset is built).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .dermo import dermo_roi
from .images import load_mask, load_rgb
from .samples import DataError, Sample
from .transforms import split_preprocess

if TYPE_CHECKING:
    from .cache import PreprocessCache

__all__ = ["LesionDataset", "read_sample", "ROI_KINDS"]

ROI_KINDS = (None, "lesion", "dermo", "background")


def read_sample(
    sample: Sample, *, dermo: bool = False, image: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Decode a sample's files (validated) at full resolution; the image by :func:`~.images.load_rgb`, the
    decoder ``attnmel predict`` uses too, so a file gives the same pixels in training, evaluation and prediction.

    Returns ``{"image": uint8 (3, H, W) tv_tensors.Image}`` plus ``"mask"`` (uint8 (1, H, W) Mask in {0, 1})
    when the sample has a lesion mask, and ``"dermo"`` (same format) when ``dermo`` is True. A mask whose size
    differs from the image's is a DataError naming both files. ``image``: the sample's image already decoded
    (uint8 (3, H, W), on any device, e.g. by nvJPEG), used instead of decoding ``sample.image_path``.
    """
    if image is None:
        image = torch.from_numpy(load_rgb(sample.image_path)).permute(2, 0, 1).contiguous()  # (3, H, W)
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise DataError(
            f"{sample.image_path}: expected a uint8 (3, H, W) image, got {tuple(image.shape)} {image.dtype}"
        )
    height, width = image.shape[-2:]
    parts: dict[str, torch.Tensor] = {"image": tv_tensors.Image(image)}

    def check(array: Any, path: Any) -> torch.Tensor:
        if array.shape != (height, width):
            raise DataError(
                f"{path}: mask size {array.shape[1]}x{array.shape[0]} differs from image {sample.image_path} "
                f"size {width}x{height}"
            )
        return tv_tensors.Mask(torch.from_numpy(array)[None])  # (1, H, W)

    if sample.lesion_mask_path is not None:
        parts["mask"] = check(load_mask(sample.lesion_mask_path), sample.lesion_mask_path)
    if dermo:
        if not sample.has_dermo:
            raise DataError(
                f"{sample.image_id} ({sample.image_path}): no Task 2 superpixels / features files"
            )
        parts["dermo"] = check(
            dermo_roi(sample.superpixels_path, sample.features_path), sample.superpixels_path
        )
    return parts


def roi_target(
    kind: str | None, mask: torch.Tensor, has_mask: Any, dermo: torch.Tensor | None = None
) -> torch.Tensor:
    """The Dice reference of an ROI kind, for one item (mask (1, S, S), has_mask a bool) or a batch (mask
    (B, 1, S, S), has_mask (B,)): zeros without an ROI; the lesion mask; its complement where there is a mask
    (zeros where there is none); or the dermoscopic-feature map ``dermo``."""
    if kind is None:
        return torch.zeros_like(mask)
    if kind == "lesion":
        return mask.clone()  # an image without a mask has an all-zero mask
    if kind == "background":
        keep = torch.as_tensor(has_mask, dtype=mask.dtype, device=mask.device)
        return (1.0 - mask) * keep.reshape(keep.shape + (1,) * (mask.dim() - keep.dim()))
    return dermo


class LesionDataset(Dataset):
    """Map-style dataset over :class:`Sample`s (see the module docstring for the item layout).

    Args:
        samples: e.g. a :class:`SampleList` from :func:`attnmel.data.isic2017`.
        transform: a v2 pipeline taking and returning ``{"image": Image, "mask": Mask[, "dermo": Mask]}``;
            normally :func:`train_transform` or :func:`eval_transform`, which end with float images and {0, 1}
            float masks.
        roi: None, ``"lesion"``, ``"dermo"`` or ``"background"``.
        cache: a :class:`PreprocessCache`; then the transform must start with a :class:`Preprocess` of the same
            ``resize`` and crop fraction, and that step is read from the cache instead of recomputed.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[dict[str, Any]], dict[str, Any]],
        roi: str | None = None,
        cache: PreprocessCache | None = None,
    ) -> None:
        if roi not in ROI_KINDS:
            raise ValueError(f"roi must be one of {ROI_KINDS}, got {roi!r}")
        if roi == "dermo":
            lacking = [s.image_id for s in samples if not s.has_dermo]
            if lacking:
                raise DataError(
                    f"roi='dermo' needs ISIC 2017 Task 2 superpixels and features for every sample; "
                    f"{len(lacking)} of {len(samples)} lack them: {lacking[:5]}"
                )
        self.samples = samples
        self.transform = transform
        self.roi = roi
        self.cache = cache
        self._after_cache = transform
        if cache is not None:
            preprocess, rest = split_preprocess(transform)
            if preprocess is None:
                raise ValueError(
                    "a cache needs a transform that starts with Preprocess (train_transform / eval_transform)"
                )
            if (preprocess.resize, preprocess.fraction) != (cache.resize, cache.fraction):
                raise ValueError(
                    f"transform preprocesses to resize={preprocess.resize}, fraction={preprocess.fraction} but the "
                    f"cache holds resize={cache.resize}, fraction={cache.fraction}"
                )
            self._after_cache = rest

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        dermo = self.roi == "dermo"
        if self.cache is not None:
            parts, transform = self.cache.load(sample, dermo=dermo), self._after_cache
        else:
            parts, transform = read_sample(sample, dermo=dermo), self.transform
        image = tv_tensors.Image(parts["image"])
        has_mask = parts.get("mask") is not None
        inputs = {
            "image": image,
            "mask": tv_tensors.Mask(
                parts["mask"] if has_mask else torch.zeros((1, *image.shape[-2:]), dtype=torch.uint8)
            ),
        }
        if dermo:
            inputs["dermo"] = tv_tensors.Mask(parts["dermo"])
        out = transform(inputs)
        image_out = out["image"].as_subclass(torch.Tensor)  # (3, S, S)
        mask = out["mask"].as_subclass(torch.Tensor).to(torch.float32)  # (1, S, S)
        dermo_map = out["dermo"].as_subclass(torch.Tensor).to(torch.float32) if dermo else None
        roi = roi_target(self.roi, mask, has_mask, dermo_map)
        return {
            "image": image_out,
            "label": torch.tensor(sample.label, dtype=torch.int64),
            "mask": mask,
            "has_mask": has_mask,
            "roi": roi,
            "image_id": sample.image_id,
        }
