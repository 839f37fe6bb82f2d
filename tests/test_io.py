"""attnmel.io: a failed write leaves the previous file intact and no temporary file behind."""

from __future__ import annotations

import json
import os

import pytest
import torch

from attnmel.io import atomic_open, atomic_torch_save, atomic_write_json, atomic_write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"auc": 0.9})
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target, "w") as handle:
            handle.write('{"auc": 0.')
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"auc": 0.9}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_written_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_torch_save_round_trips_with_weights_only(tmp_path):
    path = atomic_torch_save({"w": torch.arange(3.0), "epoch": 2}, tmp_path / "sub" / "c.pt")
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 2 and torch.equal(loaded["w"], torch.arange(3.0))


def test_json_handles_paths_and_numpy_scalars(tmp_path):
    import numpy as np

    path = atomic_write_json(tmp_path / "r.json", {"p": tmp_path, "x": np.float32(0.5), "a": np.arange(2)})
    assert json.loads(path.read_text()) == {"p": str(tmp_path), "x": 0.5, "a": [0, 1]}


def test_only_whole_file_modes_are_allowed(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass
