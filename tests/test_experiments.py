"""attnmel.experiments / attnmel.book helpers: configs per profile, result tables, run reuse rules, timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnmel import book, experiments
from attnmel.config import TrainConfig


def _fake_run(tmp_path: Path, name: str, auc: float, ap: float) -> experiments.Run:
    config = TrainConfig.from_preset("smoke", run_dir=str(tmp_path / name))
    metrics = {"Test_v2": {"auc": auc, "auc_ci": [auc - 0.05, auc + 0.01], "ap": ap, "ap_ci": None}}
    history = [{"epoch": 1, "val_auc": 0.7, "is_best": True, "seconds": 3.0}]
    return experiments.Run(tmp_path / name, config, history, metrics)


def test_profile_config_applies_chapter_parameters_and_keeps_preset_values_for_zero(tmp_path):
    config = experiments.profile_config("smoke", runs_dir=tmp_path, epochs=0, image_size=64)
    preset = TrainConfig.from_preset("smoke")
    assert config.epochs == preset.epochs and config.image_size == 64
    assert config.runs_root == str(tmp_path)
    assert config.device == preset.device  # "auto" keeps the preset's device
    many = experiments.profile_config("smoke", runs_dir=tmp_path, many_runs=True)
    assert many.to_dict() == TrainConfig.from_preset("smoke-mini", runs_root=str(tmp_path)).to_dict()
    with pytest.raises(ValueError, match="paper2"):
        experiments.profile_config("paper2")


def test_results_table_puts_ours_beside_the_papers_and_marks_the_columns(tmp_path):
    runs = {"AttnMel-CNN": _fake_run(tmp_path, "a", 0.91, 0.80), "VGG-16": _fake_run(tmp_path, "v", 0.7, 0.5)}
    rows = experiments.results_table(runs, "Test_v2", experiments.PAPER_TABLE2)
    assert [r["method"] for r in rows] == list(experiments.PAPER_TABLE2)  # the paper's row order
    attn = next(r for r in rows if r["method"] == "AttnMel-CNN")
    assert (attn["auc"], attn["paper_auc"], attn["paper_ap"]) == (0.91, 0.872, 0.655)
    lesion = next(r for r in rows if r["method"] == "AttnMel-CNN-Lesion")
    assert lesion["auc"] is None and lesion["lesion"] and not lesion["dermo"]
    text = experiments.markdown_table(rows)
    assert "| 4 | AttnMel-CNN | 0.800 | 0.655 | 0.910 [0.860,\u00a00.920] | 0.872 | ✗ | ✗ | ✓ |" in text
    table, note = text.split("\n\n")
    assert table.count("\n") == len(rows) + 1
    assert note == "Ensemble and External (the paper's columns): ✗ for every row, so not shown."
    rows[0]["external"] = True  # a row that used external data brings the column back
    assert "| Interp | External |" in experiments.markdown_table(rows)


def test_a_finished_run_with_other_settings_is_not_silently_reused(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics").mkdir()
    (run_dir / "checkpoints" / "best.pt").write_bytes(b"x")
    (run_dir / "metrics" / "Test_v2.json").write_text(json.dumps({"auc": 0.5}))
    saved = TrainConfig.from_preset("smoke", run_dir=str(run_dir))
    (run_dir / "config.json").write_text(json.dumps(saved.to_dict()))
    (run_dir / "history.json").write_text(json.dumps([{"epoch": 1, "val_auc": 0.5}]))
    assert experiments.run_or_load(saved, reuse=True, log=lambda m: None).metrics["Test_v2"]["auc"] == 0.5
    with pytest.raises(ValueError, match="epochs"):
        experiments.run_or_load(saved.replace(epochs=saved.epochs + 1), reuse=True, log=lambda m: None)


def test_a_finished_run_copied_elsewhere_is_reused_and_its_data_folder_compared_as_a_folder(
    tmp_path, monkeypatch
):
    """The folder's old location (run_dir, run_name, runs_root) is not a training setting, and one data folder
    spelled two ways is one folder; another data folder is still a different run."""
    data, other = tmp_path / "data", tmp_path / "other"
    data.mkdir(), other.mkdir()
    run_dir = tmp_path / "copied" / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics").mkdir()
    (run_dir / "checkpoints" / "best.pt").write_bytes(b"x")
    (run_dir / "metrics" / "Test_v2.json").write_text(json.dumps({"auc": 0.5}))
    (run_dir / "history.json").write_text(json.dumps([{"epoch": 1, "val_auc": 0.5}]))
    trained = TrainConfig.from_preset("smoke", data_root=str(data), runs_root="/gone", run_name="old",
                                      run_dir="/gone/old")  # fmt: skip
    (run_dir / "config.json").write_text(json.dumps(trained.to_dict()))
    monkeypatch.chdir(tmp_path)
    wanted = trained.replace(run_dir=str(run_dir), run_name="new", runs_root=str(tmp_path), data_root="data/")
    reused = experiments.run_or_load(wanted, reuse=True, log=lambda m: None)
    assert reused.metrics["Test_v2"]["auc"] == 0.5
    assert (reused.config.run_dir, reused.config.runs_root, reused.config.data_root) == (
        str(run_dir),
        str(tmp_path),
        "data/",
    )  # later reads (its cache, its data) look where it is now, not where it was trained
    assert experiments.load_run(run_dir).config.run_dir == str(run_dir)
    with pytest.raises(ValueError, match=r"different settings \(data_root\)"):
        experiments.run_or_load(wanted.replace(data_root=str(other)), reuse=True, log=lambda m: None)


def test_unknown_variant_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown variant 'ResNet'"):
        experiments.run_variants(TrainConfig.from_preset("smoke"), tmp_path, ["ResNet"])


def test_chapter_timings_are_recorded_per_chapter(tmp_path):
    notebook = tmp_path / "01_tiny.py"
    notebook.write_text('# %% tags=["parameters"]\nruns_dir = "runs"\n\n# %%\nprint(1 + 1)\n')
    broken = tmp_path / "02_broken.py"
    broken.write_text('# %% tags=["parameters"]\nruns_dir = "runs"\n\n# %%\nraise RuntimeError("boom")\n')
    runs = book.execute_chapters(
        tmp_path / "out", {"runs_dir": str(tmp_path / "r")}, [notebook, broken], log=lambda m: None
    )
    assert [r.ok for r in runs] == [True, False] and "boom" in runs[1].error
    timings = book.read_timings(tmp_path / "r")
    assert [(t["chapter"], t["ok"]) for t in timings] == [("01_tiny", True), ("02_broken", False)]
    assert all(t["seconds"] > 0 for t in timings)


def test_report_splits_put_the_test_splits_first_and_validation_last():
    synthetic = TrainConfig.from_preset("smoke")
    assert experiments.report_splits(synthetic) == ["Test_v2", "Test_shift", "Validation"]
    assert experiments.test_split(synthetic) == "Test_v2"
    only_val = synthetic.replace(eval_splits="Validation")
    assert (
        experiments.report_splits(only_val) == ["Validation"]
        and experiments.test_split(only_val) == "Validation"
    )
