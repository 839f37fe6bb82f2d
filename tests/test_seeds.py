"""Several seeds: the interval arithmetic, the resumable sweep behind ``attnmel train --seeds``, the tables."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from attnmel.cli import main
from attnmel.metrics import paired_difference, seed_interval

from .helpers import TINY_RUN

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_seed_interval_is_the_student_t_interval_of_the_mean() -> None:
    out = seed_interval([1.0, 2.0, 3.0])
    assert (out["mean"], out["sd"], out["n"]) == (2.0, 1.0, 3)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 df)
    assert out["ci"] == pytest.approx([2.0 - half, 2.0 + half])
    assert seed_interval([0.7]) == {"mean": 0.7, "sd": None, "n": 1, "ci": None}  # no spread from one seed
    assert seed_interval([float("nan")])["n"] == 0


def test_paired_difference_uses_the_seeds_both_models_have() -> None:
    a = {0: 0.9, 1: 0.8, 2: 0.85}
    b = {0: 0.8, 1: 0.75, 2: 0.7, 3: 0.1}  # seed 3 has no partner and is left out
    d = paired_difference(a, b)
    assert d["seeds"] == [0, 1, 2]
    assert d["mean"] == pytest.approx((0.1 + 0.05 + 0.15) / 3)
    assert d["ci"][0] < d["mean"] < d["ci"][1]


@pytest.fixture(scope="module")
def syn(tiny_synthetic) -> Path:
    return tiny_synthetic  # the session's shared 40-image set (tests/conftest.py)


def _flags(root, run_dir) -> list[str]:
    values = {**TINY_RUN, "data_root": str(root), "run_dir": str(run_dir), "n_boot": 0, "epochs": 1}
    values.update(max_train_samples=8, eval_splits="Validation,Test_v2")
    argv = ["train"]
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
    return argv


def test_train_seeds_sweeps_reuses_finished_seeds_and_resumes_unfinished_ones(syn, tmp_path, capsys) -> None:
    sweep = tmp_path / "sweep"
    assert main([*_flags(syn, sweep), "--seeds", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert f"sweep folder: {sweep} (2 seeds: 0, 1)" in out
    assert "Test_v2: AUC " in out and " ± " in out and "per seed: 0: " in out
    for seed in (0, 1):
        assert json.loads((sweep / f"seed-{seed}" / "config.json").read_text())["seed"] == seed
    first = (sweep / "seed-0" / "checkpoints" / "best.pt").stat().st_mtime_ns
    shutil.rmtree(sweep / "seed-1" / "metrics")  # seed 1 was cut off before its evaluation

    assert main([*_flags(syn, sweep), "--seeds", "0", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "(3 seeds: 0, 1, 2)" in out
    assert (sweep / "seed-0" / "checkpoints" / "best.pt").stat().st_mtime_ns == first  # reused, not retrained
    assert (sweep / "seed-1" / "metrics" / "Test_v2.json").is_file()  # resumed: evaluation written
    history = json.loads((sweep / "seed-1" / "history.json").read_text())
    assert len(history) == 1  # finished by resuming, not by training it again
    jaccard = {  # Validation has lesion masks: each seed's attention Jaccard, as training saved it
        s: json.loads((sweep / f"seed-{s}" / "metrics" / "Validation.json").read_text())["attention"]["pool4"]
        for s in (0, 1, 2)
    }
    line = next(row for row in out.splitlines() if "Validation: pool4 Jaccard " in row)
    assert ", ".join(f"{s}: {r['jaccard_mean']:.4f}" for s, r in jaccard.items()) in line
    assert "Validation: pool3 Jaccard " in out


def test_seed_and_seeds_together_is_a_usage_error(syn, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*_flags(syn, tmp_path / "s"), "--seed", "3", "--seeds", "0", "1"])
    assert exit_.value.code == 2
    assert "--seed and --seeds" in capsys.readouterr().err


def test_seeds_table_reads_a_sweep_folder_and_reports_paired_differences(syn, tmp_path) -> None:
    from attnmel import experiments
    from attnmel.config import TrainConfig

    base = TrainConfig(
        **{**TINY_RUN, "data_root": str(syn), "n_boot": 0, "epochs": 1, "max_train_samples": 8}
    )
    base = base.replace(eval_splits="Test_v2")
    models = {}
    for model in ("attnmel_cnn", "vgg16_gap"):
        experiments.run_seeds(
            base.replace(model=model, run_dir=str(tmp_path / model)), [0, 1], log=lambda _m: None
        )
        models[model] = experiments.seed_runs_of(tmp_path / model)
    assert list(models["attnmel_cnn"]) == [0, 1]
    rows = experiments.seeds_table(models, "Test_v2", "auc", reference="attnmel_cnn")
    gap = next(r for r in rows if r["method"] == "vgg16_gap")
    expected = [gap["per_seed"][s] - rows[0]["per_seed"][s] for s in (0, 1)]
    assert gap["diff"]["mean"] == pytest.approx(sum(expected) / 2)
    table = experiments.seeds_markdown(rows, reference="attnmel_cnn")
    assert "difference to attnmel_cnn (paired, 95% CI)" in table and "reference" in table
    with pytest.raises(ValueError, match="distinct"):
        experiments.run_seeds(base, [1, 1])


def test_variant_seeds_share_the_base_seed_run_with_the_single_seed_tables(syn, tmp_path) -> None:
    from attnmel import experiments
    from attnmel.config import TrainConfig

    base = TrainConfig(
        **{**TINY_RUN, "data_root": str(syn), "n_boot": 0, "epochs": 1, "max_train_samples": 8}
    )
    base = base.replace(eval_splits="Test_v2", seed=3)
    quiet = {"log": lambda _m: None}
    single = experiments.run_variants(base, tmp_path, ["VGG-16-GAP"], **quiet)["VGG-16-GAP"]
    before = (single.run_dir / "checkpoints" / "best.pt").stat().st_mtime_ns
    runs = experiments.run_variant_seeds(base, tmp_path, ["VGG-16-GAP"], [3, 4], **quiet)["VGG-16-GAP"]
    assert runs[3].run_dir == tmp_path / "VGG-16-GAP"  # Table 2's run, reused
    assert (runs[3].run_dir / "checkpoints" / "best.pt").stat().st_mtime_ns == before
    assert runs[4].run_dir == tmp_path / "seeds" / "VGG-16-GAP" / "seed-4"
    assert (runs[3].config.seed, runs[4].config.seed) == (3, 4) and runs[4].config.model == "vgg16_gap"
    with pytest.raises(ValueError, match="unknown variant 'Nope'"):
        experiments.run_variant_seeds(base, tmp_path, ["Nope"], [3], **quiet)
    for bad in ([], [3, 3]):  # no seed would return no rows at all; a repeated one, two writers of one folder
        with pytest.raises(ValueError, match="seeds must be distinct and at least one"):
            experiments.run_variant_seeds(base, tmp_path, ["VGG-16-GAP"], bad, **quiet)
