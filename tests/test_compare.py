"""``attnmel compare`` and :func:`attnmel.experiments.compare_runs` on hand-made run folders (no training)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from attnmel.cli import main
from attnmel.config import TrainConfig
from attnmel.experiments import NotARunFolder, compare_runs, comparison_csv, comparison_markdown
from attnmel.metrics import write_predictions_csv


def make_run(folder: Path, metrics: dict[str, dict], best: int = 2, **config) -> Path:
    """A run folder as fit leaves it, as far as compare reads it: config.json, history.json, metrics/."""
    folder.mkdir(parents=True)
    cfg = TrainConfig(**{"dataset": "synthetic", **config}, run_dir=str(folder))
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    history = [{"epoch": e, "val_auc": 0.5 + e / 10, "is_best": e == best} for e in (1, 2, 3)]
    (folder / "history.json").write_text(json.dumps(history))
    for split, values in metrics.items():
        (folder / "metrics").mkdir(exist_ok=True)
        (folder / "metrics" / f"{split}.json").write_text(json.dumps({"n": 40, "epoch": best, **values}))
    return folder


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    a = make_run(
        tmp_path / "attn",
        {
            "Test_v2": {"auc": 0.81, "auc_ci": [0.7, 0.9], "ap": 0.6, "ap_ci": [0.4, 0.8]},
            "Validation": {"auc": 0.7, "auc_ci": None, "ap": 0.5, "ap_ci": None},
        },
        best=3,
        model="attnmel_cnn",
        lr=0.01,
    )
    b = make_run(
        tmp_path / "gap",
        {"Test_v2": {"auc": 0.75, "auc_ci": [0.6, 0.85], "ap": 0.55, "ap_ci": [0.3, 0.7]}},
        model="vgg16_gap",
        lr=0.001,
    )
    c = make_run(tmp_path / "unfinished", {}, model="attnmel_cnn", lr=0.01)
    return [a, b, c]


def test_compare_runs_rows_default_split_and_differing_settings(runs) -> None:
    comparison = compare_runs(runs)
    assert comparison.split == "Test_v2"  # the first test split, not Validation
    assert comparison.settings == ["lr", "model"]  # run_dir differs too, but names the folder only
    attn, gap, unfinished = comparison.rows
    assert (attn["run"], attn["auc"], attn["auc_ci"], attn["best_epoch"], attn["model"]) == (
        "attn", 0.81, [0.7, 0.9], 3, "attnmel_cnn"
    )  # fmt: skip
    assert (gap["ap"], gap["best_epoch"], gap["lr"]) == (0.55, 2, 0.001)
    assert unfinished["auc"] is None and unfinished["best_epoch"] == 2
    assert comparison.notes == ["unfinished: no metrics for split 'Test_v2' (has: none)"]
    assert compare_runs(runs, split="Validation").rows[1]["auc"] is None


def test_markdown_and_csv_formats(runs) -> None:
    comparison = compare_runs(runs)
    text = comparison_markdown(comparison)
    lines = text.splitlines()
    assert lines[0] == "| run | AUC [95% CI] (Test_v2) | AP [95% CI] | best epoch | lr | model |"
    assert lines[2] == "| attn | 0.810 [0.700, 0.900] | 0.600 [0.400, 0.800] | 3 | 0.01 | attnmel_cnn |"
    assert lines[4] == "| unfinished |  |  | 2 | 0.01 | attnmel_cnn |"
    assert lines[-1] == "Note: unfinished: no metrics for split 'Test_v2' (has: none)"
    rows = list(csv.DictReader(io.StringIO(comparison_csv(comparison))))
    assert [r["run"] for r in rows] == ["attn", "gap", "unfinished"]
    assert (rows[1]["auc"], rows[1]["auc_low"], rows[1]["auc_high"], rows[1]["model"]) == (
        "0.75", "0.6", "0.85", "vgg16_gap"
    )  # fmt: skip
    assert rows[2]["auc"] == "" and rows[2]["auc_low"] == ""


def test_a_folder_that_is_not_a_run_is_one_error(runs, tmp_path) -> None:
    (tmp_path / "notes").mkdir()
    with pytest.raises(NotARunFolder, match=r"notes is not a run folder \(no readable config.json\)"):
        compare_runs([runs[0], tmp_path / "notes"])
    with pytest.raises(NotARunFolder, match="is not a folder"):
        compare_runs([tmp_path / "absent"])


def test_cli_compare(runs, tmp_path, capsys) -> None:
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "| attn | 0.810 [0.700, 0.900]" in out and "Note: unfinished" in out
    assert main(["compare", *map(str, runs), "--format", "csv", "--split", "Validation"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert rows[0]["auc"] == "0.7" and rows[0]["split"] == "Validation" and rows[1]["auc"] == ""
    assert "note: gap: no metrics for split 'Validation'" in captured.err
    (tmp_path / "junk").mkdir()
    assert main(["compare", str(runs[0]), str(tmp_path / "junk")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("attnmel compare: error: ")
        and "junk is not a run folder" in err[0]
    )


def test_runs_with_predictions_get_the_paired_auc_difference(tmp_path, make_isic2017_layout) -> None:
    labels = [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]
    root = make_isic2017_layout(
        tmp_path / "isic", "Test_v2", [(m, 0) for m in labels], masks=False, dermo=False
    )
    ids = [f"ISIC_{i:07d}" for i in range(len(labels))]
    scores = {
        "good": [0.9, 0.1, 0.2, 0.8, 0.3, 0.1, 0.7, 0.2, 0.4, 0.1],
        "worse": [0.6, 0.1, 0.7, 0.8, 0.3, 0.1, 0.2, 0.9, 0.4, 0.1],
        "other-images": [0.5] * 9,
    }
    folders = []
    for name, prob in scores.items():
        metrics = {"Test_v2": {"auc": 0.5, "auc_ci": None, "ap": 0.5, "ap_ci": None}}
        folder = make_run(tmp_path / name, metrics, dataset="isic2017", data_root=str(root), n_boot=500)
        write_predictions_csv(folder / "predictions" / "Test_v2.csv", ids[: len(prob)][::-1], prob[::-1])
        folders.append(folder)
    comparison = compare_runs(folders)
    good, worse, other = comparison.rows
    expected = roc_auc_score(labels, scores["worse"]) - roc_auc_score(labels, scores["good"])
    assert "auc_vs_first" not in good and "auc_vs_first" not in other
    assert worse["auc_vs_first"]["diff"] == pytest.approx(expected) and expected < 0
    low, high = worse["auc_vs_first"]["ci"]
    assert low <= expected <= high and worse["auc_vs_first"]["n_boot"] == 500
    assert comparison.notes == [
        "other-images: its Test_v2 predictions cover other images than good's; not paired"
    ]
    lines = comparison_markdown(comparison).splitlines()
    assert lines[0].startswith(
        "| run | AUC [95% CI] (Test_v2) | AP [95% CI] | AUC − good [paired 95% CI] | best"
    )
    assert lines[3].split(" | ")[3] == f"{expected:+.3f} [{low:+.3f}, {high:+.3f}]"
    rows = list(csv.DictReader(io.StringIO(comparison_csv(comparison))))
    assert float(rows[1]["auc_vs_first"]) == pytest.approx(expected) and rows[0]["auc_vs_first"] == ""
    np.testing.assert_allclose([float(rows[1]["auc_vs_first_low"])], [low])


def test_paired_differences_need_the_labels(tmp_path) -> None:
    metrics = {"Test_v2": {"auc": 0.5, "auc_ci": None, "ap": 0.5, "ap_ci": None}}
    folders = [
        make_run(tmp_path / n, metrics, dataset="isic2017", data_root=str(tmp_path / "gone")) for n in "ab"
    ]
    for folder in folders:
        write_predictions_csv(
            folder / "predictions" / "Test_v2.csv", ["ISIC_0000000", "ISIC_0000001"], [0.2, 0.7]
        )
    comparison = compare_runs(folders)
    assert all("auc_vs_first" not in r for r in comparison.rows)
    assert len(comparison.notes) == 1 and comparison.notes[0].startswith(
        "no paired AUC differences: the labels of Test_v2 could not be read ("
    )
    assert comparison.notes[0].endswith("; name the data folder: data_root=DIR")
    named = compare_runs(folders, data_root=tmp_path / "also-gone")  # named already: no hint to name it
    assert "also-gone does not exist" in named.notes[0] and "data_root" not in named.notes[0]


def test_the_data_folder_can_be_named_when_the_runs_relative_one_is_elsewhere(
    tmp_path, monkeypatch, make_isic2017_layout, capsys
) -> None:
    labels = [1, 0, 0, 1, 0, 0]
    root = make_isic2017_layout(
        tmp_path / "isic", "Test_v2", [(m, 0) for m in labels], masks=False, dermo=False
    )
    ids = [f"ISIC_{i:07d}" for i in range(len(labels))]
    metrics = {"Test_v2": {"auc": 0.5, "auc_ci": None, "ap": 0.5, "ap_ci": None}}
    scores = {"a": [0.9, 0.1, 0.2, 0.8, 0.3, 0.1], "b": [0.6, 0.1, 0.7, 0.8, 0.3, 0.1]}
    for name, prob in scores.items():  # trained from tmp_path with a relative data_root
        folder = make_run(tmp_path / name, metrics, dataset="isic2017", data_root="isic", n_boot=200)
        write_predictions_csv(folder / "predictions" / "Test_v2.csv", ids, prob)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runs = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert "auc_vs_first" not in compare_runs(runs).rows[1]  # isic/ is not under the current folder
    expected = roc_auc_score(labels, scores["b"]) - roc_auc_score(labels, scores["a"])
    paired = compare_runs(runs, data_root=root).rows[1]["auc_vs_first"]
    assert paired["diff"] == pytest.approx(expected)
    assert main(["compare", *runs, "--data-root", str(root), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert float(rows[1]["auc_vs_first"]) == pytest.approx(expected)
    assert main(["compare", *runs]) == 0  # from elsewhere: the note says which flag names the folder
    assert "; name the data folder: --data-root DIR" in capsys.readouterr().out


def test_an_evaluate_out_dir_folder_is_compared_with_its_checkpoints_config(
    tmp_path, make_isic2017_layout
) -> None:
    import torch

    from attnmel.checkpoint import make_checkpoint, save_checkpoint

    labels = [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]
    root = make_isic2017_layout(
        tmp_path / "isic", "Test_v2", [(m, 0) for m in labels], masks=False, dermo=False
    )
    ids = [f"ISIC_{i:07d}" for i in range(len(labels))]
    plain, tta = (
        [0.6, 0.1, 0.7, 0.8, 0.3, 0.1, 0.2, 0.9, 0.4, 0.1],
        [0.9, 0.1, 0.2, 0.8, 0.3, 0.1, 0.7, 0.2, 0.4, 0.1],
    )
    metrics = {"Test_v2": {"auc": 0.5, "auc_ci": None, "ap": 0.5, "ap_ci": None}}
    run = make_run(tmp_path / "run", metrics, best=3, dataset="isic2017", data_root=str(root), n_boot=300)
    write_predictions_csv(run / "predictions" / "Test_v2.csv", ids, plain)
    tiny = torch.nn.Linear(2, 1)
    tiny.arch = "tiny"  # make_checkpoint needs only the architecture's name
    config = json.loads((run / "config.json").read_text())
    checkpoint = save_checkpoint(
        run / "checkpoints" / "latest.pt", make_checkpoint(tiny, epoch=6, config=config)
    )
    evaluated = tmp_path / "latest-tta"  # what `attnmel evaluate latest.pt --tta --out-dir latest-tta` writes
    (evaluated / "metrics").mkdir(parents=True)
    (evaluated / "metrics" / "Test_v2.json").write_text(
        json.dumps(
            {
                "n": 10,
                "auc": 0.9,
                "auc_ci": None,
                "ap": 0.8,
                "ap_ci": None,
                "split": "Test_v2",
                "dataset": "isic2017",
                "data_root": str(root),
                "checkpoint": str(checkpoint),
                "epoch": 6,
                "tta": True,
            }
        )  # fmt: skip
    )
    write_predictions_csv(evaluated / "predictions" / "Test_v2.csv", ids, tta)
    comparison = compare_runs([run, evaluated])
    assert comparison.split == "Test_v2" and comparison.settings == ["checkpoint_epoch", "tta"]
    first, second = comparison.rows
    assert (first["tta"], second["tta"], second["checkpoint_epoch"], second["best_epoch"]) == (
        False,
        True,
        6,
        6,
    )
    expected = roc_auc_score(labels, tta) - roc_auc_score(labels, plain)
    assert (
        second["auc_vs_first"]["diff"] == pytest.approx(expected) and second["auc_vs_first"]["n_boot"] == 300
    )

    checkpoint.unlink()
    with pytest.raises(NotARunFolder, match="is an evaluation folder, but its checkpoint cannot be read"):
        compare_runs([run, evaluated])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotARunFolder, match="no readable config.json.*nor an evaluation folder"):
        compare_runs([empty])
