"""The trainer's EpochLoader: workers that persist across epochs, and views that depend on (seed, epoch) only."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import Dataset

from attnmel.config import TrainConfig
from attnmel.loaders import EpochLoader, item_seed, make_loader
from attnmel.trainer import fit

from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Draws(Dataset):
    """Item i: its index, a random draw from the global CPU RNG (what a transform does), and the process id."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> dict:
        return {"index": index, "draw": torch.rand(2), "pid": os.getpid()}


def loader_for(workers: int) -> EpochLoader:
    config = TrainConfig(num_workers=workers, device="cpu")
    return EpochLoader(config, Draws(), batch_size=4, device=torch.device("cpu"))


def epoch_items(loader: EpochLoader, order: list[int], seed: int) -> dict:
    batches = list(loader.epoch(order, seed))
    return {key: torch.cat([b[key].reshape(len(b["index"]), -1) for b in batches]) for key in batches[0]}


def test_views_depend_on_seed_and_position_not_on_workers() -> None:
    order = [5, 2, 2, 11, 0, 7, 3]  # with a repeat: an oversampled list
    in_process, pooled = loader_for(0), loader_for(2)
    try:
        a, b = epoch_items(in_process, order, seed=9), epoch_items(pooled, order, seed=9)
        assert a["index"].flatten().tolist() == order  # the epoch's order, batched as given
        assert torch.equal(a["draw"], b["draw"])  # the same views whichever process drew them
        # a repeated image is a new view at its new position
        assert not torch.equal(a["draw"][1], a["draw"][2])
        again = epoch_items(pooled, order, seed=9)
        assert torch.equal(again["draw"], a["draw"])
        other = epoch_items(pooled, order, seed=10)  # the next epoch's seed: other views
        assert not torch.equal(other["draw"], a["draw"])
        # each item's draw is the first draw of a generator seeded with its own seed
        expected = torch.stack([torch.rand(2, generator=torch.Generator().manual_seed(item_seed(9, k)))
                                for k in range(len(order))])  # fmt: skip
        assert torch.equal(a["draw"], expected)
    finally:
        in_process.close()
        pooled.close()


def test_workers_persist_across_epochs_and_close() -> None:
    loader = loader_for(2)
    try:
        first = set(epoch_items(loader, list(range(12)), seed=1)["pid"].flatten().tolist())
        second = set(epoch_items(loader, list(range(12)), seed=2)["pid"].flatten().tolist())
        assert os.getpid() not in first and len(first) == 2
        assert first == second  # the same two worker processes served both epochs
        workers = loader.loader._iterator._workers
        assert all(w.is_alive() for w in workers)
    finally:
        loader.close()
    assert not any(w.is_alive() for w in workers)
    assert loader.loader._iterator is None


def test_in_process_items_leave_the_global_rng_alone() -> None:
    torch.manual_seed(3)
    reference = torch.rand(3)
    loader = loader_for(0)
    torch.manual_seed(3)
    epoch_items(loader, [1, 4, 6], seed=5)  # seeds and draws for each item, then restores the state
    assert torch.equal(torch.rand(3), reference)


def test_an_epoch_order_is_needed_first() -> None:
    loader = loader_for(0)
    with pytest.raises(RuntimeError, match=r"EpochLoader.epoch\(order, seed\) must be called"):
        list(loader.loader)


def test_a_persistent_loader_keeps_its_workers_between_passes() -> None:
    data = Draws()
    loader = make_loader(TrainConfig(num_workers=2, device="cpu"), data, sampler=range(12), batch_size=6,
                         device=torch.device("cpu"), seed=0, persistent=True)  # fmt: skip
    first = {int(p) for b in loader for p in b["pid"]}
    second = {int(p) for b in loader for p in b["pid"]}
    assert first == second and len(first) == 2


def test_training_does_not_depend_on_the_number_of_workers(tmp_path, tiny_synthetic) -> None:
    base = tiny_config(tiny_synthetic, tmp_path, epochs=2, max_train_samples=12, eval_splits="Validation",
                       n_boot=0, lr_step=1, seed=4)  # fmt: skip
    quiet = {"log": lambda _msg: None}
    runs = [fit(base.replace(run_name=f"w{w}", num_workers=w), **quiet) for w in (0, 2)]
    a, b = (torch.load(r.run_dir / "checkpoints" / "latest.pt", weights_only=True)["model"] for r in runs)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["train_loss"] for r in runs[0].history] == [r["train_loss"] for r in runs[1].history]
