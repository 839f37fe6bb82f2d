"""What each profile's chapters train (``experiments.Study``), the captions under their tables, and the
across-seed readings of Table 3 and the shortcut experiment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from attnmel import experiments, interpret, metrics
from attnmel.config import TrainConfig


def test_every_book_profile_has_a_study_of_known_variants() -> None:
    from attnmel.book import PROFILES

    for profile in PROFILES:
        study = experiments.study_of(profile)
        assert study.variants and set(study.variants) <= set(experiments.VARIANTS), profile
        assert study.seeds >= 1
    assert experiments.study_of("smoke").seeds >= 3  # the default build compares models across seeds
    assert experiments.study_of("my-own-preset").seeds == 1  # a user's preset: the paper's seven, one seed


def test_usable_variants_leaves_out_dermo_without_task2_and_says_why(tmp_path, make_isic2017_layout) -> None:
    root = make_isic2017_layout(tmp_path / "isic", "Training", dermo=False)
    config = TrainConfig(dataset="isic2017", data_root=str(root))
    kept, dropped = experiments.usable_variants(
        config, ["AttnMel-CNN", "AttnMel-CNN-Dermo", "AttnMel-CNN-Lesion"]
    )
    assert kept == ["AttnMel-CNN", "AttnMel-CNN-Lesion"]
    assert list(dropped) == ["AttnMel-CNN-Dermo"] and "Task 2" in dropped["AttnMel-CNN-Dermo"]

    bare = make_isic2017_layout(tmp_path / "bare", "Training", dermo=False, masks=False)
    kept, dropped = experiments.usable_variants(
        config.replace(data_root=str(bare)), ["VGG-16", "AttnMel-CNN-Bkg"]
    )
    assert kept == ["VGG-16"] and "lesion masks" in dropped["AttnMel-CNN-Bkg"]

    with_all = make_isic2017_layout(tmp_path / "full", "Training")
    assert experiments.usable_variants(config.replace(data_root=str(with_all)), ["AttnMel-CNN-Dermo"]) == (
        ["AttnMel-CNN-Dermo"],
        {},
    )
    with pytest.raises(ValueError, match="unknown variant 'Nope'"):
        experiments.usable_variants(config, ["Nope"])


def test_profile_caption_says_what_the_profile_can_and_cannot_show() -> None:
    cpu = experiments.profile_caption(
        "isic2017-cpu", TrainConfig.from_preset("isic2017-cpu", data_root="/data"), 1
    )
    assert (
        "from scratch" in cpu and "128 px" in cpu and "1 seed." in cpu and "not the paper's protocol" in cpu
    )
    assert "one seed shows the test-sample uncertainty only" in cpu
    paper = experiments.profile_caption("paper", TrainConfig.from_preset("paper", data_root="/data"), 3)
    assert "ImageNet-initialised" in paper and "224 px" in paper and "3 seeds" in paper
    assert "can be compared" in paper and "one seed" not in paper
    smoke = experiments.profile_caption("smoke", TrainConfig.from_preset("smoke-mini"), 3)
    assert "synthetic set" in smoke and "not ISIC's" in smoke
    one = experiments.profile_caption("smoke", TrainConfig.from_preset("smoke-mini", epochs=1), 2)
    assert "1 epoch," in one and "2 seeds." in one


def test_paired_verdict_reads_the_interval() -> None:
    above = {"mean": 0.02, "ci": [0.01, 0.03], "n": 3}
    below = {"mean": -0.02, "ci": [-0.03, -0.01], "n": 3}
    across = {"mean": 0.01, "ci": [-0.02, 0.04], "n": 3}
    assert "**A beats B**" in experiments.paired_verdict("A", "B", above)
    assert "**A falls behind B**" in experiments.paired_verdict("A", "B", below)
    assert "cannot tell them apart" in experiments.paired_verdict("A", "B", across)
    assert "two or more" in experiments.paired_verdict("A", "B", {"mean": 0.1, "ci": None, "n": 1})
    same = metrics.paired_difference({0: 0.8, 1: 0.7}, {0: 0.8, 1: 0.7})  # e.g. a step that changed nothing
    assert (
        experiments.paired_verdict("A", "B", same)
        == "A vs B: the same AUC in all 2 seeds; here it changed nothing."
    )
    rows = [{"method": "B", "diff": None}, {"method": "A", "diff": below}]
    assert experiments.seeds_findings(rows, "B").splitlines() == [
        f"- {experiments.paired_verdict('A', 'B', below)}"
    ]


def _maps(jaccard_like: float, n: int = 4) -> interpret.SplitMaps:
    """Maps whose pool-4 peak covers a known fraction of a fixed lesion (the top-left quarter)."""
    masks = torch.zeros(n, 1, 8, 8, dtype=torch.bool)
    masks[:, :, :4, :4] = True
    pool4 = torch.zeros(n, 1, 8, 8)
    width = max(1, round(8 * jaccard_like))
    pool4[:, :, :4, :width] = 1.0  # inside the lesion up to `width` columns, then beyond it
    return interpret.SplitMaps(
        image_ids=[f"i{k}" for k in range(n)], labels=np.zeros(n), probs=np.zeros(n),
        images=torch.zeros(n, 3, 8, 8), masks=masks, has_mask=torch.ones(n, dtype=torch.bool),
        maps={"pool4": pool4}, model=torch.nn.Identity(),
    )  # fmt: skip


def test_table3_seed_rows_average_over_seeds_and_pair_with_the_reference() -> None:
    per_seed = {
        0: {"AttnMel-CNN": _maps(0.25), "AttnMel-CNN-Lesion": _maps(0.5)},
        1: {"AttnMel-CNN": _maps(0.25), "AttnMel-CNN-Lesion": _maps(0.375)},
    }
    rows = interpret.table3_seed_rows(per_seed, {("AttnMel-CNN", "pool4"): 0.3186})
    by = {(r["model"], r["map"]): r for r in rows}
    plain, lesion = by[("AttnMel-CNN", "pool4")], by[("AttnMel-CNN-Lesion", "pool4")]
    assert plain["jaccard"]["mean"] == pytest.approx(0.5) and plain["jaccard"]["sd"] == pytest.approx(0.0)
    assert lesion["per_seed"] == pytest.approx({0: 1.0, 1: 0.75})
    assert lesion["diff"]["mean"] == pytest.approx(0.375) and lesion["diff"]["seeds"] == [0, 1]
    assert plain["diff"] is None and plain["paper_jaccard"] == 0.3186
    table = interpret.table3_seeds_markdown(rows)
    assert "| AttnMel-CNN | pool4 | 0.500 ± 0.000 | 0.319 | reference |" in table
    assert "+0.375 [" in table


def test_shortcut_seed_rows_pair_the_shifted_auc_with_each_rows_reference() -> None:
    def row(v2: float, shift: float) -> dict:
        return {
            "model": "x",
            "auc_Test_v2": v2,
            "auc_Test_shift": shift,
            "artifact_share_Test_shift": 0.1,
            "artifact_area_Test_shift": 0.05,
        }

    per_model = {
        "ref": {0: row(0.9, 0.85), 1: row(0.92, 0.86)},
        "biased": {0: row(0.95, 0.75), 1: row(0.94, 0.70)},
        "lesion": {0: row(0.95, 0.80), 1: row(0.93, 0.74)},
    }
    rows = interpret.shortcut_seed_rows(per_model, {"biased": "ref", "lesion": "biased"})
    by = {r["model"]: r for r in rows}
    assert by["ref"]["diff"] is None and by["ref"]["auc_Test_shift"]["mean"] == pytest.approx(0.855)
    assert by["biased"]["diff"]["mean"] == pytest.approx(-0.13)
    assert by["lesion"]["diff"]["mean"] == pytest.approx(0.045) and by["lesion"]["reference"] == "biased"
    table = interpret.shortcut_seeds_markdown(rows)
    assert "-0.130 [" in table and "vs ref" in table and table.count("\n") == 4


def _runs_scoring(*aucs: float) -> dict:
    """Stand-ins for finished runs, by seed, with only a Test_v2 AUC: enough for the tables' arithmetic."""
    from types import SimpleNamespace

    return {s: SimpleNamespace(metrics={"Test_v2": {"auc": a}}) for s, a in enumerate(aucs)}


def test_ladder_table_pairs_each_step_with_the_one_before_and_the_first() -> None:
    ladder = {
        "paper": _runs_scoring(0.60, 0.62),
        "+ a": _runs_scoring(0.65, 0.66),
        "+ b": _runs_scoring(0.64, 0.70),
    }
    extra = {"jaccard": {"paper": {0: 0.2, 1: 0.3}, "+ a": {0: 0.4, 1: 0.4}}}
    rows = experiments.ladder_table(ladder, "Test_v2", extra)
    assert rows[0]["vs_previous"] is None and rows[0]["auc"]["mean"] == pytest.approx(0.61)
    assert rows[2]["vs_previous"]["mean"] == pytest.approx(((0.64 - 0.65) + (0.70 - 0.66)) / 2)
    assert rows[2]["vs_paper"]["mean"] == pytest.approx(((0.64 - 0.60) + (0.70 - 0.62)) / 2)
    assert rows[1]["jaccard"]["mean"] == pytest.approx(0.4) and rows[2]["jaccard"]["n"] == 0
    table = experiments.ladder_markdown(rows, {"jaccard": "pool-4 Jaccard"})
    assert "| paper | 2 | 0.610 ± 0.014 | — | — | 0.250 ± 0.071 |" in table
    assert "| + b | 2 |" in table and "+0.060 [" in table


def test_a_chapter_can_pick_a_subset_of_the_contrasts_by_folder() -> None:
    from attnmel.config import SCRATCH_CPU_COMPONENTS

    assert experiments.pick_contrasts(SCRATCH_CPU_COMPONENTS, "") == list(SCRATCH_CPU_COMPONENTS)
    picked = experiments.pick_contrasts(SCRATCH_CPU_COMPONENTS, " short-no-ema, short-no-jitter,short-no-ema")
    assert [folder for _, folder, _ in picked] == ["short-no-ema", "short-no-jitter"]
    with pytest.raises(
        ValueError, match="unknown contrast folder.s. no-mixup: choose from short-no-jitter, "
    ):
        experiments.pick_contrasts(SCRATCH_CPU_COMPONENTS, "no-mixup")


def test_a_contrast_table_pairs_every_contrast_with_the_reference_not_the_row_above() -> None:
    contrasts = {
        "ref": _runs_scoring(0.60, 0.62),
        "no a": _runs_scoring(0.55, 0.59),
        "no b": _runs_scoring(0.70, 0.64),
    }
    extra = {"jaccard": {"ref": {0: 0.2, 1: 0.3}, "no b": {0: 0.1, 1: 0.1}}}
    rows = experiments.contrast_table(contrasts, "Test_v2", extra)
    assert [r["step"] for r in rows] == ["ref", "no a", "no b"] and rows[0]["vs_paper"] is None
    assert rows[2]["vs_paper"]["mean"] == pytest.approx(((0.70 - 0.60) + (0.64 - 0.62)) / 2)
    assert rows[2]["vs_previous"] == rows[2]["vs_paper"]  # to the reference, not to "no a"
    assert rows[1]["jaccard"]["n"] == 0 and rows[2]["jaccard"]["mean"] == pytest.approx(0.1)
    table = experiments.ladder_markdown(rows, {"jaccard": "pool-4 Jaccard"}, first="ref", previous=False)
    assert "step before" not in table and "| vs ref (paired, 95% CI) |" in table
    assert (
        "| ref | 2 | 0.610 ± 0.014 | — | 0.250 ± 0.071 |" in table
        and "| no b | 2 | 0.670 ± 0.042 | +0.060 [" in table
    )


def test_the_recipe_components_each_undo_one_group_of_the_six_epoch_recipe() -> None:
    from attnmel.config import (
        CPU_REGULARISERS,
        SCRATCH_CPU_COMPONENTS,
        SCRATCH_CPU_STEPS,
        SCRATCH_RECIPE,
        WITHOUT_REGULARISATION,
    )

    preset = TrainConfig.from_preset("scratch-cpu", data_root="/data")
    six = experiments.with_recipe(
        experiments.with_recipe(preset, SCRATCH_CPU_STEPS[0][1]), SCRATCH_CPU_STEPS[1][1]
    )
    recipe = six.replace(**CPU_REGULARISERS)  # chapter 6's reference: the whole recipe at 6 epochs
    assert (recipe.epochs, recipe.color_constancy, recipe.mixup, recipe.ema) == (6, 6.0, 0.2, 0.99)
    # the study's last row, the regularisers out and weight decay 1e-4, is the preset at 6 epochs (the ladder's row)
    assert recipe.replace(**WITHOUT_REGULARISATION).to_dict() == six.to_dict()
    paper = TrainConfig().to_dict()
    folders = [folder for _, folder, _ in SCRATCH_CPU_COMPONENTS]
    assert len(set(folders)) == len(folders)
    assert not {"preset", "preset-regularised", "preset-no-cc", "short-recipe"} & set(folders)
    for title, _, overrides in SCRATCH_CPU_COMPONENTS:
        undone = recipe.replace(**overrides).to_dict()
        changed = {k for k, v in undone.items() if recipe.to_dict()[k] != v}
        assert changed == set(overrides) and title.startswith("without")  # each group is on in the recipe
        assert all(undone[k] == paper[k] for k in overrides)  # and goes back to the paper's value
    # together they undo every option of the recipe but the last-epoch choice, which changes no training
    undone_options = {k for _, _, overrides in SCRATCH_CPU_COMPONENTS for k in overrides}
    assert set(SCRATCH_RECIPE) - undone_options == {"select_epoch"}


def test_the_recipe_ladder_reuses_chapter_4_and_stacks_each_step_on_the_earlier_ones(
    tiny_synthetic, tmp_path
) -> None:
    from .helpers import TINY_RUN

    base = TrainConfig(**{**TINY_RUN, "data_root": str(tiny_synthetic), "n_boot": 0, "epochs": 1,
                          "max_train_samples": 8, "eval_splits": "Test_v2"})  # fmt: skip
    quiet = {"log": lambda _m: None}
    chapter4 = tmp_path / "04"
    first = experiments.run_variants(base, chapter4, ["AttnMel-CNN"], **quiet)["AttnMel-CNN"]
    before = first.best_checkpoint.stat().st_mtime_ns
    steps = [("+ jitter", {"crop_scale": 0.5}), ("+ smoothing", {"label_smoothing": 0.1})]
    ladder = experiments.run_recipe_ladder(base, tmp_path / "ladder", [0, 1], chapter4_dir=chapter4, steps=steps,
                                           **quiet)  # fmt: skip
    assert list(ladder) == [experiments.PAPER_PROTOCOL, "+ jitter", "+ smoothing"]
    assert ladder[experiments.PAPER_PROTOCOL][0].run_dir == first.run_dir  # chapter 4's run, not retrained
    assert first.best_checkpoint.stat().st_mtime_ns == before
    last = ladder["+ smoothing"][1].config
    assert (last.crop_scale, last.label_smoothing, last.seed, last.model) == (0.5, 0.1, 1, "attnmel_cnn")
    assert ladder["+ jitter"][0].config.label_smoothing == 0.0
    assert ladder["+ smoothing"][1].run_dir == tmp_path / "ladder" / "step-2" / "seed-1"
    with pytest.raises(ValueError, match="already sets crop_scale=0.5"):
        experiments.run_recipe_ladder(base.replace(crop_scale=0.5), tmp_path / "x", [0], chapter4_dir=chapter4,
                                      steps=steps, **quiet)  # fmt: skip


def test_ladder_extras_give_each_runs_pool4_jaccard_on_the_mask_split() -> None:
    from types import SimpleNamespace

    def run(jaccard: float) -> SimpleNamespace:
        scores = {"Validation": {"pool3": {"jaccard_mean": 0.9}, "pool4": {"jaccard_mean": jaccard}}}
        return SimpleNamespace(attention=lambda split: scores[split])

    ladder = {"paper": {0: run(0.2), 1: run(0.3)}, "+ a": {0: run(0.4)}}
    extra, titles = experiments.ladder_extras(ladder, "Validation")
    assert extra == {"jaccard": {"paper": {0: 0.2, 1: 0.3}, "+ a": {0: 0.4}}}
    assert titles == {"jaccard": "pool-4 Jaccard, Validation"}


def test_ladder_extras_score_every_run_on_ph2_and_reuse_those_scores(
    tiny_synthetic, ph2_root, tmp_path
) -> None:
    """The PH2 column of chapter 6's tables: each run's checkpoint on the external set, in its own folder."""
    import json

    from .helpers import tiny_config

    base = tiny_config(
        tiny_synthetic, tmp_path, n_boot=0, epochs=1, max_train_samples=8, eval_splits="Test_v2"
    )
    steps = [("start", {}), ("+ smoothing", {"label_smoothing": 0.1})]
    ladder = experiments.run_config_ladder(base, steps, tmp_path / "ladder", [0, 1], log=lambda _m: None)
    mask_split = interpret.mask_split(base)
    extra, titles = experiments.ladder_extras(ladder, mask_split, ph2_root)
    assert titles == {"jaccard": f"pool-4 Jaccard, {mask_split}", "ph2_auc": "PH2 AUC"}
    assert set(extra["ph2_auc"]) == {"start", "+ smoothing"}
    saved = {}
    for name, by_seed in ladder.items():
        assert set(extra["ph2_auc"][name]) == {0, 1}
        for s, run in by_seed.items():
            metrics = run.run_dir / "evaluation-ph2" / "metrics" / "Test.json"
            written = json.loads(metrics.read_text())
            assert written["n"] == 5 and written["n_pos"] == 2  # PH2's two melanomas (diagnosis 2)
            assert extra["ph2_auc"][name][s] == written["auc"] and 0.0 <= written["auc"] <= 1.0
            saved[metrics] = metrics.stat().st_mtime_ns
    again, _ = experiments.ladder_extras(ladder, mask_split, ph2_root)
    assert again == extra and all(m.stat().st_mtime_ns == t for m, t in saved.items())  # read back, not rerun


def test_the_cpu_preset_ladder_ends_on_the_preset_and_changes_one_thing_per_step() -> None:
    from attnmel.config import SCRATCH_CPU_STEPS

    preset = TrainConfig.from_preset("scratch-cpu", data_root="/data")
    config, rows = preset, []
    for _name, overrides in SCRATCH_CPU_STEPS:
        config = experiments.with_recipe(config, overrides)
        rows.append(config)
    assert rows[-1].to_dict() == preset.to_dict()
    first = rows[0].to_dict()
    assert {k for k, v in first.items() if preset.to_dict()[k] != v} == {"epochs", "color_constancy"}
    for before, after in itertools.pairwise(rows):
        assert len({k for k, v in after.to_dict().items() if before.to_dict()[k] != v}) == 1


def test_the_cpu_preset_keeps_the_recipes_schedule_and_leaves_out_its_regularisers() -> None:
    from attnmel.config import CPU_REGULARISERS, RECIPE_STEPS, SCRATCH_RECIPE, WITHOUT_REGULARISATION

    paper, preset = TrainConfig(), TrainConfig.from_preset("scratch-cpu", data_root="/data")
    assert all(getattr(paper, k) == getattr(preset, k) == v for k, v in WITHOUT_REGULARISATION.items())
    schedule = {k for name, o in RECIPE_STEPS if "cosine" in name or "last epoch" in name for k in o}
    assert (preset.lr_schedule, preset.select_epoch, preset.warmup_epochs) == ("cosine", "last", 2)
    # a regulariser added to the recipe later must be listed too
    assert set(SCRATCH_RECIPE) - schedule <= set(WITHOUT_REGULARISATION)
    assert set(WITHOUT_REGULARISATION) == set(CPU_REGULARISERS)
    regularised = preset.replace(**CPU_REGULARISERS).to_dict()
    changed = {k for k, v in regularised.items() if preset.to_dict()[k] != v}
    assert changed == set(CPU_REGULARISERS)  # the schedule, length and colour constancy stay
    assert (regularised["lr"], regularised["epochs"], regularised["color_constancy"]) == (0.01, 16, 6.0)
    # they are the recipe's values (the EMA decay set for 16 epochs), as the GPU preset still holds them
    gpu = TrainConfig.from_preset("scratch", data_root="/data")
    assert all(getattr(gpu, k) == v for k, v in CPU_REGULARISERS.items() if k != "ema")
    assert all(
        SCRATCH_RECIPE[k] == v for k, v in CPU_REGULARISERS.items() if k in SCRATCH_RECIPE and k != "ema"
    )


def test_the_cpu_presets_contrasts_each_change_only_what_they_name() -> None:
    from attnmel.config import CPU_REGULARISERS, SCRATCH_CPU_CONTRASTS

    preset = TrainConfig.from_preset("scratch-cpu", data_root="/data")
    contrasts = {folder: (title, overrides) for title, folder, overrides in SCRATCH_CPU_CONTRASTS}
    assert contrasts["preset-regularised"][1] is CPU_REGULARISERS
    for _, overrides in contrasts.values():
        changed_config = preset.replace(**overrides).to_dict()
        changed = {k for k, v in changed_config.items() if preset.to_dict()[k] != v}
        assert changed == set(overrides)
    assert contrasts["preset-regularised"][0].startswith("scratch-cpu with the recipe's")
    assert contrasts["preset-no-cc"][0].startswith("scratch-cpu without colour constancy")
    assert (
        preset.replace(**contrasts["preset-no-cc"][1]).color_constancy == TrainConfig().color_constancy == 0.0
    )


def test_the_contrasts_train_each_seed_beside_the_preset_and_pair_with_it(tiny_synthetic, tmp_path) -> None:
    from attnmel.config import WITHOUT_REGULARISATION

    from .helpers import TINY_RUN

    preset = TrainConfig(**{**TINY_RUN, "data_root": str(tiny_synthetic), "n_boot": 0, "epochs": 1,
                            "max_train_samples": 8, "eval_splits": "Test_v2", "lr": 0.003, "crop_scale": 0.35,
                            "mixup": 0.2, "ema": 0.9, "weight_decay": 5e-4,
                            "color_constancy": 6.0})  # fmt: skip
    quiet = {"log": lambda _m: None, "parallel": 1}
    contrasts = [("without", "bare", WITHOUT_REGULARISATION), ("no cc", "no-cc", {"color_constancy": 0.0})]
    with_it = experiments.run_config_ladder(preset, [("preset", {})], tmp_path / "preset", [0, 1], **quiet)
    runs = experiments.run_contrasts(preset, contrasts, tmp_path, [0, 1], **quiet)
    bare, no_cc = runs["without"], runs["no cc"]
    assert list(runs) == ["without", "no cc"] and set(bare) == set(no_cc) == {0, 1}
    assert (
        bare[1].run_dir == tmp_path / "bare" / "seed-1" and no_cc[0].run_dir == tmp_path / "no-cc" / "seed-0"
    )
    c = bare[1].config
    assert (c.crop_scale, c.mixup, c.ema, c.weight_decay, c.lr, c.seed, c.color_constancy) == (
        1.0, 0.0, 0.0, 1e-4, 0.003, 1, 6.0
    )  # fmt: skip
    c = no_cc[1].config
    assert (c.crop_scale, c.mixup, c.ema, c.weight_decay, c.seed, c.color_constancy) == (
        0.35,
        0.2,
        0.9,
        5e-4,
        1,
        0,
    )
    stamp = bare[0].best_checkpoint.stat().st_mtime_ns
    again = experiments.run_contrasts(preset, contrasts, tmp_path, [0, 1], **quiet)
    assert again["without"][0].best_checkpoint.stat().st_mtime_ns == stamp  # reused, not retrained
    for clash in ([("a", "same", {}), ("b", "same", {})], [("a", "x", {}), ("a", "y", {})], []):
        with pytest.raises(ValueError, match="distinct titles and folders, got titles"):
            experiments.run_contrasts(preset, clash, tmp_path, [0], **quiet)
    contrast = {"preset": with_it["preset"], "without": bare}
    rows = experiments.ladder_table(contrast, "Test_v2")
    assert rows[1]["vs_previous"]["n"] == 2 and set(rows[1]["per_seed"]) == {0, 1}

    # each seed paired over the test images: the AUC difference of the two runs, with attnmel compare's interval
    by_image = experiments.image_paired_by_seed(bare, with_it["preset"], "Test_v2")
    assert set(by_image) == {0, 1}
    for seed, paired in by_image.items():
        auc = bare[seed].metrics["Test_v2"]["auc"] - with_it["preset"][seed].metrics["Test_v2"]["auc"]
        assert (
            paired["diff"] == pytest.approx(auc, abs=1e-9)
            and paired["ci"][0] <= paired["diff"] <= paired["ci"][1]
        )
        compared = experiments.compare_runs([with_it["preset"][seed].run_dir, bare[seed].run_dir], "Test_v2")
        assert compared.rows[1]["auc_vs_first"]["ci"] == pytest.approx(paired["ci"])
    (finding,) = experiments.ladder_findings(contrast, rows, "the preset")
    assert finding.startswith("without vs the preset: AUC") or finding.startswith("**without")
    assert f"seed 1 {by_image[1]['diff']:+.3f} [{by_image[1]['ci'][0]:+.3f}," in finding

    # several contrasts in one table: each paired with the preset, none with the contrast above it
    both = {"preset": with_it["preset"], "without": bare, "no cc": no_cc}
    table = experiments.contrast_table(both, "Test_v2")
    findings = experiments.contrast_findings(both, table, "the preset")
    no_cc_by_image = experiments.image_paired_by_seed(no_cc, with_it["preset"], "Test_v2")
    assert [r["step"] for r in table] == ["preset", "without", "no cc"] and len(findings) == 2
    assert findings[0] == finding and "no cc vs the preset" in findings[1]
    assert f"seed 0 {no_cc_by_image[0]['diff']:+.3f} [" in findings[1]

    # predictions of other images are an error naming both files, not a silent pairing
    file = bare[1].run_dir / "predictions" / "Test_v2.csv"
    file.write_text("".join(file.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(ValueError, match="do not hold predictions for the same Test_v2 images"):
        experiments.image_paired_by_seed(bare, with_it["preset"], "Test_v2")


def test_a_config_ladder_stacks_its_steps_on_any_start_and_reuses_its_runs(tiny_synthetic, tmp_path) -> None:
    from .helpers import TINY_RUN

    start = TrainConfig(**{**TINY_RUN, "data_root": str(tiny_synthetic), "n_boot": 0, "epochs": 1,
                           "max_train_samples": 8, "eval_splits": "Test_v2", "lr": 0.003})  # fmt: skip
    quiet = {"log": lambda _m: None, "parallel": 1}
    steps = [("start, no constancy", {"color_constancy": 0.0}), ("+ constancy", {"color_constancy": 6.0}),
             ("+ 2 epochs", {"epochs": 2})]  # fmt: skip
    ladder = experiments.run_config_ladder(start, steps, tmp_path / "preset", [0, 1], **quiet)
    assert list(ladder) == [name for name, _ in steps] and all(set(r) == {0, 1} for r in ladder.values())
    last = ladder["+ 2 epochs"][1]
    assert (last.config.color_constancy, last.config.epochs, last.config.lr, last.config.seed) == (
        6.0,
        2,
        0.003,
        1,
    )
    assert last.run_dir == tmp_path / "preset" / "step-2" / "seed-1" and len(last.history) == 2
    assert ladder["+ constancy"][0].config.epochs == 1
    stamp = last.best_checkpoint.stat().st_mtime_ns
    again = experiments.run_config_ladder(start, steps, tmp_path / "preset", [0, 1], **quiet)
    assert again["+ 2 epochs"][1].best_checkpoint.stat().st_mtime_ns == stamp  # reused, not retrained
    rows = experiments.ladder_table(ladder, "Test_v2")
    assert rows[2]["vs_previous"]["n"] == 2 and "vs start (paired" in experiments.ladder_markdown(
        rows, first="start"
    )
    with pytest.raises(ValueError, match="at least one step"):
        experiments.run_config_ladder(start, [], tmp_path / "x", [0], **quiet)
    with pytest.raises(ValueError, match="must be distinct"):
        experiments.run_config_ladder(start, [steps[0], steps[0]], tmp_path / "x", [0], **quiet)


def test_with_recipe_leaves_an_epoch_after_the_warm_up() -> None:
    assert experiments.with_recipe(TrainConfig(epochs=1), {"warmup_epochs": 2, "ema": 0.9}).warmup_epochs == 0
    assert experiments.with_recipe(TrainConfig(epochs=4), {"warmup_epochs": 2}).warmup_epochs == 2
    assert experiments.with_recipe(TrainConfig(epochs=4), {"mixup": 0.2}).mixup == 0.2


def test_roi_variants_drop_mixup_and_keep_the_rest_of_the_recipe() -> None:
    base = TrainConfig.from_preset("scratch", data_root="/data")
    lesion = experiments.variant_config(base, "AttnMel-CNN-Lesion")
    assert (lesion.roi, lesion.mixup, lesion.label_smoothing, lesion.ema) == (
        "lesion",
        0.0,
        base.label_smoothing,
        base.ema,
    )
    assert experiments.variant_config(base, "AttnMel-CNN").mixup == base.mixup > 0
    assert experiments.variant_config(TrainConfig(), "AttnMel-CNN-Lesion").mixup == 0.0
    with pytest.raises(ValueError, match="unknown variant 'Nope'"):
        experiments.variant_config(base, "Nope")
