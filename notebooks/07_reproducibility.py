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
# # Reproducibility: how this book was built
#
# Every chapter of this book is a notebook executed by `make book` under one *profile*. This page records
# the machine that built it, how long each chapter took, how fast the network trains on this machine, and
# how to rebuild the book under each profile.
#
# | profile | data | model inputs | hardware | expected time |
# |---|---|---|---|---|
# | `smoke` | the built-in synthetic set | 64-96 px, 4 epochs; chapters 4-5: 7 models x 3 seeds | 2 CPU cores with bf16 | about 16 minutes |
# | `smoke-mini` | the built-in synthetic set | every chapter at the smallest preset | any CPU | a few minutes |
# | `isic2017-cpu` | real ISIC 2017 (`DATA=...`) | 128 px, from scratch, 6 epochs; chapters 4-5: 4 models x 1 seed | 2 CPU cores with bf16 | under 2 hours (94 min measured) |
# | `paper` | ISIC 2016 and 2017 | 224 px, ImageNet weights, 50 epochs; chapters 4-5: 7 models x 3 seeds | a GPU | about an hour per model |
#
# ```bash
# make book                                              # smoke: synthetic data, CPU
# make book PROFILE=isic2017-cpu DATA=/data/isic2017     # real ISIC 2017 on the CPU
# make book PROFILE=paper DATA=/data/isic2017 DEVICE=cuda
# make bench                                             # the full speed benchmark of this machine
# ```

# %% tags=["parameters"]
profile = "smoke"  # smoke | smoke-mini | isic2017-cpu | paper | scratch | scratch-cpu
data_root = ""  # unused here; every chapter accepts it
device = "auto"  # auto | cpu | cuda: the device the speed table measures
runs_dir = "runs"  # reads <runs_dir>/book_timings.json, writes <runs_dir>/07_reproducibility
benchmark = "quick"  # quick: a short measurement now | full results of make bench when present, else quick
quick_size = 128  # input size of the quick measurement
quick_batch = 8  # batch size of the quick measurement

# %%
import json
from pathlib import Path

import torch
from IPython.display import Markdown

import attnmel
from attnmel import bench, book
from attnmel.io import atomic_write_json

out_dir = Path(runs_dir) / "07_reproducibility"
dev = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
machine = bench.machine_info(dev)
print(f"attnmel {attnmel.__version__}, profile {profile!r}")
print(f"CPU: {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs; "
      f"native bf16: {'yes' if machine['cpu_bf16_native'] else 'no'}; GPU: {machine.get('gpu_name') or 'none'}")
print(f"torch {machine['torch']}, torchvision {machine['torchvision']}, Python {machine['python']}")

# %% [markdown]
# ## Time taken by each chapter in this build

# %%
timings = book.read_timings(runs_dir)  # the chapters before this one, in this build
Markdown(book.timings_markdown(timings) if timings else "No timings recorded (the chapter was run on its own).")

# %% [markdown]
# ## Training speed on this machine
#
# Images per second of one AttnMel-CNN training step (forward, the loss of Eq. 5, backward, SGD) and of
# inference, for each numeric mode, and the share of the machine's matrix-multiply ceiling that the counted
# FLOPs reach. `make bench` measures the full grid (224 and 128 px, batch 8 and 32, `torch.compile`); the
# book shows its results when they exist, otherwise a short measurement taken while building this page.

# %%
full = Path(book.repo_root()) / "benchmarks" / "results" / "bench_train.json"
if benchmark == "full" and full.exists():
    result = json.loads(full.read_text())
else:
    modes = ["fp32", "channels_last"] + (["bf16+channels_last"] if machine["cpu_bf16_native"] or dev.type == "cuda" else [])
    result = bench.run_suite([quick_size], [quick_batch], modes, steps=2, warmup=1, device=dev, jpeg=False,
                             matmul_seconds=1.0)
atomic_write_json(out_dir / "bench.json", result)
Markdown(bench.render_report(result).replace("# Training", "### Training", 1))

# %% [markdown]
# ## Notes
#
# - The CPU's native bf16 support decides the trainer's default precision (`precision="auto"`): bf16
#   autocast where the CPU has AVX-512 BF16 or AMX, fp32 otherwise (emulated bf16 is slower than fp32).
# - Real-data runs are not part of the default build; their results are in the closing notes of the
#   project's issues, with the commands that produced them.
