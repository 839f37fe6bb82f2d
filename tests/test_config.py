"""TrainConfig: the paper's defaults, validation with clear messages, presets, JSON round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from attnmel.config import PRESETS, TrainConfig


def test_defaults_are_the_papers_protocol() -> None:
    c = TrainConfig()
    assert (c.lr, c.momentum, c.nesterov, c.weight_decay) == (0.01, 0.9, True, 1e-4)
    assert (c.lr_step, c.lr_gamma, c.epochs, c.batch_size) == (10, 0.1, 50, 32)
    assert (c.focal_gamma, c.focal_alpha, c.lambda3, c.lambda4) == (2.0, None, 0.001, 0.01)
    assert (c.sampler, c.oversample, c.model, c.backbone) == ("oversample", 4, "attnmel_cnn", "vgg16_bn")
    assert TrainConfig(dataset="isic2017", data_root="x").epoch_passes == 2
    assert TrainConfig(dataset="isic2016", data_root="x").epoch_passes == 5
    assert TrainConfig(dataset="isic2016", data_root="x").splits == (
        "Training",
        "Validation",
        ("Validation", "Test"),
    )


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"model": "resnet50"}, "TrainConfig.model = 'resnet50' is not allowed; choose one of"),
        ({"dataset": "ham10000"}, "TrainConfig.dataset"),
        ({"roi": "lesions"}, "'lesions'"),
        ({"sampler": "balanced"}, "TrainConfig.sampler"),
        ({"precision": "fp8"}, "TrainConfig.precision"),
        ({"lr": "fast"}, "TrainConfig.lr must be float, got 'fast'"),
        ({"lr": 0.0}, "TrainConfig.lr = 0.0 must be > 0"),
        ({"batch_size": 0}, "TrainConfig.batch_size = 0 must be >= 1"),
        ({"batch_size": True}, "TrainConfig.batch_size must be int"),
        ({"epochs": 2.5}, "TrainConfig.epochs must be int"),
        ({"image_size": 300}, "larger than resize"),
        ({"image_size": 16, "resize": 20}, "must be >= 32"),
        ({"focal_alpha": 1.5}, "focal_alpha"),
        ({"lr_gamma": 0.0}, "lr_gamma"),
        ({"dataset": "isic2017"}, "data_root is required"),
        ({"model": "vgg16", "roi": "lesion"}, "regularises attention maps"),
        ({"device": "gpu"}, "TrainConfig.device = 'gpu'"),
        ({"run_name": "a/b"}, "plain folder name"),
        ({"eval_splits": " , "}, "eval_splits"),
        ({"nesterov": True, "momentum": 0.0}, "nesterov"),
        (
            {"gpu_jpeg_decode": True, "cache": False},
            "gpu_jpeg_decode = True decodes into the preprocessing cache",
        ),
        ({"compile_mode": "reduce-overhead"}, "has no effect without compile = True"),
        ({"compile": True, "compile_mode": "fast"}, "TrainConfig.compile_mode = 'fast' is not allowed"),
    ],
)
def test_invalid_values_name_field_value_and_allowed(changes: dict, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        TrainConfig(**changes)
    assert needle in str(err.value)


def test_int_for_float_field_is_accepted_as_float() -> None:
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 0.1  # type: ignore[misc]


def test_json_round_trip_and_flat_literals(tmp_path) -> None:
    c = TrainConfig.from_preset("smoke", roi="lesion", eval_splits="Test_v2", max_train_samples=10)
    data = json.loads(c.to_json())
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in data.values())
    assert TrainConfig.from_dict(data) == c
    path = tmp_path / "c.json"
    path.write_text(c.to_json())
    assert TrainConfig.from_json(path) == c
    assert c.splits[2] == ("Test_v2",)


def test_unknown_keys_are_a_clear_error(tmp_path) -> None:
    with pytest.raises(
        ValueError, match=r"unknown TrainConfig field\(s\): 'batchsize' \(did you mean 'batch_size'\?\)"
    ):
        TrainConfig.from_dict({"batchsize": 8})
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_preset("smoke", learning_rate=0.1)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        TrainConfig.from_json(bad)


def test_presets(monkeypatch) -> None:
    monkeypatch.setenv("ATTNMEL_ISIC2017_ROOT", "/data/isic2017")  # the real-data presets name no folder
    assert set(PRESETS) == {"smoke", "smoke-mini", "isic2017-cpu", "paper", "scratch", "scratch-cpu"}
    mini = TrainConfig.from_preset("smoke-mini")
    assert mini.dataset == "synthetic" and mini.image_size < 96 and mini.epochs <= 5
    smoke = TrainConfig.from_preset("smoke")
    assert smoke.dataset == "synthetic" and smoke.device == "cpu" and smoke.model == "attnmel_cnn"
    assert 96 <= smoke.image_size <= 128 and smoke.epochs <= 10
    cpu = TrainConfig.from_preset("isic2017-cpu")
    assert (cpu.dataset, cpu.image_size, cpu.device, cpu.precision) == ("isic2017", 128, "cpu", "auto")
    assert cpu.data_root == "/data/isic2017"
    paper = TrainConfig.from_preset("paper")
    assert (paper.image_size, paper.weights, paper.epochs, paper.batch_size) == (224, "IMAGENET1K_V1", 50, 32)
    assert paper.device == "cuda" and paper.sampler == "oversample" and paper.oversample == 4
    for name, size in (("scratch", 224), ("scratch-cpu", 128)):  # the paper's protocol without ImageNet
        scratch = TrainConfig.from_preset(name)
        assert (scratch.weights, scratch.image_size) == (None, size)
        assert (scratch.lr_schedule, scratch.select_epoch) == ("cosine", "last") and scratch.warmup_epochs > 0
    gpu = TrainConfig.from_preset("scratch")  # the whole recipe
    assert (
        gpu.crop_scale < 1
        and gpu.label_smoothing > 0
        and gpu.ema > 0
        and gpu.mixup > 0
        and gpu.color_jitter > 0
    )
    lean = TrainConfig.from_preset("scratch-cpu")  # without the regularisers that did not help on the CPU
    assert (lean.crop_scale, lean.label_smoothing, lean.ema, lean.mixup, lean.color_jitter) == (
        1.0,
        0,
        0,
        0,
        0,
    )
    assert TrainConfig.from_preset("scratch").data_on_device  # a loader cannot feed the recipe to a GPU
    assert TrainConfig.from_preset("smoke", epochs=1).epochs == 1
    with pytest.raises(ValueError, match="unknown preset 'fast'; presets are"):
        TrainConfig.from_preset("fast")


def test_synthetic_data_root_defaults_under_runs_root() -> None:
    c = TrainConfig(runs_root="/r", synthetic_n=100, synthetic_size=64)
    assert str(c.resolved_data_root()).startswith("/r/data/synthetic-n100-s64")
    assert str(TrainConfig(data_root="/d").resolved_data_root()) == "/d"
    assert TrainConfig(cache=False).resolved_cache_dir() is None


def _parameter_cells() -> dict[str, dict[str, str]]:
    """chapter -> {parameter: its comment} from each notebooks/*.py parameters cell."""
    import re

    cells = {}
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.py")):
        text = path.read_text(encoding="utf-8")
        cell = text.split('# %% tags=["parameters"]', 1)[1].split("# %%", 1)[0]
        cells[path.stem] = dict(re.findall(r"^(\w+) = .*?  # (.*)$", cell, re.MULTILINE))
    return cells


def _alternatives(comment: str) -> list[str]:
    """``"a | b | c (a note)"`` -> ``["a", "b", "c"]``."""
    return [o.strip() for o in comment.split(" (", 1)[0].split(" | ")]


def test_help_and_allowed_values_have_one_source_used_by_config_cli_and_chapters() -> None:
    from attnmel.book import PROFILES
    from attnmel.cli import build_parser
    from attnmel.config import field_choices, field_help, fields

    for f in fields():  # every field declares its help text (the CLI shows nothing else)
        assert field_help(f.name).strip(), f.name
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "train")[
        1
    ]
    helps = {a.dest: a.help for a in train._actions}
    assert "{oversample, weighted, none}" in helps["field_sampler"]
    assert helps["field_passes_per_epoch"].startswith("passes over the training list per epoch")
    cells = _parameter_cells()
    assert len(cells) == len(list((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.py")))
    for chapter, params in cells.items():
        assert _alternatives(params["profile"]) == list(PROFILES), chapter
        for name, comment in params.items():
            options = field_choices(name) if name in {f.name for f in fields()} else None
            if options is not None and " | " in comment:  # a chapter listing allowed values lists these
                assert _alternatives(comment) == [str(o) for o in options], (chapter, name)


def test_model_and_backbone_must_fit_at_config_time() -> None:
    with pytest.raises(ValueError, match="model 'vgg16' does not take backbone 'resnet50'"):
        TrainConfig(model="vgg16", backbone="resnet50")
    assert TrainConfig(model="attnmel_cnn", backbone="resnet50").backbone == "resnet50"
