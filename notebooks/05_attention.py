# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (attnmel)
#     language: python
#     name: python3
#   language_info:
#     name: python
# ---

# %% [markdown]
# # 5. Attention: Table 3, Fig. 3, and beyond
#
# This chapter reproduces the interpretability analysis of Sect. 3.3 on the models of chapter 4, then adds
# what the paper did not measure:
#
# 1. **Table 3**: the Jaccard index of the binarised pool-3 / pool-4 attention maps (and of VGG-16-GAP's
#    CAM) with the lesion masks;
# 2. **Fig. 3**: the attention maps drawn over test images, lesion outlined;
# 3. **Grad-CAM** for every model under the same protocol, and the **pointing game** (does the map's peak
#    fall inside the lesion?);
# 4. a **deletion curve**: the melanoma probability as the most-attended pixels are removed first, a check of
#    whether the maps are faithful to what the model uses;
# 5. **shortcut learning**: on a synthetic set where a sticker or ink mark correlates with melanoma, the
#    share of attention on the artifact and the AUC on a test split where it no longer correlates, with and
#    without the lesion ROI regulariser.
#
# One protocol for every map (the released code thresholded CAM at 7x7 instead; we do not): upsample
# bilinearly to the input size, min-max normalise per image, threshold at 0.5, then
# $J = |P \cap L| / |P \cup L|$ per image, averaged.

# %% tags=["parameters"]
profile = "smoke"  # smoke | smoke-mini | isic2017-cpu | paper | scratch | scratch-cpu
data_root = ""  # ISIC 2017 folder in the official layout; "": the profile default, synthetic for smoke
device = "auto"  # auto | cpu | cuda | mps
runs_dir = "runs"  # reads <runs_dir>/04_ablations, writes <runs_dir>/05_attention
epochs = 0  # 0: the profile default (must match chapter 4 to reuse its runs)
image_size = 0  # 0: the profile default (must match chapter 4 to reuse its runs)
eval_images = 0  # images of the evaluation split to score; 0: all
n_show = 4  # images in the Fig. 3 analogue
deletion_images = 16  # images in the deletion curves
shortcut_bias = 0.9  # artifact-label correlation of the shortcut experiment (synthetic data only)
seeds = 0  # training seeds of Table 3 and the shortcut experiment; 0: the profile's study (as in chapter 4)

# %%
# %matplotlib inline
from pathlib import Path

import torch
from IPython.display import Markdown, display

import attnmel
from attnmel import browser, experiments, interpret, plots
from attnmel.data import ISIC2017_MEAN, ISIC2017_STD
from attnmel.io import atomic_write_json

out_dir = Path(runs_dir) / "05_attention"
base = experiments.profile_config(
    profile, data_root=data_root, device=device, runs_dir=runs_dir, many_runs=True, epochs=epochs,
    image_size=image_size,
)
print(f"attnmel {attnmel.__version__}, torch {torch.__version__}; profile {profile!r}")
study = experiments.study_of(profile)
seeds = seeds or study.seeds
seed_list = list(range(base.seed, base.seed + seeds))
# The models with maps worth comparing, among those chapter 4 trains under this profile (reused, not retrained).
wanted = ["AttnMel-CNN", "AttnMel-CNN-Lesion", "AttnMel-CNN-Dermo", "VGG-16-GAP", "Mel-CNN"]
models_needed, _ = experiments.usable_variants(base, [n for n in wanted if n in study.variants])
seed_runs = experiments.run_variant_seeds(base, Path(runs_dir) / "04_ablations" / "isic2017", models_needed,
                                          seed_list, reuse=True, log=lambda m: None)
runs = {name: by_seed[base.seed] for name, by_seed in seed_runs.items()}  # seed 0: the figures and the browser
split = interpret.mask_split(base)  # the first evaluation split with lesion masks
limit = eval_images or None
results = {name: interpret.split_maps(run, split, limit) for name, run in runs.items()}
print(f"evaluating on {base.dataset} {split}: {len(next(iter(results.values())).image_ids)} images; "
      f"models {', '.join(models_needed)}; seeds {seed_list}")

# %% [markdown]
# ## Table 3: Jaccard of the binarised maps with the lesion
#
# Our figures beside the paper's (ISIC 2017 test set, copied from the paper). Grad-CAM rows are ours only,
# as is the pointing-game rate. Each figure is the mean ± sd over the training seeds of chapter 4 (the
# per-image Jaccard averaged over the split, then over seeds); the paired column is each map's Jaccard minus
# AttnMel-CNN's same map, seed by seed, with its 95% interval: the paper's question of whether an ROI
# regulariser moves the attention onto the lesion, asked across training runs.

# %%
per_seed = {seed: ({name: results[name] for name in models_needed} if seed == base.seed else
                   {name: interpret.split_maps(seed_runs[name][seed], split, limit) for name in models_needed})
            for seed in seed_list}
rows = interpret.table3_seed_rows(per_seed, experiments.PAPER_TABLE3)
del per_seed  # the other seeds' images and maps; seed 0's stay in `results` for the figures below
atomic_write_json(out_dir / "table3.json", {"profile": profile, "split": split, "seeds": seed_list, "rows": rows})
Markdown(f"**{base.dataset}, {split}, profile `{profile}`, seeds {', '.join(map(str, seed_list))}**\n\n"
         + interpret.table3_seeds_markdown(rows) + f"\n\n{experiments.profile_caption(profile, base, seeds)}\n\n"
         + "\n".join(f"- {experiments.paired_verdict(r['model'] + ' ' + r['map'], 'AttnMel-CNN ' + r['map'], r['diff'], 'Jaccard')}"
                     for r in rows if r["diff"] is not None and r["model"].startswith("AttnMel-CNN-")
                     and r["map"] in ("pool3", "pool4")))  # the paper's question: ROI variants' attention maps

# %% [markdown]
# ## Fig. 3: attention over test images
#
# Rows are images (melanomas first; probabilities from AttnMel-CNN), columns the maps of each model, drawn as a jet overlay
# (0.6 image + 0.4 map, min-max per map) with the lesion outlined.

# %%
fig = interpret.figure3(results, n_show, mean=ISIC2017_MEAN, std=ISIC2017_STD)
plots.save_figure(fig, out_dir / "fig3.png")
fig

# %% [markdown]
# ## Browse the maps
#
# Every image of the split, every model and every map computed above (attention, CAM, Grad-CAM): in
# JupyterLab the pickers redraw the overlay; in the HTML book this is a static view of the first melanoma.

# %%
browser.attention_browser(results, mean=ISIC2017_MEAN, std=ISIC2017_STD)

# %% [markdown]
# ## Deletion curves: are the maps faithful?
#
# Pixels are replaced by the image mean in order of decreasing saliency; a map that points at what the model
# uses makes the melanoma probability fall fastest (a low area under the curve). A random map is the
# baseline. Computed on the first `deletion_images` images of the split for AttnMel-CNN.

# %%
curves = interpret.deletion_curves(results["AttnMel-CNN"], ["pool3", "pool4", "gradcam"], deletion_images)
fig = plots.plot_deletion_curves({name: c["curve"] for name, c in curves.items()})
plots.save_figure(fig, out_dir / "deletion.png")
atomic_write_json(out_dir / "deletion.json", {name: {"auc": c["auc"]} for name, c in curves.items()})
fig

# %% [markdown]
# ## Shortcut learning: a spurious artifact
#
# Synthetic data only: a fresh synthetic set in which a sticker or ink mark appears outside the lesion on
# most melanomas and few benign lesions (`shortcut_bias`), and a `Test_shift` split where it appears at
# random. A model that learned the artifact loses AUC on `Test_shift`; the lesion ROI regulariser asks the
# attention to stay on the lesion. The artifact share is the fraction of pool-4 attention mass on the
# artifact (images that have one), beside the artifact's share of the image area (what a uniform map gets).
#
# `Test_shift` holds other lesions than `Test_v2`, so some change between the two columns is just another
# sample. The first row is the reference for that: AttnMel-CNN from chapter 4, trained where the artifact
# carries no information. Every row is trained with each seed; the paired column compares `Test_shift` AUCs
# seed by seed: the biased AttnMel-CNN against the reference (a negative difference whose interval excludes 0
# means it learned the shortcut), and the lesion-regularised one against the biased AttnMel-CNN (a positive
# difference means the regulariser took some of that loss back).

# %%
shortcut_rows = []
if base.dataset == "synthetic" and "AttnMel-CNN" in seed_runs:
    biased = base.replace(synthetic_artifact_bias=shortcut_bias, eval_splits="Test_v2,Test_shift")
    trained = experiments.run_variant_seeds(biased, out_dir / "shortcut", ["AttnMel-CNN", "AttnMel-CNN-Lesion"],
                                            seed_list, reuse=True, log=lambda m: None)
    unbiased, plain, lesion = "AttnMel-CNN, unbiased (reference)", "AttnMel-CNN, biased", "AttnMel-CNN-Lesion, biased"
    by_row = {unbiased: seed_runs["AttnMel-CNN"], plain: trained["AttnMel-CNN"], lesion: trained["AttnMel-CNN-Lesion"]}
    per_model = {name: {seed: interpret.shortcut_row(name, run, {s: interpret.split_maps(run, s, limit)
                                                                 for s in ("Test_v2", "Test_shift")})
                        for seed, run in runs_by_seed.items()}
                 for name, runs_by_seed in by_row.items()}
    shortcut_rows = interpret.shortcut_seed_rows(per_model, {plain: unbiased, lesion: plain})
    atomic_write_json(out_dir / "shortcut.json", {"bias": shortcut_bias, "seeds": seed_list, "rows": shortcut_rows})
    display(Markdown(f"**synthetic Test_v2 / Test_shift, artifact bias {shortcut_bias}, seeds "
                     f"{', '.join(map(str, seed_list))}**\n\n" + interpret.shortcut_seeds_markdown(shortcut_rows)
                     + f"\n\n{experiments.profile_caption(profile, base, seeds)}\n\n"
                     + "\n".join(f"- {experiments.paired_verdict(r['model'], r['reference'], r['diff'], 'Test_shift AUC')}"
                                 for r in shortcut_rows if r["reference"])))
else:
    print("the shortcut experiment needs the synthetic set (profile smoke)")

# %% [markdown]
# ## Summary
#
# - Table 3 and the Fig. 3 analogue are computed with one protocol for every map; Grad-CAM and the pointing
#   game extend the comparison to models without attention modules.
# - The deletion curve tests faithfulness rather than overlap with the lesion: a map can match the lesion
#   well and still not be what the classifier relies on.
# - The shortcut experiment measures what attention regularisation does when the data contains a
#   spurious cue; under `smoke` the runs are short, so read the direction, not the size, of the effects.
