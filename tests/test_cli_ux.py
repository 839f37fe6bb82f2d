"""The command line as its users expect it: --version, defaults in --help, errors spelled as flags, predict on
folders and globs with an ISIC table, every preset as a book profile, `attnmel weights`, the tensorboard extra."""

from __future__ import annotations

import argparse
import csv
import tomllib
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

import attnmel
from attnmel.cli import build_parser, cli_spelling, main

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"attnmel {attnmel.__version__}"


@pytest.mark.parametrize("command", ["synth", "evaluate", "predict", "book"])
def test_help_shows_every_default(command) -> None:
    sub = _subparsers(build_parser())[command]
    text = sub.format_help()
    formatter = sub._get_formatter()
    for action in sub._actions:
        if (
            not action.option_strings
            or action.default in (None, argparse.SUPPRESS)
            or action.default is False
        ):
            continue
        shown = formatter._expand_help(action) if action.help else ""
        assert "default" in shown, (command, action.dest, shown)
    if command == "predict":
        assert "relative to the current working directory" in " ".join(text.split())


def test_no_help_text_shows_a_doubled_percent_sign() -> None:
    """argparse %-formats argument help but prints a description as written, so '%%' belongs only in the former."""
    parser = build_parser()
    for name, sub in {"attnmel": parser, **_subparsers(parser)}.items():
        assert "%%" not in sub.format_help(), name
    assert "95% CIs" in _subparsers(parser)["compare"].format_help()


def test_train_help_still_points_to_print_config() -> None:
    text = " ".join(_subparsers(build_parser())["train"].format_help().split())
    assert "--preset NAME --print-config" in text


def test_library_spellings_read_as_flags() -> None:
    assert cli_spelling("run_dir holds a run; pass resume=True (--resume) to continue") == (
        "run_dir holds a run; pass --resume to continue"
    )
    assert cli_spelling("TrainConfig.data_root is required") == "--data-root is required"
    assert cli_spelling("TrainConfig.lr = -1.0 must be > 0") == "--lr -1.0 must be > 0"
    assert (
        cli_spelling("pass weights=None to train from scratch") == "pass --weights none to train from scratch"
    )
    assert cli_spelling("overwrite=True to replace it") == "--overwrite to replace it"
    assert cli_spelling("keeps torch.load(weights_only=True) and pool3=x alone") == (
        "keeps torch.load(weights_only=True) and pool3=x alone"
    )


def test_missing_images_error_names_the_flag(isic2017_root) -> None:
    from attnmel.data import DataError, isic2017

    (isic2017_root / "ISIC-2017_Training_Data" / "ISIC_0000001.jpg").unlink()
    with pytest.raises(DataError) as info:
        isic2017(isic2017_root, "Training")
    message = cli_spelling(str(info.value))
    assert "--missing skip" in message and "missing='skip'" not in message


def test_errors_through_the_cli_are_spelled_as_flags(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("ATTNMEL_ISIC2017_ROOT", raising=False)
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "isic2017", "--print-config"])
    err = capsys.readouterr().err
    assert "--data-root is required" in err and "data_root" not in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["synth", str(tmp_path / "full")]) == 1
    err = capsys.readouterr().err
    assert "pass --overwrite to replace it" in err and "overwrite=True" not in err


# --------------------------------------------------------------------------------------------------- predict
@pytest.fixture
def folder(tmp_path) -> Path:
    rgb = np.random.default_rng(0).integers(0, 256, (36, 44, 3), dtype=np.uint8)
    d = tmp_path / "imgs"
    (d / "nested").mkdir(parents=True)
    for name in ("b.PNG", "a.jpg", "c.Tiff", "nested/d.jpg"):
        Image.fromarray(rgb).save(d / name)
    (d / "notes.txt").write_text("not an image")
    return d


def test_predict_expands_folders_and_unexpanded_globs(folder) -> None:
    from attnmel.predict import expand_image_paths

    assert [p.name for p in expand_image_paths([folder])] == ["a.jpg", "b.PNG", "c.Tiff"]
    assert [p.name for p in expand_image_paths([str(folder / "*.jpg")])] == ["a.jpg"]
    assert [p.name for p in expand_image_paths([str(folder / "**" / "*.jpg")])] == ["a.jpg", "d.jpg"]
    assert [p.name for p in expand_image_paths([folder / "a.jpg", folder])] == ["a.jpg", "b.PNG", "c.Tiff"]


def test_predict_folder_writes_isic_table_and_says_where(checkpoint, folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["predict", "--checkpoint", str(checkpoint), "--device", "cpu", "--no-overlays"]
    assert main([*argv, str(folder)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 3  # one line per image on stdout
    out = tmp_path / "predictions"  # the default --out-dir, under the working directory
    assert str(out) in captured.err
    rows = list(csv.DictReader((out / "predictions_isic.csv").open()))
    assert [r["image_id"] for r in rows] == ["a", "b", "c"]
    assert all(0.0 <= float(r["melanoma"]) <= 1.0 for r in rows)
    assert list(csv.DictReader((out / "predictions.csv").open()))[0].keys() == {"path", "melanoma", "error"}


def test_predict_refuses_an_empty_folder_and_a_pattern_without_matches(checkpoint, tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    argv = ["predict", "--checkpoint", str(checkpoint), "--out-dir", str(tmp_path / "o")]
    assert main([*argv, str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no image files" in err[0] and "empty" in err[0]
    assert main([*argv, str(tmp_path / "*.jpg")]) == 1
    assert "no files match" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- book
def test_book_takes_every_preset_as_a_profile(monkeypatch, tmp_path) -> None:
    from attnmel import book, experiments
    from attnmel.config import PRESETS

    assert set(book.PROFILES) == set(PRESETS)
    assert book.chapter_parameters("smoke-mini", runs_dir=tmp_path)["profile"] == "smoke-mini"
    assert experiments.profile_config("smoke-mini", runs_dir=tmp_path, many_runs=True).image_size == (
        experiments.profile_config("smoke", runs_dir=tmp_path, many_runs=True).image_size
    )
    calls = []
    monkeypatch.setattr(book, "build_book", lambda **kwargs: calls.append(kwargs))
    assert main(["book", "--profile", "smoke-mini"]) == 0
    assert calls[0]["profile"] == "smoke-mini"


# ------------------------------------------------------------------------------------------------- weights
@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_weights_list_shows_where_files_go_and_which_are_there(torch_home, capsys) -> None:
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({"features.0.weight": torch.randn(4, 3, 3, 3)}, cache / "vgg16_bn-6c64b313.pth")
    assert main(["weights", "list"]) == 0
    lines = {
        tuple(line.split("\t")[:2]): line.split("\t")[2:] for line in capsys.readouterr().out.splitlines()
    }
    assert lines[("vgg16_bn", "VGG16_BN_Weights.IMAGENET1K_V1")] == [
        "present",
        str(cache / "vgg16_bn-6c64b313.pth"),
    ]
    assert lines[("resnet50", "ResNet50_Weights.IMAGENET1K_V2")][0] == "missing"


def test_weights_fetch_offline_is_one_clear_line(torch_home, monkeypatch, capsys) -> None:
    def offline(url, dst, progress=True):
        raise URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    assert main(["weights", "fetch", "vgg16"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and captured.out == ""
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in err[0]
    assert str(torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth") in err[0] and "by hand" in err[0]


def test_weights_fetch_puts_the_file_into_the_hub_cache(torch_home, monkeypatch, capsys) -> None:
    def fake_download(url, dst, progress=True):
        torch.save({"w": torch.zeros(1)}, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    assert main(["weights", "fetch", "resnet50", "--weights", "IMAGENET1K_V2"]) == 0
    path = torch_home / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert path.is_file() and str(path) in capsys.readouterr().out


def test_missing_weights_error_names_the_fetch_command(torch_home, monkeypatch) -> None:
    from torchvision.models import ResNet50_Weights, VGG16_BN_Weights

    from attnmel.models import WeightsNotFoundError
    from attnmel.models.weights import fetch_command, load_pretrained

    with pytest.raises(WeightsNotFoundError, match="attnmel weights fetch vgg16_bn"):
        load_pretrained(torch.nn.Module(), "IMAGENET1K_V1", "vgg16_bn")  # raises before touching the model
    assert fetch_command(VGG16_BN_Weights.IMAGENET1K_V1, "vgg16_bn") == "attnmel weights fetch vgg16_bn"
    assert fetch_command(ResNet50_Weights.DEFAULT, "resnet50").endswith("--weights IMAGENET1K_V2")


def test_tensorboard_comes_from_a_user_extra(monkeypatch, tmp_path) -> None:
    import sys

    from attnmel.trainer import _tensorboard

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("tensorboard") for r in extras["tensorboard"])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'attnmel\[tensorboard\]'"):
        _tensorboard(tmp_path, 1)
