"""The dataset table: one source of dataset facts for config, loaders, evaluation and the CLI; PH2 as a test set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attnmel.cli import main
from attnmel.config import DATASET_SPLITS, DATASETS, DEFAULT_PASSES, TrainConfig
from attnmel.data import DataError
from attnmel.data.registry import DatasetSpec, get_dataset, list_datasets, register_dataset

from .conftest import make_ph2
from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]


def test_the_table_lists_every_dataset_once_and_the_config_reads_it() -> None:
    assert list_datasets() == ("synthetic", "isic2017", "isic2016", "ph2")
    assert list_datasets(trainable=True) == ("synthetic", "isic2017", "isic2016")
    assert list_datasets(trainable=False) == ("ph2",)
    assert DATASETS == list_datasets()
    assert DATASET_SPLITS["isic2017"] == ("Training", "Validation", ("Validation", "Test_v2"))
    assert DATASET_SPLITS["ph2"] == (None, None, ("Test",))
    assert DEFAULT_PASSES == {"synthetic": 1, "isic2017": 2, "isic2016": 5, "ph2": 1}
    assert get_dataset("isic2016").mean != get_dataset("isic2017").mean


def test_unknown_names_duplicates_and_splits_are_clear_errors(ph2_root) -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'isic2071' \(did you mean 'isic2017'\?\)"):
        get_dataset("isic2071")
    with pytest.raises(ValueError, match="'ph2' is already registered"):
        register_dataset(get_dataset("ph2"))
    with pytest.raises(ValueError, match="training and validation splits must be in splits"):
        register_dataset(
            DatasetSpec("x", "X", "m:f", "Train", "Val", ("Test",), ("Test",), (0.5,) * 3, (0.2,) * 3, ())
        )
    with pytest.raises(DataError, match=r"ph2 has no split 'Test_v2'; its splits are \['Test'\]"):
        get_dataset("ph2").read(ph2_root, "Test_v2")
    assert len(get_dataset("ph2").read(ph2_root, "Test")) == 5


def test_data_root_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("ATTNMEL_ISIC2016_ROOT", raising=False)
    with pytest.raises(
        ValueError, match="pass --data-root, or set the environment variable ATTNMEL_ISIC2016_ROOT"
    ):
        TrainConfig(dataset="isic2016")
    monkeypatch.setenv("ATTNMEL_ISIC2016_ROOT", "/data/2016")
    assert TrainConfig(dataset="isic2016").data_root == "/data/2016"
    assert TrainConfig(dataset="isic2016", data_root="/mine").data_root == "/mine"  # an explicit folder wins
    assert TrainConfig().data_root is None  # the synthetic set is generated, never read from the environment


def test_config_and_cli_import_without_torch() -> None:
    code = "import sys, attnmel.config, attnmel.cli, attnmel.data.registry; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_a_test_only_dataset_cannot_be_trained(ph2_root, tmp_path) -> None:
    from attnmel.trainer import fit

    with pytest.raises(ValueError, match="'ph2' has no training split: it is a test set"):
        fit(tiny_config(ph2_root, tmp_path, dataset="ph2"), log=lambda _m: None)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    from attnmel.data import make_synthetic
    from attnmel.trainer import fit

    root = tmp_path_factory.mktemp("data") / "syn"
    make_synthetic(root, n=40, size=48, seed=0)
    runs = tmp_path_factory.mktemp("runs")
    config = tiny_config(
        root, runs, epochs=1, max_train_samples=8, n_boot=0, eval_splits="Validation", run_name="r"
    )
    return fit(config, log=lambda _m: None)


def test_evaluate_on_ph2_reports_auc_ap_with_cis_and_attention_on_its_masks(
    synthetic_run, tmp_path, capsys, monkeypatch
) -> None:
    root = make_ph2(tmp_path / "PH2Dataset", diagnoses=(0, 2, 1, 2, 0, 0))
    (root / "PH2 Dataset images" / "Thumbs.db").write_bytes(b"\0\1")  # stray files of a real download
    (root / "PH2 Dataset images" / "convert.sh").write_text("#!/bin/sh\n")
    (root / "readme.txt").write_text("PH2")
    import attnmel.loaders as loaders

    seen = []
    real = loaders.make_dataset

    def spy(config, samples, *, train, normalise_as=None):
        seen.append((config.dataset, normalise_as))
        return real(config, samples, train=train, normalise_as=normalise_as)

    monkeypatch.setattr(loaders, "make_dataset", spy)
    ckpt = synthetic_run.run_dir / "checkpoints" / "best.pt"
    argv = [
        "evaluate",
        str(ckpt),
        "--dataset",
        "ph2",
        "--data-root",
        str(root),
        "--n-boot",
        "50",
        "--no-plots",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ph2/Test: n=6 (2 melanoma), AUC " in out and "[95% CI " in out
    assert "pool-3" in out or "pool3" in out  # attention Jaccard and pointing game against PH2's masks
    assert "pointing game" in out
    metrics = json.loads((synthetic_run.run_dir / "evaluation" / "metrics" / "Test.json").read_text())
    assert (metrics["dataset"], metrics["split"], metrics["n"], metrics["n_pos"]) == ("ph2", "Test", 6, 2)
    assert len(metrics["auc_ci"]) == 2 and len(metrics["ap_ci"]) == 2
    assert set(metrics["attention"]) and all("jaccard_mean" in r for r in metrics["attention"].values())
    assert seen == [("ph2", "synthetic")]  # the model keeps the statistics it was trained with


def test_ph2_root_from_the_environment_and_a_wrong_split(
    synthetic_run, tmp_path, capsys, monkeypatch
) -> None:
    root = make_ph2(tmp_path / "PH2Dataset")
    ckpt = synthetic_run.run_dir / "checkpoints" / "best.pt"
    monkeypatch.delenv("ATTNMEL_PH2_ROOT", raising=False)
    assert (
        main(["evaluate", str(ckpt), "--dataset", "ph2", "--n-boot", "0"]) == 1
    )  # the run's folder is not PH2's
    assert "--data-root is required for dataset 'ph2'" in capsys.readouterr().err
    monkeypatch.setenv("ATTNMEL_PH2_ROOT", str(root))
    out_dir = tmp_path / "ev"
    base = [
        "evaluate",
        str(ckpt),
        "--dataset",
        "ph2",
        "--n-boot",
        "0",
        "--no-plots",
        "--out-dir",
        str(out_dir),
    ]
    assert main(base) == 0
    assert "ph2/Test: n=5" in capsys.readouterr().out
    assert main([*base, "--split", "Training"]) == 1
    assert "ph2 has no split 'Training'" in capsys.readouterr().err


def test_external_column_of_table_2_is_computed_once_and_reused(synthetic_run, tmp_path, monkeypatch) -> None:
    from attnmel import experiments

    root = make_ph2(tmp_path / "PH2Dataset", diagnoses=(0, 2, 1, 2, 0, 0))
    runs = {"AttnMel-CNN": experiments.load_run(synthetic_run.run_dir)}
    external = experiments.evaluate_external(runs, "ph2", root, n_boot=20, log=lambda _m: None)
    assert external["AttnMel-CNN"]["dataset"] == "ph2" and external["AttnMel-CNN"]["n"] == 6
    assert (synthetic_run.run_dir / "evaluation-ph2" / "metrics" / "Test.json").is_file()

    import attnmel.evaluate

    def no_second_evaluation(*_a, **_k):
        raise AssertionError("a finished external evaluation must be reused")

    monkeypatch.setattr(attnmel.evaluate, "evaluate_checkpoint", no_second_evaluation)
    again = experiments.evaluate_external(runs, "ph2", root, n_boot=20, log=lambda _m: None)
    assert again["AttnMel-CNN"]["auc"] == external["AttnMel-CNN"]["auc"]

    rows = experiments.results_table(runs, "Validation", experiments.PAPER_TABLE2, external=external)
    ours = next(r for r in rows if r["method"] == "AttnMel-CNN")
    assert ours["external_auc"] == external["AttnMel-CNN"]["auc"]
    table = experiments.markdown_table(rows)
    assert "PH2 AUC (ours, 95% CI)" in table.splitlines()[0]
    assert "PH2" not in experiments.markdown_table(experiments.results_table(runs, "Validation"))


def test_the_book_passes_each_chapter_only_the_parameters_it_declares(tmp_path) -> None:
    import jupytext

    from attnmel.book import chapter_parameters, declared_parameters

    chapters = REPO / "notebooks"
    assert "ph2_root" in declared_parameters(jupytext.read(chapters / "04_ablations.py"))
    assert "ph2_root" not in declared_parameters(jupytext.read(chapters / "03_training.py"))
    folder = tmp_path / "ph2"
    folder.mkdir()
    params = chapter_parameters("smoke", ph2_root=folder)
    assert params["ph2_root"] == str(folder.resolve()) and "isic2016_root" not in params
    with pytest.raises(FileNotFoundError, match="ph2_root: .*nope is not a folder"):
        chapter_parameters("smoke", ph2_root=tmp_path / "nope")
