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
# # 2. Architecture: AttnMel-CNN and its baselines
#
# This chapter reproduces Sect. 2 of the paper (Fig. 1-2, Eq. 1-5): it builds the four networks of the
# ablation study, counts their parameters against the reference implementation, and follows one batch
# through AttnMel-CNN to show the shapes of the features and of the attention maps.
#
# **Overview.** The backbone is VGG-16 with batch normalisation (the authors' released code uses
# `vgg16_bn`), cut into five convolutional blocks at its max-pools. The outputs of pool-3 ($\mathcal{F}^{(3)}$)
# and pool-4 ($\mathcal{F}^{(4)}$) are re-weighted by attention maps guided by the spatial pool-5 map
# $\mathcal{G}$.

# %% tags=["parameters"]
profile = "smoke"  # smoke | smoke-mini | isic2017-cpu | paper | scratch | scratch-cpu (this chapter trains nothing; the profile sets the input size)
data_root = ""  # unused here; every chapter accepts it
device = "auto"  # auto | cpu | cuda | mps
runs_dir = "runs"  # artefacts go to <runs_dir>/02_architecture
image_size = 0  # input size in px; 0: the profile size
batch_size = 2  # images in the demonstration batch
seed = 0  # seed for the random batch and initialisation

# %%
from pathlib import Path

import torch

import attnmel
from attnmel import models
from attnmel.config import PRESETS
from attnmel.io import atomic_write_json

torch.manual_seed(seed)
size = image_size or PRESETS[profile]["image_size"]  # the profile's input size; no data is read here
out_dir = Path(runs_dir) / "02_architecture"
print(f"attnmel {attnmel.__version__}, torch {torch.__version__}; profile {profile!r}, input {size}x{size}")

# %% [markdown]
# ## The attention module (Eq. 1-3)
#
# For an intermediate feature map $\mathcal{F} = (\mathbf{f}_1, \dots, \mathbf{f}_n)$ and the global map
# $\mathcal{G}$ (pool-5), the module computes a one-channel response, normalises it, and re-weights the features:
#
# $$\mathcal{R} = \mathbf{W} \circledast \mathrm{ReLU}\big(\mathbf{W}_f \circledast \mathcal{F}
#   + \mathrm{up}(\mathbf{W}_g \circledast \mathcal{G})\big), \qquad
#   \mathcal{A} = \mathrm{Sigmoid}(\mathcal{R}), \qquad \hat{\mathbf{f}}_i = a_i \, \mathbf{f}_i .$$
#
# $\mathbf{W}_f$ and $\mathbf{W}_g$ are 1x1 convolutions with 256 filters, $\mathbf{W}$ outputs one channel and
# $\mathrm{up}$ is bilinear interpolation. The pooled attention feature is the mean over positions of
# $a_i \mathbf{f}_i$. The code is `attnmel.models.attention.AttentionBlock`:

# %%
import inspect

print(inspect.getsource(models.attention.AttentionBlock.forward))

# %% [markdown]
# ## Parameter counts
#
# The four networks of the ablation study, built for two classes. The reference counts are those of the
# authors' released code; removing VGG-16's dense layers saves about 119 M parameters.

# %%
reference_counts = {  # from the authors' released code (docs/REFERENCE.md, Model), 2 classes
    "attnmel_cnn": 15_184_964,
    "mel_cnn": 14_725_698,
    "vgg16_gap": 14_724_162,
    "vgg16": 134_277_186,
}
counts = {}
for name in reference_counts:
    net = models.build_model(name, num_classes=2)
    counts[name] = sum(p.numel() for p in net.parameters())
    del net
print(f"{'model':<14}{'ours':>14}{'reference':>14}  match")
for name, ref in reference_counts.items():
    print(f"{name:<14}{counts[name]:>14,}{ref:>14,}  {'yes' if counts[name] == ref else 'NO'}")

# %% [markdown]
# ## One batch through AttnMel-CNN
#
# The forward pass returns a named structure: the logits and the two attention maps. For a
# $224 \times 224$ input, pool-3 is $28 \times 28$ and pool-4 is $14 \times 14$; smaller inputs scale down.

# %%
net = models.attnmel_cnn(num_classes=2).eval()
x = torch.randn(batch_size, 3, size, size)
with torch.no_grad():
    pools = net.features(x)  # VGGFeatures(pool3, pool4, pool5): the backbone alone
    out = net(x)  # AttnMelOutput(logits, attn3, attn4)
shapes = {"input": list(x.shape)}
shapes |= {name: list(t.shape) for name, t in pools._asdict().items()}
shapes |= {name: list(t.shape) for name, t in out._asdict().items()}
for key, shape in shapes.items():
    print(f"{key:<12} {tuple(shape)}")

# %%
atomic_write_json(out_dir / "architecture.json", {"image_size": size, "shapes": shapes, "parameters": counts})
print(f"wrote {out_dir / 'architecture.json'}")

# %% [markdown]
# ## Summary
#
# - AttnMel-CNN adds two attention modules and one linear classifier to a dense-free VGG-16: the parameter
#   counts above match the reference implementation.
# - Global average pooling everywhere means any input size from 32 px up works; the attention maps have
#   1/8 and 1/16 of the input's side.
# - The losses that train it (focal loss and the Dice regulariser of Eq. 4-5) are in `attnmel.losses` and
#   used in {doc}`03_training`.
