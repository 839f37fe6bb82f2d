"""Interpretability experiments of chapter 5: Table 3, Fig. 3, Grad-CAM, pointing game, deletion, shortcuts.

Everything runs on the best checkpoint of a finished run (:class:`attnmel.experiments.Run`) over one
evaluation split with the eval transform (centre crop), and every map goes through the single protocol of
:mod:`attnmel.attention_eval` (upsample, min-max per image, threshold 0.5). The saliency of each model:

- AttnMel-CNN (and its ROI variants): the pool-3 and pool-4 attention maps (Eq. 2);
- VGG-16-GAP: CAM (the melanoma row of the classifier times the pool-5 features);
- every model: Grad-CAM on the pool-5 features, a post-hoc map that needs no attention module.

Each model declares its maps once (``model.saliency_maps``, from :mod:`attnmel.models.registry`); they are
made by :mod:`attnmel.saliency` and keyed by backbone tap (``"layer2"``/``"layer3"`` on ResNet-50).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from attnmel.attention_eval import (
    attention_report,
    deletion_auc,
    deletion_curve,
    share_on_region,
)
from attnmel.checkpoint import build_model_from_checkpoint
from attnmel.evaluate import collect_maps, split_loader
from attnmel.experiments import Run, report_splits

__all__ = [
    "figure3",
    "mask_split",
    "table3_markdown",
    "shortcut_markdown",
    "SplitMaps",
    "split_maps",
    "table3_rows",
    "deletion_curves",
    "artifact_masks",
    "shortcut_row",
    "table3_seed_rows",
    "table3_seeds_markdown",
    "shortcut_seed_rows",
    "shortcut_seeds_markdown",
]


@dataclass
class SplitMaps:
    """One model's outputs over a split: probabilities, images (eval crop), lesion masks and saliency maps."""

    image_ids: list[str]
    labels: np.ndarray  # (N,)
    probs: np.ndarray  # (N,)
    images: torch.Tensor  # (N, 3, S, S) normalised, as the network saw them
    masks: torch.Tensor  # (N, 1, S, S) bool lesion masks
    has_mask: torch.Tensor  # (N,) bool
    maps: dict[str, torch.Tensor]  # name -> (N, 1, h, w): "pool3", "pool4", "cam", "gradcam"
    model: nn.Module


def split_maps(run: Run, split: str, limit: int | None = None, batch_size: int = 16) -> SplitMaps:
    """Run the best checkpoint of ``run`` over ``split`` and collect its maps (Grad-CAM included), in fp32."""
    model, _ = build_model_from_checkpoint(run.best_checkpoint)
    loader = split_loader(run.config, split, limit=limit, batch_size=batch_size)
    found = collect_maps(model, loader, device=torch.device("cpu"), keep_images=True, gradcam=True)
    return SplitMaps(
        image_ids=found["image_id"],
        labels=found["label"],
        probs=found["prob"],
        images=found["image"],
        masks=found["mask"],
        has_mask=found["has_mask"],
        maps=found["maps"],
        model=model,
    )


def table3_rows(
    results: Mapping[str, SplitMaps], paper: Mapping[tuple[str, str], float]
) -> list[dict[str, Any]]:
    """Jaccard and pointing-game rate of every map of every model, beside the paper's Table 3 where it has one."""
    rows = []
    for name, result in results.items():
        report = attention_report(result.maps, result.masks, result.has_mask)
        for map_name, scores in report.items():
            rows.append(
                {
                    "model": name,
                    "map": map_name,
                    "jaccard": scores["jaccard_mean"],
                    "jaccard_std": scores["jaccard_std"],
                    "pointing": scores["pointing_rate"],
                    "n": scores["n"],
                    "paper_jaccard": paper.get((name, map_name)),
                }
            )
    return rows


def deletion_curves(
    result: SplitMaps, map_names: list[str], n_images: int, steps: int = 10, seed: int = 0
) -> dict[str, Any]:
    """Deletion curves (most-attended pixels removed first) for some maps of one model, plus a random map."""
    k = min(n_images, len(result.image_ids))
    images = result.images[:k]
    generator = torch.Generator().manual_seed(seed)
    candidates = {name: result.maps[name][:k] for name in map_names if name in result.maps}
    candidates["random"] = torch.rand(k, 1, *images.shape[-2:], generator=generator)
    curves = {}
    for name, saliency in candidates.items():
        curve = deletion_curve(result.model, images, saliency, steps=steps, baseline="mean")
        curves[name] = {"curve": curve, "auc": float(deletion_auc(curve.fractions, curve.mean_prob))}
    return curves


def artifact_masks(run: Run, split: str, image_ids: list[str]) -> torch.Tensor:
    """Synthetic sets only: the spurious artifact's masks under the eval geometry, ``(N, 1, S, S)`` bool."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from attnmel.data import load_mask
    from attnmel.data.transforms import eval_geometry

    root = run.config.resolved_data_root()
    folder = root / f"ISIC-2017_{split}_Artifact_Masks"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: artifact masks come with synthetic sets only")
    geometry = v2.Compose(eval_geometry(run.config.image_size, run.config.resize))
    out = []
    for image_id in image_ids:
        mask = torch.from_numpy(load_mask(folder / f"{image_id}_artifact.png"))[None]  # (1, H, W)
        out.append(geometry(tv_tensors.Mask(mask)) > 0)
    return torch.stack(out)


def shortcut_row(name: str, run: Run, results: Mapping[str, SplitMaps]) -> dict[str, Any]:
    """AUC per split and the share of the deepest attention map's mass (pool-4 on VGG; else Grad-CAM) on the
    artifact, artifact images only."""
    from attnmel.saliency import GRADCAM, attention_keys

    row: dict[str, Any] = {"model": name}
    for split, result in results.items():
        row[f"auc_{split}"] = run.metrics.get(split, {}).get("auc")
        region = artifact_masks(run, split, result.image_ids)  # (N, 1, S, S)
        with_artifact = region.flatten(1).any(dim=1)
        keys = attention_keys(result.model)
        saliency = result.maps[keys[-1] if keys else GRADCAM]
        share = share_on_region(saliency, region)[with_artifact]
        row[f"artifact_share_{split}"] = float(share.nanmean()) if len(share) else float("nan")
        row[f"artifact_area_{split}"] = (
            float(region[with_artifact].float().mean()) if len(share) else float("nan")
        )
    return row


def mask_split(config: Any) -> str:
    """The first evaluation split whose samples have lesion masks, else the validation split.

    (ISIC 2017's Test_v2 comes without masks in many copies; Table 3 then uses Validation, and says so.)
    """
    from attnmel.loaders import load_split

    root = config.resolved_data_root()
    for split in report_splits(config):
        try:
            samples = load_split(config, root, split)
        except Exception:  # an optional evaluation split that this dataset does not have
            continue
        if any(s.lesion_mask_path is not None for s in samples):
            return split
    raise ValueError(f"no split of {root} has lesion masks: the attention cannot be scored")


def table3_seed_rows(
    per_seed: Mapping[int, Mapping[str, SplitMaps]],
    paper: Mapping[tuple[str, str], float],
    reference: str = "AttnMel-CNN",
) -> list[dict[str, Any]]:
    """Table 3 over training seeds: each (model, map)'s Jaccard and pointing game as mean, sd and t-interval
    over seeds, and the Jaccard's difference to ``reference``'s same map, paired by seed.

    ``per_seed`` maps a seed to the :func:`split_maps` results of every model trained with it. The paired
    difference answers the paper's question (does the lesion regulariser move the attention onto the lesion?)
    with the training-run spread, not only the test-sample one.
    """
    from attnmel.metrics import paired_difference, seed_interval

    jaccard: dict[tuple[str, str], dict[int, float]] = {}
    pointing: dict[tuple[str, str], dict[int, float]] = {}
    for seed, results in per_seed.items():
        for row in table3_rows(results, paper):
            key = (row["model"], row["map"])
            jaccard.setdefault(key, {})[seed] = row["jaccard"]
            pointing.setdefault(key, {})[seed] = row["pointing"]
    rows = []
    for (model, map_name), values in jaccard.items():
        row: dict[str, Any] = {"model": model, "map": map_name, "per_seed": values}
        row["jaccard"] = seed_interval(list(values.values()))
        row["pointing"] = seed_interval(list(pointing[(model, map_name)].values()))
        ref = jaccard.get((reference, map_name))
        row["diff"] = paired_difference(values, ref) if ref is not None and model != reference else None
        row["paper_jaccard"] = paper.get((model, map_name))
        rows.append(row)
    return rows


def table3_seeds_markdown(rows: list[dict[str, Any]], reference: str = "AttnMel-CNN") -> str:
    """Markdown for :func:`table3_seed_rows`: ours (mean ± sd over seeds) beside the paper's Table 3."""
    from attnmel.experiments import format_mean_sd, format_metric, format_paired

    lines = [
        f"| model | map | Jaccard (ours) | Jaccard (paper) | vs {reference} (paired, 95% CI) | pointing game |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        same = "reference" if r["model"] == reference else "—"
        lines.append(
            f"| {r['model']} | {r['map']} | {format_mean_sd(r['jaccard'])} | {format_metric(r['paper_jaccard'])} | "
            f"{format_paired(r['diff'], same)} | {format_mean_sd(r['pointing'], 2)} |"
        )
    return "\n".join(lines)


def shortcut_seed_rows(
    per_model: Mapping[str, Mapping[int, Mapping[str, Any]]],
    references: Mapping[str, str],
    shifted: str = "Test_shift",
) -> list[dict[str, Any]]:
    """The shortcut table over seeds. ``per_model`` maps a row name to ``{seed: shortcut_row(...)}``;
    ``references`` maps a row to the row its ``shifted`` AUC is compared with, paired by seed.

    Each row has, per quantity of :func:`shortcut_row`, the mean / sd / t-interval over seeds, and ``diff``:
    the paired difference of the ``shifted`` AUC to its reference row (None for a row without one).
    """
    from attnmel.metrics import paired_difference, seed_interval

    def per_seed(name: str, key: str) -> dict[int, float]:
        return {s: r[key] for s, r in per_model[name].items() if r.get(key) is not None}

    rows = []
    for name, by_seed in per_model.items():
        keys = sorted({k for r in by_seed.values() for k in r if k != "model"})
        row: dict[str, Any] = {"model": name, "seeds": sorted(by_seed)}
        row.update({k: seed_interval(list(per_seed(name, k).values())) for k in keys})
        ref = references.get(name)
        row["reference"] = ref
        key = f"auc_{shifted}"
        row["diff"] = paired_difference(per_seed(name, key), per_seed(ref, key)) if ref in per_model else None
        rows.append(row)
    return rows


def shortcut_seeds_markdown(
    rows: list[dict[str, Any]], biased: str = "Test_v2", shifted: str = "Test_shift"
) -> str:
    """Markdown for :func:`shortcut_seed_rows`: AUCs and attention on the artifact as mean ± sd over seeds."""
    from attnmel.experiments import format_mean_sd, format_paired

    lines = [
        f"| model | seeds | AUC {biased} (artifact correlated) | AUC {shifted} (uncorrelated) | "
        f"{shifted} AUC vs (paired, 95% CI) | attention share on artifact | artifact share of area |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        versus = "—" if r["diff"] is None else f"{format_paired(r['diff'])} vs {r['reference']}"
        cells = [
            r["model"],
            str(len(r["seeds"])),
            format_mean_sd(r[f"auc_{biased}"]),
            format_mean_sd(r[f"auc_{shifted}"]),
            versus,
            format_mean_sd(r[f"artifact_share_{shifted}"]),
            format_mean_sd(r[f"artifact_area_{shifted}"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table3_markdown(rows: list[dict[str, Any]]) -> str:
    """Markdown for :func:`table3_rows`: ours (mean ± std) beside the paper's Table 3, plus pointing game."""
    from attnmel.experiments import format_metric

    lines = [
        "| model | map | Jaccard (ours) | Jaccard (paper) | pointing game (ours) | n |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['map']} | {r['jaccard']:.4f} ± {r['jaccard_std']:.3f} | "
            f"{format_metric(r['paper_jaccard'])} | {r['pointing']:.2f} | {r['n']} |"
        )
    return "\n".join(lines)


def shortcut_markdown(
    rows: list[dict[str, Any]], biased: str = "Test_v2", shifted: str = "Test_shift"
) -> str:
    """Markdown for :func:`shortcut_row` rows: AUC with and without the correlation, attention on the artifact."""
    from attnmel.experiments import format_metric

    lines = [
        f"| model | AUC {biased} (artifact correlated) | AUC {shifted} (uncorrelated) | "
        "attention share on artifact | artifact share of area |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["model"], format_metric(r[f"auc_{biased}"]), format_metric(r[f"auc_{shifted}"])]
        cells += [format_metric(r[f"artifact_share_{shifted}"]), format_metric(r[f"artifact_area_{shifted}"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


FIGURE3_COLUMNS = (  # (column title, model, map): the Fig. 3 analogue
    ("AttnMel pool-3", "AttnMel-CNN", "pool3"),
    ("AttnMel pool-4", "AttnMel-CNN", "pool4"),
    ("Lesion pool-4", "AttnMel-CNN-Lesion", "pool4"),
    ("Dermo pool-4", "AttnMel-CNN-Dermo", "pool4"),
    ("GAP CAM", "VGG-16-GAP", "cam"),
)


def figure3(results: Mapping[str, SplitMaps], n_show: int, mean: Any, std: Any) -> Any:
    """The Fig. 3 analogue: ``n_show`` images (melanomas first), one overlay column per model and map."""
    from attnmel.plots import plot_attention_grid

    reference = next(iter(results.values()))
    order = sorted(range(len(reference.image_ids)), key=lambda i: (-int(reference.labels[i]), i))[:n_show]
    columns = {
        title: results[model].maps[name][order]
        for title, model, name in FIGURE3_COLUMNS
        if model in results and name in results[model].maps
    }
    titles = [
        f"{reference.image_ids[i]}\n{'melanoma' if reference.labels[i] else 'other'}, p={reference.probs[i]:.2f}"
        for i in order
    ]
    return plot_attention_grid(
        reference.images[order], columns, reference.masks[order], titles, mean=mean, std=std
    )
