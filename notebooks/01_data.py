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
# # 1. Data: datasets, layouts and preprocessing
#
# This chapter reproduces the data preparation of Sect. 3.1 of the paper: the official ISIC splits, the
# labels (melanoma = 1; nevus and seborrheic keratosis = 0), the lesion masks (ISIC 2017 Part 1) and the
# dermoscopic features (Part 2) used as regions of interest, the centre crop to $0.8 \times \min(H, W)$ and
# resize to $256 \times 256$, the run-time augmentation, the per-dataset normalisation and the class imbalance.
#
# Under the `smoke` profile the data is the built-in **synthetic dermoscopy set**, written in the official
# ISIC 2017 layout so the very same readers load it; under `isic2017-cpu` and `paper` it is real ISIC data read
# from `data_root` as downloaded.

# %% tags=["parameters"]
profile = "smoke"  # smoke | smoke-mini | isic2017-cpu | paper | scratch | scratch-cpu
data_root = ""  # dataset folder in the official layout; "": the profile default, synthetic for smoke
device = "auto"  # unused here; every chapter accepts it
runs_dir = "runs"  # artefacts go to <runs_dir>/01_data; the synthetic set to <runs_dir>/data
n_show = 8  # images shown in the gallery
stats_images = 200  # training images used for the normalisation statistics (0: all)
seed = 0  # seed for the gallery, the views and the statistics

# %%
# %matplotlib inline
from pathlib import Path

import numpy as np
import torch

import attnmel
from attnmel import data, plots, trainer
from attnmel.config import TrainConfig
from attnmel.io import atomic_write_json

overrides = {"runs_root": runs_dir} | ({"data_root": data_root} if data_root else {})
config = TrainConfig.from_preset(profile, **overrides)
root = trainer.ensure_synthetic(config)
out_dir = Path(runs_dir) / "01_data"
print(f"attnmel {attnmel.__version__}, torch {torch.__version__}; profile {profile!r}")
print(f"dataset {config.dataset!r} read from {root}")

# %% [markdown]
# ## What makes a synthetic melanoma
#
# The `smoke` profile's data is drawn by a generative model (`attnmel.data.make_synthetic`) so that every
# chapter runs in minutes without the ISIC archive. Each lesion gets one latent **atypia** score $s \in [0, 1]$:
# melanomas draw it high, benign lesions low, and the two ranges overlap. Every cue of the paper's dermoscopy
# vocabulary is drawn with a probability or strength that grows with $s$: an asymmetric, jagged border (odd
# Fourier harmonics of the outline), blotches of several colours, a blue-white veil, atypical dots clustered
# off-centre, streaks along one arc of the border, and a warped, thick pigment network. Benign lesions get a
# regular network and one shade of brown; seborrheic keratoses get milia-like cysts. So the class evidence
# lives **inside the lesion**, in grades of subtlety.
#
# The set's `difficulty` $d$ (the preset prints it) makes the task hard enough to rank models: it widens the
# overlap of the two atypia ranges (more subtle melanomas, more atypical nevi) and lets a share $d$ of the
# atypical benign lesions borrow melanoma's cues (*mimics*). At $d = 0$ every model reached AUC $\approx 1$.
# A **spurious artifact** (a sticker or an ink mark) sits outside the lesion on about half the images; how
# strongly it goes with the label is the set's `artifact_bias` (below), and at higher $d$ it is drawn larger, so
# it becomes the easier cue. The figure shows one example of each kind, drawn at this profile's difficulty.

# %%
from attnmel.data.synthetic import generative_examples  # noqa: E402

difficulty = config.synthetic_difficulty if config.dataset == "synthetic" else 0.5
examples = generative_examples(difficulty, size=128, seed=seed)
fig = plots.plot_samples([e["image"] for e in examples], [e["lesion"] for e in examples],
                         [e["title"] for e in examples], columns=3)
fig.suptitle(f"the generator at difficulty {difficulty:g} (outline: the lesion mask)")
plots.save_figure(fig, out_dir / "generative_model.png")
fig

# %% [markdown]
# ## Splits and class balance
#
# The readers pair every image with its label and masks **by image id** (the authors' code paired by sorted
# order, so one missing mask shifted every later pair). Each split below is the official one.

# %%
split_names = data.isic2017_splits(root) if config.dataset != "isic2016" else list(data.ISIC2016_SPLITS)
splits = {name: trainer.load_split(config, root, name) for name in split_names}
rows = data.split_summary(splits)
print(f"{'split':<12}{'images':>8}{'melanoma':>10}{'other':>8}{'mel. %':>8}{'masks':>8}{'Task 2':>8}")
for r in rows:
    print(
        f"{r['split']:<12}{r['images']:>8}{r['melanoma']:>10}{r['other']:>8}"
        f"{100 * r['melanoma_share']:>7.1f}%{r['lesion_masks']:>8}{r['dermo_features']:>8}"
    )
plots.save_figure(fig := plots.plot_class_balance(rows), out_dir / "class_balance.png")
fig

# %% [markdown]
# Melanoma is the minority class. The paper counters it twice: the training list repeats every melanoma four
# times (oversampling), and the loss is the focal loss, which down-weights easy examples. The training
# list after oversampling:

# %%
training = splits["Training"]
oversampled = data.oversample(training, factor=4)
counts = oversampled.class_counts()
print(f"Training list: {len(training)} images -> {len(oversampled)} entries after 4x oversampling; "
      f"melanoma share {counts.get(1, 0) / len(oversampled):.1%}")

# %% [markdown]
# ## Images, lesion masks and dermoscopic features
#
# Each image is shown after the preprocessing of the paper (centre crop to 0.8 of the short side, resize to
# the profile's `resize`). The green outline is the lesion mask (Part 1); the cyan shading is the **Dermo ROI**,
# the union of the four Task 2 dermoscopic features (pigment network, negative network, milia-like cysts,
# streaks), where a superpixel belongs to the ROI when any of its feature values is at least
# {glue:text}`dermo_threshold`.

# %%
from myst_nb import glue  # noqa: E402

glue("dermo_threshold", f"{data.DERMO_THRESHOLD:g}", display=False)
rng = np.random.default_rng(seed)
by_class = {label: [s for s in training if s.label == label] for label in (1, 0)}
gallery = [
    by_class[label][i] for label in (1, 0) for i in rng.permutation(len(by_class[label]))[: n_show // 2]
]
previews = [data.preview_sample(s, resize=config.resize, dermo=True) for s in gallery]
fig = plots.plot_samples(
    [p["image"] for p in previews],
    [p["mask"] for p in previews],
    [f"{s.image_id}\n{'melanoma' if s.label else 'other'}" for s in gallery],
    dermo=[p["dermo"] for p in previews],
)
plots.save_figure(fig, out_dir / "gallery.png")
fig

# %% [markdown]
# ## Run-time augmentation
#
# Training views are random crops of the preprocessed image rotated by a random multiple of 90 degrees and
# flipped; the lesion mask goes through the same `torchvision.transforms.v2` pipeline, so it always stays
# aligned with its image. Evaluation uses the centre crop only.

# %%
original, views, view_masks = data.training_views(gallery[0], config.image_size, config.resize, n=4, seed=seed)
fig = plots.plot_augmentations(
    original, views, view_masks, f"{gallery[0].image_id}: {config.image_size} px training views"
)
plots.save_figure(fig, out_dir / "augmentation.png")
fig

# %% [markdown]
# ## Normalisation statistics
#
# The authors normalise with per-dataset statistics, not ImageNet's: the mean of the pixel values and the
# mean of the per-image channel standard deviations over the augmented training set. Computed here on the
# training list (a seeded subset of `stats_images` images), beside the authors' ISIC 2017 values:

# %%
subset = training if not stats_images or stats_images >= len(training) else training[:stats_images]
stats = data.normalisation_stats(
    subset, size=config.image_size, resize=config.resize, seed=seed, num_workers=0
)
print(f"{'':<22}{'mean (R, G, B)':<28}std (R, G, B)")
print(f"{'ours, ' + str(stats.n_images) + ' images':<22}{str(tuple(round(v, 4) for v in stats.mean)):<28}"
      f"{tuple(round(v, 4) for v in stats.std)}")
print(f"{'authors, ISIC 2017':<22}{str(tuple(data.ISIC2017_MEAN)):<28}{tuple(data.ISIC2017_STD)}  (paper's code)")

# %% [markdown]
# ## The spurious artifact (synthetic set only)
#
# The synthetic set can place a coloured sticker or ink mark outside the lesion whose presence correlates
# with the label in Training, Validation and Test_v2 (`synthetic_artifact_bias`), and is independent of it in
# `Test_shift`. Chapter 5 uses it to measure shortcut learning. The share of images with the artifact:

# %%
artifacts = data.artifact_table(splits)
for r in artifacts:
    print(f"{r['split']:<12} melanoma {r['artifact_share_melanoma']:.0%}   other {r['artifact_share_other']:.0%}")
if not artifacts:
    print("no artifact annotations in this dataset (real data)")
summary = {"root": str(root), "splits": rows, "artifacts": artifacts, "oversampled_counts": counts,
           "normalisation": {"mean": stats.mean, "std": stats.std, "n_images": stats.n_images}}
atomic_write_json(out_dir / "data_summary.json", summary)

# %% [markdown]
# ## Summary
#
# - The readers take the official layouts as downloaded and pair files by image id; every split above was
#   read that way, with its lesion masks and, where present, the Task 2 dermoscopic features.
# - Melanoma is the minority class; oversampling positives 4x brings it close to balance.
# - Images and masks share one augmentation pipeline; normalisation statistics are computed per dataset.
