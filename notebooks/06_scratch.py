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
# # 6. Without ImageNet: a recipe for training from scratch
#
# The paper starts every model from ImageNet weights. Some users cannot: offline hospital machines,
# licensing rules, or a study of what the data alone supports. From scratch, the paper's protocol meets a
# small training set (about 2000 ISIC 2017 images) with nothing to hold the network back, and it overfits:
# the training loss keeps falling while the validation AUC stalls.
#
# This chapter builds a recipe against that, one step at a time, and measures each step over several seeds:
#
# 1. **scale and colour jitter**: a RandomResizedCrop over 35-100% of the image area (aspect 3/4 to 4/3) and
#    brightness, contrast and saturation changes of up to 20% with a small hue shift: other zooms, other
#    dermoscopes;
# 2. **label smoothing and mixup**: softer targets, so the network cannot drive the loss to zero on 2000 images;
# 3. **warm-up and cosine decay**: a gentler start from random weights and a smooth end;
# 4. **an exponential moving average (EMA) of the weights**: the average is what is validated and saved;
# 5. **the last epoch instead of the best validation AUC**: ISIC 2017's validation split has 150 images (30
#    melanomas), so its AUC varies by about 0.05 from noise alone, and picking the best epoch by it picked early,
#    barely trained epochs from scratch.
#
# Each option is a `TrainConfig` field whose default is the paper's value. The `scratch` preset (GPU, 224 px)
# switches them all on. The `scratch-cpu` preset (128 px, 2 CPU cores) keeps only steps 3 and 5: the last part
# of this chapter found that none of the five helped within its budget, and taking steps 1, 2 and 4 out together
# scored higher on both seeds, while steps 3 and 5 pointed nowhere or the recipe's way.

# %% tags=["parameters"]
profile = "smoke"  # smoke | smoke-mini | isic2017-cpu | paper | scratch | scratch-cpu
data_root = ""  # ISIC 2017 folder in the official layout; "": the profile default, synthetic for smoke
ph2_root = ""  # PH2 folder: each step's PH2 AUC (external test set, never trained on); "": none
device = "auto"  # auto | cpu | cuda | mps
runs_dir = "runs"  # reads <runs_dir>/04_ablations (the paper-protocol runs), writes <runs_dir>/06_scratch
epochs = 0  # 0: the profile default (must match chapter 4 to reuse its runs)
image_size = 0  # 0: the profile default (must match chapter 4 to reuse its runs)
ladder_seeds = -1  # seeds per step of the ladder; -1: the profile's study (0 under isic2017-cpu: opt in)
reuse_runs = False  # True: reuse finished ladder runs with the same settings instead of training again
parallel = 0  # ladder runs trained at once; 0: the default (one at a time on a CPU, several on a GPU for the preset)
preset_seeds = 0  # seeds per row of the scratch-cpu ladder on ISIC 2017 (needs data_root); 0: not trained
component_seeds = 0  # seeds of the 6-epoch recipe and of each component left out of it (needs data_root)
components = ""  # which of SCRATCH_CPU_COMPONENTS, by folder, comma-separated (e.g. "short-no-mixup"); "": all
seed = 0  # seed of the augmentation views and the first training seed

# %%
# %matplotlib inline
import shutil
import time
from pathlib import Path

import torch
from IPython.display import Markdown, display

import attnmel
from attnmel import data, experiments, interpret, loaders, plots
from attnmel.config import (
    CPU_REGULARISERS,
    RECIPE_STEPS,
    SCRATCH_CPU_COMPONENTS,
    SCRATCH_CPU_CONTRASTS,
    SCRATCH_CPU_STEPS,
    SCRATCH_RECIPE,
    WITHOUT_REGULARISATION,
    TrainConfig,
)
from attnmel.io import atomic_write_json
from attnmel.trainer import lr_factor

out_dir = Path(runs_dir) / "06_scratch"
base = experiments.profile_config(
    profile, data_root=data_root, device=device, runs_dir=runs_dir, many_runs=True, epochs=epochs,
    image_size=image_size, seed=seed,
)
study = experiments.study_of(profile)
seeds = study.ladder_seeds if ladder_seeds < 0 else ladder_seeds
if out_dir.exists() and not reuse_runs:
    shutil.rmtree(out_dir)  # fresh runs: every number below comes from this execution
print(f"attnmel {attnmel.__version__}, torch {torch.__version__}; profile {profile!r}")
print(f"protocol: {base.dataset}, {base.image_size} px, {base.epochs} epochs, weights {base.weights}; "
      f"ladder: {len(RECIPE_STEPS)} steps x {seeds} seed(s)")

# %% [markdown]
# ## What the recipe does to an image
#
# Chapter 1 showed the paper's training views: a fixed-size random crop, rotations and flips. The recipe adds
# scale and colour jitter; the lesion outline goes through the same transform.

# %%
root = loaders.ensure_synthetic(base)  # the synthetic set is made once (here, when this chapter runs alone)
sample = loaders.load_split(base, root, base.splits[0])[0]
original, views, masks = data.training_views(
    sample, base.image_size, base.resize, n=4, seed=seed, crop_scale=SCRATCH_RECIPE["crop_scale"],
    color_jitter=SCRATCH_RECIPE["color_jitter"],
)
fig = plots.plot_augmentations(original, views, masks, f"{sample.image_id}: the recipe's training views")
plots.save_figure(fig, out_dir / "views.png")
fig

# %% [markdown]
# ## Softer targets, and a gentler schedule
#
# Label smoothing replaces the one-hot target of class $y$ by $q = (1 - \varepsilon)\,\mathbf{e}_y +
# \varepsilon / K$; mixup trains on $\tilde{x} = \lambda x_i + (1 - \lambda) x_j$ with the target $\tilde{q} =
# \lambda q_i + (1 - \lambda) q_j$, $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$. The focal loss takes the soft
# target as a sum over classes, which is the paper's loss again for a one-hot $q$:
#
# $$\mathcal{L}_{focal} = -\frac{1}{N} \sum_{j=1}^{N} \sum_{k=1}^{K} q_{j,k} (1 - p_{j,k})^{\gamma} \log p_{j,k} .$$
#
# The learning rate per epoch, the paper's steps beside the recipe's warm-up and cosine, for this profile's
# epochs:

# %%
recipe = experiments.with_recipe(base, SCRATCH_RECIPE)
schedules = {
    name: [c.lr * lr_factor(e, schedule=c.lr_schedule, warmup=c.warmup_epochs, epochs=c.epochs, step=c.lr_step,
                            gamma=c.lr_gamma) for e in range(c.epochs)]
    for name, c in (("paper: steps", base), ("recipe: warm-up + cosine", recipe))
}  # fmt: skip
fig = plots.plot_lr_schedules(schedules)
plots.save_figure(fig, out_dir / "lr.png")
fig

# %% [markdown]
# ## The ladder: one step at a time, over seeds
#
# The first row is the paper's protocol from scratch: chapter 4's AttnMel-CNN runs, reused. Each later row
# adds its step to all the rows above it and is trained with every seed. The paired columns compare AUCs seed
# by seed: with the step before (that step's own effect, given the earlier ones) and with the paper's protocol
# (the recipe so far). Their intervals are Student-t over seeds: with two seeds, one degree of freedom, so they
# are wide. Below the table, each seed's difference to the step before is also paired over the test images (the
# bootstrap of `attnmel compare`), which holds test-set noise only. The attention column is the pool-4 Jaccard with
# the lesion masks, as in Table 3.

# %%
start = time.perf_counter()
rows = []
if seeds > 0:
    seed_list = list(range(base.seed, base.seed + seeds))
    ladder = experiments.run_recipe_ladder(base, out_dir / "ladder", seed_list,
                                           chapter4_dir=Path(runs_dir) / "04_ablations" / "isic2017",
                                           reuse=reuse_runs, log=lambda m: None,
                                           parallel=parallel or None)  # fmt: skip
    test_split = experiments.test_split(base)
    mask_split = interpret.mask_split(base)
    extra, titles = experiments.ladder_extras(ladder, mask_split, ph2_root)  # pool-4 Jaccard; PH2 AUC if given
    rows = experiments.ladder_table(ladder, test_split, extra)
    atomic_write_json(out_dir / "ladder.json", {"profile": profile, "split": test_split, "seeds": seed_list,
                                                "steps": [list(s) for s in RECIPE_STEPS], "rows": rows})
    print(f"{len(RECIPE_STEPS)} steps x {seeds} seeds: {(time.perf_counter() - start) / 60:.1f} min")
    findings = experiments.ladder_findings(ladder, rows)  # by seed, and per seed on the same test images
    findings.append(experiments.paired_verdict("The whole recipe", "the paper's protocol", rows[-1]["vs_paper"]))
    display(Markdown(
        f"**{base.dataset}, {test_split}, profile `{profile}`, seeds {', '.join(map(str, seed_list))}**\n\n"
        + experiments.ladder_markdown(rows, titles)
        + f"\n\n{experiments.profile_caption(profile, base, seeds)}\n\n" + "\n".join(f"- {f}" for f in findings)
    ))  # fmt: skip
elif any(getattr(base, k) != getattr(TrainConfig(), k) for k in SCRATCH_RECIPE):
    display(Markdown(f"*Profile `{profile}` already sets the recipe's options; the ladder, which starts from the "
                     "paper's protocol, runs under `smoke`, `isic2017-cpu` or `paper`.*"))
else:
    display(Markdown(
        f"*Not trained under profile `{profile}`: the ladder is {len(RECIPE_STEPS)} steps x 2 seeds of "
        f"{base.epochs}-epoch runs on top of this profile's other chapters. Run this chapter alone with "
        f"`-p ladder_seeds 2` (see the README).*"
    ))  # fmt: skip

# %% [markdown]
# ## What the CPU preset adds
#
# The `scratch-cpu` preset is the recipe at 128 px for 2 CPU cores, less its augmentation and regularisers (the
# next section shows why), plus two choices of its own: Shades of Gray colour constancy (each image divided by its
# $L^6$ illuminant estimate, in training and evaluation alike) and 16 epochs, with two warm-up epochs. What it
# keeps of the recipe is the learning rate of 0.01 with warm-up and cosine decay, and the last epoch. This second
# ladder starts from the preset at 6 epochs without colour constancy, adds colour constancy, then the 10 more
# epochs: its last row is the preset itself. It trains on ISIC 2017 only, and its 16-epoch rows take 44-83 minutes each on 2
# cores, so it is opt-in: `-p preset_seeds 2` with the `isic2017-cpu` profile and `data_root` (see the README).
#
# Beside the ladder, the same seeds train the preset twice more, each time with one of its choices changed
# (`SCRATCH_CPU_CONTRASTS`), and each is paired with the preset by seed, in one table:
#
# - the recipe's augmentation and regularisation put back (`CPU_REGULARISERS`: scale and colour jitter, label
#   smoothing 0.1, mixup 0.2, an EMA decay of 0.99, weight decay $5 \times 10^{-4}$): at the full 16 epochs,
#   where overfitting is what they are there for, is the preset right to leave them out?
# - no colour constancy, at the full 16 epochs: the ladder adds it at 6 epochs, where a gain may only be a
#   faster start.

# %%
if preset_seeds > 0:
    if not data_root:
        raise ValueError("preset_seeds needs data_root: the scratch-cpu ladder trains on ISIC 2017")
    cpu = experiments.profile_config("scratch-cpu", data_root=data_root, device=device, runs_dir=runs_dir)
    preset_list = list(range(seed, seed + preset_seeds))
    start = time.perf_counter()
    preset_ladder = experiments.run_config_ladder(cpu, SCRATCH_CPU_STEPS, out_dir / "preset", preset_list,
                                                  reuse=reuse_runs, log=lambda m: None,
                                                  parallel=parallel or None)  # fmt: skip
    cpu_test, cpu_masks = experiments.test_split(cpu), interpret.mask_split(cpu)
    cpu_extra, cpu_titles = experiments.ladder_extras(preset_ladder, cpu_masks, ph2_root)
    cpu_rows = experiments.ladder_table(preset_ladder, cpu_test, cpu_extra)
    atomic_write_json(out_dir / "preset_ladder.json", {"profile": "scratch-cpu", "split": cpu_test,
                                                       "seeds": preset_list, "rows": cpu_rows,
                                                       "steps": [list(s) for s in SCRATCH_CPU_STEPS]})  # fmt: skip
    print(f"{len(SCRATCH_CPU_STEPS)} rows x {preset_seeds} seeds: {(time.perf_counter() - start) / 60:.1f} min")
    first_row = SCRATCH_CPU_STEPS[0][0]
    cpu_findings = experiments.ladder_findings(preset_ladder, cpu_rows, "the row before")
    display(Markdown(
        f"**{cpu.dataset}, {cpu_test}, preset `scratch-cpu`, seeds {', '.join(map(str, preset_list))}**\n\n"
        + experiments.ladder_markdown(cpu_rows, cpu_titles, first=f"'{first_row}'")
        + f"\n\n{experiments.profile_caption('scratch-cpu', cpu, preset_seeds)}\n\n"
        + "\n".join(f"- {f}" for f in cpu_findings)
    ))  # fmt: skip
    contrast_runs = experiments.run_contrasts(cpu, SCRATCH_CPU_CONTRASTS, out_dir, preset_list, reuse=reuse_runs,
                                              log=lambda m: None, parallel=parallel or None)  # fmt: skip
    contrasted = {"scratch-cpu": preset_ladder[SCRATCH_CPU_STEPS[-1][0]], **contrast_runs}
    contrast_extra, _ = experiments.ladder_extras(contrasted, cpu_masks, ph2_root)
    contrast_rows = experiments.contrast_table(contrasted, cpu_test, contrast_extra)
    atomic_write_json(out_dir / "preset_contrasts.json", {"profile": "scratch-cpu", "split": cpu_test,
                                                          "seeds": preset_list, "rows": contrast_rows,
                                                          "contrasts": [list(c) for c in SCRATCH_CPU_CONTRASTS]})  # fmt: skip
    display(Markdown(
        f"**{cpu.dataset}, {cpu_test}, preset `scratch-cpu` and its contrasts, seeds "
        f"{', '.join(map(str, preset_list))}**\n\n"
        + experiments.ladder_markdown(contrast_rows, cpu_titles, first="the scratch-cpu preset", previous=False)
        + f"\n\n{experiments.profile_caption('scratch-cpu', cpu, preset_seeds)}\n\n"
        + "\n".join(f"- {f}" for f in experiments.contrast_findings(contrasted, contrast_rows,
                                                                 "the scratch-cpu preset"))
    ))  # fmt: skip
else:
    display(Markdown(
        f"*Not trained in this execution: {len(SCRATCH_CPU_STEPS)} rows x 2 seeds of the `scratch-cpu` preset on "
        f"ISIC 2017, and 2 runs of each of its {len(SCRATCH_CPU_CONTRASTS)} contrasts ("
        + "; ".join(title.removeprefix("scratch-cpu ") for title, _, _ in SCRATCH_CPU_CONTRASTS)
        + "), take 5.5-10 hours on 2 cores. Run this "
        "chapter with `-p profile isic2017-cpu -p data_root <ISIC 2017 folder> -p preset_seeds 2 -p reuse_runs True` "
        "(see the README).*"
    ))  # fmt: skip

# %% [markdown]
# ## Which of the recipe's components the preset needs
#
# The contrast with the regularisers puts them all back at once. To see them one at a time within the
# `isic2017-cpu` budget (6 epochs at 128 px, 15-30 minutes a run on 2 cores), the same seeds train the whole
# recipe at 6 epochs with colour constancy (the ladder's second row with `CPU_REGULARISERS` back: the preset as it
# was before this study) and, beside it, that reference with one group of the recipe back at the paper's value
# (`SCRATCH_CPU_COMPONENTS`): no scale or colour jitter; no label smoothing or mixup; no EMA of the weights; no
# warm-up or cosine decay (the paper's step schedule, which within 6 epochs keeps the learning rate at 0.01). The
# last step of the recipe, keeping the last epoch, needs no training: the reference runs also kept their epoch of
# best validation AUC (`best_val.pt`), read back as a row of its own. The last row takes the regularisers (jitter,
# label smoothing and mixup, EMA) out at once and the weight decay back to $10^{-4}$, keeping the schedule: it is the `scratch-cpu` preset at 6 epochs, the ladder's
# second row, shared with it. Each row is paired by seed with the reference, not with the row above it. A
# component whose removal raises the AUC, or leaves it where it was, is not shown to earn its place at this
# length; this study is why `scratch-cpu` leaves the regularisers out, and the 16-epoch contrast above checks that
# choice at the preset's full length. Opt-in like the ladder: `-p component_seeds 2` with the `isic2017-cpu`
# profile and `data_root`; `-p components short-no-mixup` (folders, comma-separated) trains a subset.

# %%
if component_seeds > 0:
    if not data_root:
        raise ValueError("component_seeds needs data_root: the component contrasts train on ISIC 2017")
    cpu = experiments.profile_config("scratch-cpu", data_root=data_root, device=device, runs_dir=runs_dir)
    component_list = list(range(seed, seed + component_seeds))
    start = time.perf_counter()
    six_start = experiments.with_recipe(cpu, SCRATCH_CPU_STEPS[0][1])  # 6 epochs, before colour constancy
    # the preset at 6 epochs is the ladder's step-1 folder: reused from the ladder above when it ran
    six_runs = experiments.run_config_ladder(six_start, SCRATCH_CPU_STEPS[1:2], out_dir / "preset", component_list,
                                             first_step=1, log=lambda m: None)[SCRATCH_CPU_STEPS[1][0]]  # fmt: skip
    six = experiments.with_recipe(six_start, SCRATCH_CPU_STEPS[1][1])
    recipe_title = f"the whole recipe at {six.epochs} epochs, with colour constancy"
    recipe_runs = experiments.run_contrasts(six, [(recipe_title, "short-recipe", CPU_REGULARISERS)], out_dir,
                                            component_list, reuse=reuse_runs, log=lambda m: None)[recipe_title]  # fmt: skip
    recipe_six = six.replace(**CPU_REGULARISERS)
    chosen = experiments.pick_contrasts(SCRATCH_CPU_COMPONENTS, components)
    without = experiments.run_contrasts(recipe_six, chosen, out_dir, component_list, reuse=reuse_runs,
                                        log=lambda m: None, parallel=parallel or None)  # fmt: skip
    # the last-epoch choice trains nothing: the same runs, read back at their best validation epoch (best_val.pt)
    best_val_title = "the epoch of best validation AUC instead of the last"
    best_val = experiments.best_val_runs(recipe_runs, log=lambda m: None)
    lean_title = f"without jitter, smoothing, mixup and EMA, weight decay 1e-4: scratch-cpu at {six.epochs} epochs"
    component_runs = {recipe_title: recipe_runs, **without, best_val_title: best_val, lean_title: six_runs}
    six_test, six_masks = experiments.test_split(six), interpret.mask_split(six)
    six_extra, six_titles = experiments.ladder_extras(component_runs, six_masks, ph2_root)
    component_rows = experiments.contrast_table(component_runs, six_test, six_extra)
    atomic_write_json(out_dir / "components.json", {"profile": "scratch-cpu", "epochs": six.epochs, "split": six_test,
                                                    "seeds": component_list, "rows": component_rows,
                                                    "reference": [recipe_title, "short-recipe", CPU_REGULARISERS],
                                                    "components": [list(c) for c in chosen]  # and the rows read elsewhere
                                                    + [[best_val_title, "best-val", {"select_epoch": "val_auc"}],
                                                       [lean_title, "preset/step-1", WITHOUT_REGULARISATION]]})  # fmt: skip
    print(f"{len(component_runs)} rows x {component_seeds} seeds: "
          f"{(time.perf_counter() - start) / 60:.1f} min")  # fmt: skip
    display(Markdown(
        f"**{six.dataset}, {six_test}, the whole recipe at {six.epochs} epochs and its components, seeds "
        f"{', '.join(map(str, component_list))}**\n\n"
        + experiments.ladder_markdown(component_rows, six_titles, first=f"the {six.epochs}-epoch recipe", previous=False)
        + f"\n\n{experiments.profile_caption('scratch-cpu', recipe_six, component_seeds)}\n\n"
        + "\n".join(f"- {f}" for f in experiments.contrast_findings(component_runs, component_rows,
                                                                 f"the {six.epochs}-epoch recipe"))
    ))  # fmt: skip
else:
    display(Markdown(
        f"*Not trained in this execution: the whole recipe at 6 epochs, its {len(SCRATCH_CPU_COMPONENTS)} "
        "contrasts (" + "; ".join(title for title, _, _ in SCRATCH_CPU_COMPONENTS) + ") and the `scratch-cpu` preset "
        "at 6 epochs, 2 seeds each on ISIC 2017, take 3.2-6 hours on 2 cores, depending on the host (the row read "
        "back at its epoch of best validation AUC trains nothing). Run this chapter with `-p profile isic2017-cpu "
        "-p data_root <ISIC 2017 folder> -p component_seeds 2 -p reuse_runs True` (see the README).*"
    ))  # fmt: skip

# %% [markdown]
# ## Summary
#
# - Every step is an option of `TrainConfig` with the paper's value as its default, so `paper` stays the
#   authors' protocol; `scratch` is the whole recipe, and `scratch-cpu` keeps its schedule and last epoch only.
# - Read the paired columns, not the means: a step whose interval contains 0 did not show an effect with these
#   seeds, and is a candidate to drop from the recipe.
# - Under `smoke` the ladder runs on the synthetic testbed for a few epochs: it shows how the steps act on a
#   small set trained from scratch, not ISIC's answer. The real-data answer needs `isic2017-cpu` with
#   `ladder_seeds` set, or a GPU (`paper` profile with `--weights none`, or the `scratch` preset).
# - The CPU preset's own choices (colour constancy, 16 epochs instead of 6) are a ladder of their own, on ISIC 2017
#   only: `preset_seeds` trains it, and its last row is the `scratch-cpu` preset as `attnmel train` runs it. The
#   same seeds with the recipe's augmentation and regularisation put back, and without colour constancy, say
#   whether the preset is right about them. `component_seeds` undoes the recipe's components one group at a time
#   at 6 epochs: the study that took the regularisers out of the CPU preset.
