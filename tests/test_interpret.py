"""attnmel.interpret / attnmel.evaluate.collect_maps: one loop gives the numbers of the run, its inputs and maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnmel import experiments, interpret
from attnmel.evaluate import split_loader
from attnmel.trainer import load_split, make_dataset
from tests.helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, experiments.Run]:
    from attnmel.data import make_synthetic

    root = tmp_path_factory.mktemp("data") / "syn"
    make_synthetic(root, n=24, size=48, seed=0)
    out = tmp_path_factory.mktemp("runs")
    made = {}
    for arch in ("attnmel_cnn", "vgg16_gap", "mel_cnn"):
        config = tiny_config(root, out, model=arch, epochs=1, n_boot=0, seed=1, run_dir=str(out / arch))
        made[arch] = experiments.run_or_load(config, reuse=False, log=lambda _msg: None)
    return made


@pytest.mark.parametrize(
    "arch, names",
    [
        ("attnmel_cnn", {"pool3", "pool4", "gradcam"}),
        ("vgg16_gap", {"cam", "gradcam"}),
        ("mel_cnn", {"gradcam"}),
    ],
)
def test_split_maps_reproduces_the_runs_predictions_and_inputs(runs, arch, names) -> None:
    run = runs[arch]
    found = interpret.split_maps(run, "Test_v2", batch_size=5)  # 5 does not divide the split: a short batch
    ids, labels, probs = run.predictions("Test_v2")
    assert found.image_ids == ids
    np.testing.assert_array_equal(found.labels, labels)
    np.testing.assert_allclose(found.probs, probs, atol=1e-5)  # same checkpoint as the saved predictions

    data = make_dataset(
        run.config, load_split(run.config, run.config.resolved_data_root(), "Test_v2"), train=False
    )
    n = len(data)
    assert found.images.shape == (n, 3, 32, 32) and found.masks.shape == (n, 1, 32, 32)
    for i in (0, n - 1):
        torch.testing.assert_close(found.images[i], data[i]["image"])
        assert torch.equal(found.masks[i], data[i]["mask"] > 0.5)
    assert found.has_mask.all()  # the synthetic set draws a lesion mask for every image

    assert set(found.maps) == names
    for name, maps in found.maps.items():
        assert maps.shape[:2] == (n, 1) and torch.isfinite(maps).all(), name
    assert (found.maps["gradcam"] >= 0).all()  # Grad-CAM is a ReLU of a weighted sum
    assert not found.images.requires_grad and not found.maps["gradcam"].requires_grad
    assert not any(p.grad is not None for p in found.model.parameters())  # no gradient left behind


def test_split_loader_keeps_the_split_order_and_a_seeded_subset(runs) -> None:
    config = runs["attnmel_cnn"].config
    full = [i for batch in split_loader(config, "Test_v2", batch_size=4) for i in batch["image_id"]]
    assert full == [s.image_id for s in load_split(config, config.resolved_data_root(), "Test_v2")]
    subset = [
        i for batch in split_loader(config, "Test_v2", limit=3, batch_size=4) for i in batch["image_id"]
    ]
    assert len(subset) == 3 and set(subset) <= set(full)
    again = [i for batch in split_loader(config, "Test_v2", limit=3, batch_size=4) for i in batch["image_id"]]
    assert again == subset


def test_table3_rows_scores_every_map_of_every_model(runs) -> None:
    results = {name: interpret.split_maps(run, "Test_v2") for name, run in runs.items() if name != "mel_cnn"}
    rows = interpret.table3_rows(results, {("attnmel_cnn", "pool3"): 0.5})
    n = len(results["attnmel_cnn"].image_ids)
    assert {(r["model"], r["map"]) for r in rows} == {
        ("attnmel_cnn", "pool3"), ("attnmel_cnn", "pool4"), ("attnmel_cnn", "gradcam"),
        ("vgg16_gap", "cam"), ("vgg16_gap", "gradcam"),
    }  # fmt: skip
    for row in rows:
        assert 0.0 <= row["jaccard"] <= 1.0 and 0.0 <= row["pointing"] <= 1.0 and row["n"] == n, row
    assert [r["paper_jaccard"] for r in rows if r["paper_jaccard"] is not None] == [0.5]
