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
# # 4. Ablations: Tables 1 and 2
#
# This chapter reproduces the ablation study of Sect. 3.2. The paper trains seven models under one protocol (the profile decides how many this chapter trains, and says so below):
#
# - **VGG-16**: the original network with its dense layers and a new two-way output;
# - **VGG-16-GAP**: the dense layers replaced by global average pooling (no attention);
# - **Mel-CNN**: our head with plain global average pooling of pool-3 and pool-4 (attention removed);
# - **AttnMel-CNN**: the proposed network, focal loss only;
# - **AttnMel-CNN-Lesion / -Dermo / -Bkg**: the same network trained with the Dice regulariser of Eq. 5
#   towards the lesion, the dermoscopic features, or the background (a deliberately wrong ROI):
#
# $$\mathcal{L}_D(\mathcal{A}, \bar{\mathcal{A}}) = 1 - \frac{2 \sum_i a_i \bar{a}_i}{\sum_i (a_i + \bar{a}_i)},
#   \qquad \mathcal{L} = \mathcal{L}_{focal} + 0.001\, \mathcal{L}_D(\mathcal{A}^{(3)}, \bar{\mathcal{A}}^{(3)})
#   + 0.01\, \mathcal{L}_D(\mathcal{A}^{(4)}, \bar{\mathcal{A}}^{(4)}) .$$
#
# The results are laid out like the paper's Tables 1 (ISIC 2016) and 2 (ISIC 2017), with the paper's figures
# beside ours and bootstrap 95% confidence intervals. Beyond the paper, the last section puts AttnMel-CNN and
# the GAP baseline on a ResNet-50 backbone, to see whether attention helps a modern backbone too. The paper's figures are copied from the paper and
# marked as such; every other number is computed below.

# %% tags=["parameters"]
profile = "smoke"  # smoke | smoke-mini | isic2017-cpu | paper | scratch | scratch-cpu
data_root = ""  # ISIC 2017 folder in the official layout; "": the profile default, synthetic for smoke
isic2016_root = ""  # ISIC 2016 folder for Table 1; "": no ISIC 2016 runs
ph2_root = ""  # PH2 folder: a PH2 column in Table 2 (external test set, never trained on); "": none
device = "auto"  # auto | cpu | cuda | mps
runs_dir = "runs"  # the runs go to <runs_dir>/04_ablations/<model>
epochs = 0  # 0: the profile default
image_size = 0  # 0: the profile default
variants = "profile"  # comma-separated model names, "all" (the paper's seven), or "profile" (the profile's study)
reuse_runs = False  # True: reuse finished runs with the same settings instead of training again
backbone_study = "profile"  # True: also train AttnMel-CNN and GAP on ResNet-50 (not in the paper); "profile": its study
seeds = 0  # training seeds per model for the across-seeds table (seed 0 is Table 2's run); 0: the profile's study

# %%
# %matplotlib inline
import shutil
import time
from pathlib import Path

import torch
from IPython.display import Markdown

import attnmel
from attnmel import experiments, plots
from attnmel.io import atomic_write_json

study = experiments.study_of(profile)  # what this profile's budget trains: models, seeds, ResNet-50 rows
paper_variants = [n for n in experiments.VARIANTS if n in experiments.PAPER_TABLE2]  # the paper's seven
names = {"all": paper_variants, "profile": list(study.variants)}.get(variants) or [
    v.strip() for v in variants.split(",")]
seeds = seeds or study.seeds
backbone_study = study.backbones if backbone_study == "profile" else bool(backbone_study)
out_dir = Path(runs_dir) / "04_ablations"
base = experiments.profile_config(
    profile, data_root=data_root, device=device, runs_dir=runs_dir, many_runs=True, epochs=epochs,
    image_size=image_size,
)
names, skipped = experiments.usable_variants(base, names)
caption = experiments.profile_caption(profile, base, seeds)
if out_dir.exists() and not reuse_runs:
    shutil.rmtree(out_dir)  # fresh runs: every number below comes from this execution
print(f"attnmel {attnmel.__version__}, torch {torch.__version__}; profile {profile!r}")
print(f"protocol: {base.dataset}, {base.image_size} px, {base.epochs} epochs, batch {base.batch_size}, "
      f"lr {base.lr} (x{base.lr_gamma} every {base.lr_step}), sampler {base.sampler}, precision {base.precision}")
print(f"models: {', '.join(names)}; {seeds} seed(s)" + "".join(f"\nleft out {n}: {why}" for n, why in skipped.items()))
if base.dataset == "synthetic":
    print(f"synthetic set: {base.synthetic_n} images, difficulty {base.synthetic_difficulty} "
          "(subtle melanomas, atypical nevi and benign mimics of melanoma's cues; 0 = every model near AUC 1)")

# %% [markdown]
# ## Training the models
#
# Under `smoke` and `paper` these are the paper's seven. `isic2017-cpu` trains four of them, the paper's
# central contrasts (GAP vs attention, no ROI vs the lesion ROI), to fit two hours on a 2-core CPU; a model whose
# annotations the data lacks (Dermo needs ISIC 2017 Task 2) is left out, and the line above says so.

# %%
start = time.perf_counter()
runs = experiments.run_variants(base, out_dir / "isic2017", names, reuse=reuse_runs, log=lambda m: None)
for name, run in runs.items():
    val = max(float(r["val_auc"]) for r in run.history)
    print(f"{name:<20} best epoch {run.best_epoch:>2}, val AUC {val:.3f}, {run.seconds:6.0f} s")
print(f"all models: {(time.perf_counter() - start) / 60:.1f} min")

# %% [markdown]
# ## Table 2: the ISIC 2017 protocol
#
# Test split of the dataset this profile trains on (under `smoke`, the synthetic set's Test_v2 split, drawn
# at the difficulty printed above: the paper's figures are ISIC 2017's and are shown for the layout, not for
# comparison). The intervals are bootstrap intervals over the test images of one training run (seed 0): under `smoke` a test split of 60 images, under the ISIC profiles 600. Given a PH2 folder
# (`ph2_root`, or `make book PH2=...`), each model's best checkpoint is also scored on PH2, which none of them
# saw in training: a check of how the ranking carries over to an external set. The paper reports no PH2 figures.

# %%
test_split = experiments.test_split(base)
external = experiments.evaluate_external(runs, "ph2", ph2_root, n_boot=base.n_boot, reuse=reuse_runs,
                                         log=lambda m: None) if ph2_root else None
table2 = experiments.results_table(runs, test_split, experiments.PAPER_TABLE2, external=external)
atomic_write_json(out_dir / "table2.json", {"profile": profile, "dataset": base.dataset, "split": test_split,
                                            "rows": table2})
Markdown(f"**{base.dataset}, {test_split}, profile `{profile}`, seed {base.seed}**\n\n"
         + experiments.markdown_table(table2) + f"\n\n{experiments.profile_caption(profile, base, 1)}")

# %% [markdown]
# ## Across seeds: which differences survive a change of seed?
#
# One training run is one draw: another seed (initial weights, data order, augmentation) gives another AUC.
# Each model is trained with `seeds` seeds under the same protocol; the table gives the mean ± sd of the
# Test_v2 AUC with the 95% interval of the mean, and each model's difference to AttnMel-CNN **paired by seed**
# with its 95% interval. An interval that contains 0 means the seeds cannot tell the two models apart. The test
# images are the same for every seed, so this is the spread due to training, not to the test sample.

# %%
start = time.perf_counter()
seed_list = list(range(base.seed, base.seed + max(1, seeds)))
seed_runs = experiments.run_variant_seeds(base, out_dir / "isic2017", names, seed_list, reuse=True,
                                          log=lambda m: None)
reference = "AttnMel-CNN" if "AttnMel-CNN" in names else names[0]
seed_rows = experiments.seeds_table(seed_runs, test_split, "auc", reference=reference)
atomic_write_json(out_dir / "seeds.json", {"profile": profile, "split": test_split, "seeds": seed_list,
                                           "reference": reference, "rows": seed_rows})
print(f"{len(seed_list)} seed(s) x {len(names)} models: {(time.perf_counter() - start) / 60:.1f} min "
      f"(the seed-{base.seed} runs are Table 2's)")
Markdown(f"**{base.dataset}, {test_split}, profile `{profile}`, seeds {', '.join(map(str, seed_list))}**\n\n"
         + experiments.seeds_markdown(seed_rows, reference=reference) + f"\n\n{caption}\n\n"
         + experiments.seeds_findings(seed_rows, reference))

# %%
auc_by_seed = {r["method"]: r["per_seed"] for r in seed_rows}
fig = plots.plot_paired_differences(auc_by_seed, reference, metric="AUC") if len(seed_list) > 1 else \
    plots.plot_seed_distribution(auc_by_seed, metric="AUC")
plots.save_figure(fig, out_dir / "seeds.png")
fig

# %% [markdown]
# ## Table 1: the ISIC 2016 protocol
#
# Table 1 has the four models without ROI regularisation (ISIC 2016 has no dermoscopic-feature annotations).
# It needs an ISIC 2016 folder (`isic2016_root`); without one, only the paper's figures are shown.

# %%
runs2016 = {}
if isic2016_root:
    base2016 = base.replace(dataset="isic2016", data_root=isic2016_root, passes_per_epoch=None)
    runs2016 = experiments.run_variants(base2016, out_dir / "isic2016", list(experiments.PAPER_TABLE1),
                                        reuse=reuse_runs, log=lambda m: None)
table1 = experiments.results_table(runs2016, "Test", experiments.PAPER_TABLE1)
atomic_write_json(out_dir / "table1.json", {"profile": profile, "dataset": "isic2016", "rows": table1})
note = "" if runs2016 else "(no ISIC 2016 runs under this profile: our columns are empty)\n\n"
Markdown(f"**isic2016, Test, profile `{profile}`** {note}" + experiments.markdown_table(table1, with_dermo=False))

# %% [markdown]
# ## ROC curves of the models

# %%
fig = plots.plot_roc_pr({name: run.predictions(test_split)[1:] for name, run in runs.items()})
plots.save_figure(fig, out_dir / "roc_pr.png")
fig

# %% [markdown]
# ## Beyond the paper: attention on a ResNet-50 backbone
#
# The same two heads on torchvision's ResNet-50 (attention on layer2 and layer3, guided by layer4; GAP + linear
# on layer4), trained under the same protocol, profile and seed as the VGG rows above. Not in the paper, so no
# paper columns.

# %%
start = time.perf_counter()
modern = ["ResNet-50-GAP", "AttnMel-CNN-ResNet-50"] if backbone_study else []
runs_r50 = {}
if modern:  # (run_variants with no names would train every variant)
    runs_r50 = experiments.run_variants(base, out_dir / "isic2017", modern, reuse=reuse_runs, log=lambda m: None)
extra_seconds = time.perf_counter() - start
compared = {n: r for n, r in (runs | runs_r50).items() if n in ("VGG-16-GAP", "AttnMel-CNN", *modern)}
rows = experiments.results_table(compared, test_split)
preset = experiments.MANY_RUNS_PRESET.get(profile, profile)
atomic_write_json(out_dir / "backbones.json", {"profile": profile, "preset": preset, "seed": base.seed,
                                               "split": test_split, "seconds": extra_seconds, "rows": rows})
print(f"ResNet-50 trainings: {extra_seconds:.0f} s")
Markdown(f"**{base.dataset}, {test_split}, profile `{profile}` (preset `{preset}`, {base.image_size} px, "
         f"{base.epochs} epochs), seed {base.seed}**\n\n" + experiments.markdown_table(rows)
         + ("" if modern else "\n\n*Not trained under this profile (`backbone_study`): the rows above are the VGG "
                              "models of Table 2.*"))

# %% [markdown]
# ## Summary
#
# - One protocol for every model: the tables above are computed from the run folders in `04_ablations/`, with
#   95% bootstrap intervals; overlapping intervals mean the test set cannot tell two models apart.
# - The across-seeds table asks the other question: would the ranking survive another training run? A paired
#   difference whose interval contains 0 is not a finding, whatever the single-seed table suggests.
# - The paper's claims to check on real data (profiles `isic2017-cpu` and `paper`): attention beats plain
#   pooling (AttnMel-CNN vs Mel-CNN), lesion or dermoscopic ROIs help, a background ROI hurts.
# - The ResNet-50 rows ask whether attention helps a modern backbone too; under the `smoke` profile they show
#   that the pipeline runs, not the answer (a few hundred 64 px synthetic images).
# - Chapter 5 reuses these runs to evaluate the attention maps themselves.
