"""``torch.distributed`` data parallelism, launched with ``torchrun`` (no home-made distribution).

``torchrun --nproc_per_node=4 -m attnmel train ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; ``fit()``
then joins the process group (NCCL on CUDA, gloo on CPU), wraps the model in DistributedDataParallel, shards the
training list with a DistributedSampler, and lets only rank 0 validate and write files.

DDP averages gradients across processes, so with equal per-process batches one step equals one step on the
global batch, **except for BatchNorm**: each process normalises with its own batch statistics and updates its
own running statistics (rank 0's are the ones saved). The authors' backbone has BatchNorm (vgg16_bn), so
multi-process training is close to, not identical with, single-process training on the same global batch.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "env_info", "setup", "cleanup", "barrier", "all_reduce_sum", "broadcast_object"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Read torchrun's environment; a plain ``python`` launch is rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        )
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({err})") from err
    return DistInfo(rank, world, local)


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group if torchrun launched several processes; return (info, this process's device).

    On CUDA each process takes GPU ``LOCAL_RANK`` and the NCCL backend; elsewhere gloo.
    """
    info = env_info()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60))
    return env_info(), device


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes in place (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every process (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj
