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
# # 3. Training: one AttnMel-CNN run under the paper's protocol
#
# This chapter reproduces the training protocol of Sect. 3.1 with one AttnMel-CNN run: the focal loss, SGD
# with Nesterov momentum, the learning rate divided by 10 every `lr_step` epochs, oversampled melanomas, and
# the best epoch chosen by the validation AUC. It then evaluates that epoch on the test split with the
# paper's metrics (AP and AUC, from scikit-learn) and the ones the paper lacked: bootstrap confidence
# intervals, sensitivity and specificity, and calibration.
#
# The loss is the focal loss of Lin et al., with $p_t$ the probability of the true class and $\gamma = 2$:
#
# $$\mathcal{L}_{focal} = -\frac{1}{N} \sum_{j=1}^{N} (1 - p_{t,j})^{\gamma} \log p_{t,j} .$$

# %% tags=["parameters"]
profile = "smoke"  # smoke | smoke-mini | isic2017-cpu | paper | scratch | scratch-cpu
data_root = ""  # dataset folder in the official layout; "": the profile default, synthetic for smoke
device = "auto"  # auto | cpu | cuda | mps
runs_dir = "runs"  # the run folder is <runs_dir>/03_training
model = "attnmel_cnn"  # attnmel_cnn | mel_cnn | vgg16_gap | vgg16
epochs = 0  # 0: the profile default
seed = 0  # seed for initialisation, data order and augmentation
reuse_run = False  # True: reuse a finished run with the same settings instead of training again

# %%
# %matplotlib inline
import shutil
from pathlib import Path

import torch
from IPython.display import Markdown

import attnmel
from attnmel import experiments, plots
from attnmel.config import TrainConfig

run_dir = Path(runs_dir) / "03_training"
overrides = {"runs_root": runs_dir, "run_dir": str(run_dir), "model": model, "seed": seed}
overrides |= {"data_root": data_root} if data_root else {}
overrides |= {"epochs": epochs} if epochs else {}
overrides |= {"device": device} if device != "auto" else {}
config = TrainConfig.from_preset(profile, **overrides)
if run_dir.exists() and not reuse_run:
    shutil.rmtree(run_dir)  # a fresh run: every number below comes from this execution
print(f"attnmel {attnmel.__version__}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
print(f"profile {profile!r}: {config.model} on {config.dataset}, {config.image_size} px, {config.epochs} epochs, "
      f"batch {config.batch_size}, lr {config.lr}, device {config.device}, precision {config.precision}")

# %% [markdown]
# ## Training
#
# One call trains, validates after every epoch, keeps the best and the latest checkpoints, and evaluates the
# best epoch on the evaluation splits. Everything lands in the run folder. Run interactively (JupyterLab),
# the chapter shows progress bars for the epochs and batches; the book build and CI run it without them
# (`attnmel.progress.watching()` decides, for every bar of the package).

# %%
run = experiments.run_or_load(config, reuse=reuse_run)
print(f"best epoch {run.best_epoch} of {len(run.history)}, training time {run.seconds / 60:.1f} min")
print("run folder:", sorted(p.name for p in run.run_dir.iterdir() if not p.name.startswith(".")))  # not the lock record

# %% [markdown]
# ## Learning curves
#
# The training loss with its parts (the Dice terms are zero without an ROI), the validation AP and AUC, and
# the learning rate. The dashed line marks the epoch kept, the one with the best validation AUC.

# %%
fig = plots.plot_history(run.history, best_epoch=run.best_epoch)
plots.save_figure(fig, run.run_dir / "figures" / "history.png")
fig

# %% [markdown]
# ## Test results
#
# AP and AUC of the kept epoch on each evaluation split, with bootstrap 95% confidence intervals
# (stratified resampling), and the threshold metrics at a melanoma probability of 0.5.

# %%
Markdown(f"**{config.dataset}, model `{config.model}`, profile `{profile}`, seed {seed}**\n\n"
         + experiments.metrics_markdown(run.metrics) + f"\n\n{experiments.profile_caption(profile, config, 1)}")

# %% [markdown]
# ## ROC and precision-recall curves, calibration

# %%
curves = {split: run.predictions(split)[1:] for split in run.metrics}
fig = plots.plot_roc_pr(curves)
plots.save_figure(fig, run.run_dir / "figures" / "roc_pr.png")
fig

# %%
test_split = experiments.test_split(config)
fig = plots.plot_reliability(*curves[test_split], label=test_split)
plots.save_figure(fig, run.run_dir / "figures" / "reliability.png")
fig

# %% [markdown]
# ## Summary
#
# - The trainer reproduces the authors' protocol; the kept epoch is the one with the best validation AUC.
# - Under the `smoke` profile these are synthetic-data numbers: they show the pipeline learns, not the
#   paper's figures. The `isic2017-cpu` and `paper` profiles run the same chapter on real data.
# - Chapter 4 repeats this run for every model of the ablation study.
