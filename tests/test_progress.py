"""Progress bars: one decision (attnmel.progress.watching), bars on stderr only when someone watches, the
trainer's epoch lines above the bars, no bars in chapters executed by the book."""

from __future__ import annotations

import os

import pytest
import torch

from attnmel import progress
from attnmel.progress import ENV_VAR, watching

from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def unwatched(monkeypatch):
    """A neutral environment: no override, no CI, no TTY, no notebook, and (see below) not under pytest."""
    for name in (ENV_VAR, "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(progress, "_stderr_is_tty", lambda: False)
    monkeypatch.setattr(progress, "in_notebook", lambda: False)
    return monkeypatch


def _not_under_pytest(monkeypatch) -> None:
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # pytest sets it again for each test phase


def test_watching_decides_from_override_ci_tests_terminal_and_notebook(unwatched) -> None:
    monkeypatch = unwatched
    _not_under_pytest(monkeypatch)
    assert watching() is False  # nobody: a pipe, a log file
    monkeypatch.setattr(progress, "_stderr_is_tty", lambda: True)
    assert watching() is True  # a terminal
    monkeypatch.setattr(progress, "_stderr_is_tty", lambda: False)
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    assert watching() is True  # JupyterLab
    monkeypatch.setenv("CI", "true")
    assert watching() is False  # CI, even in a kernel
    monkeypatch.setenv("CI", "0")
    assert watching() is True
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "x")
    assert watching() is False  # tests
    monkeypatch.setenv(ENV_VAR, "0")
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert watching() is False  # the book's kernels (papermill exposes nothing a notebook could test)
    monkeypatch.setenv(ENV_VAR, "1")
    monkeypatch.setenv("CI", "true")
    assert watching() is True  # an explicit request wins


def test_trainer_progress_enabled_uses_the_same_decision(unwatched) -> None:
    from attnmel.trainer import progress_enabled

    _not_under_pytest(unwatched)
    unwatched.setattr(progress, "in_notebook", lambda: True)
    assert progress_enabled(True) is True and progress_enabled(False) is False
    unwatched.setenv(ENV_VAR, "0")  # a papermill kernel of `attnmel book`: a notebook, nobody watching
    assert progress_enabled(True) is False


def test_the_book_runs_chapter_kernels_with_bars_off(tmp_path, monkeypatch) -> None:
    import papermill

    from attnmel import book

    seen = []
    monkeypatch.setenv(ENV_VAR, "1")
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: seen.append(os.environ.get(ENV_VAR)))
    source = tmp_path / "01_x.py"
    source.write_text("# %%\nx = 1\n")
    run = book.execute_chapter(source, tmp_path / "01_x.ipynb", {})
    assert run.ok and seen == ["0"]  # the kernel (a child process) inherits it
    assert os.environ[ENV_VAR] == "1"  # restored


def test_bars_go_to_stderr_only_when_someone_watches(unwatched, tmp_path, capsys) -> None:
    from attnmel.data import make_synthetic

    make_synthetic(tmp_path / "quiet", n=20, size=32, seed=0, workers=1)
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == ""
    unwatched.setenv(ENV_VAR, "1")
    make_synthetic(tmp_path / "shown", n=20, size=32, seed=0, workers=1)
    shown = capsys.readouterr()
    assert "synthetic images" in shown.err and "img" in shown.err and shown.out == ""


def test_cache_fill_and_evaluation_show_bars(unwatched, isic2017_root, tmp_path, capsys) -> None:
    from attnmel.data import PreprocessCache, isic2017
    from attnmel.evaluate import collect_maps
    from attnmel.models import build_model

    unwatched.setenv(ENV_VAR, "1")
    samples = isic2017(isic2017_root, "Training")
    PreprocessCache(tmp_path / "cache", resize=40).fill(samples)
    assert "preprocess cache" in capsys.readouterr().err
    batch = {
        "image": torch.zeros(2, 3, 32, 32),
        "label": torch.tensor([0, 1]),
        "mask": torch.zeros(2, 1, 32, 32),
        "has_mask": torch.tensor([False, False]),
        "image_id": ["a", "b"],
    }
    found = collect_maps(build_model("attnmel_cnn").eval(), [batch, batch], device=torch.device("cpu"))
    assert len(found["image_id"]) == 4
    err = capsys.readouterr().err
    assert "evaluate" in err and "/2 " in err  # two batches
    unwatched.setenv(ENV_VAR, "0")
    collect_maps(build_model("attnmel_cnn").eval(), [batch], device=torch.device("cpu"))
    assert capsys.readouterr().err == ""


def test_epoch_lines_go_through_tqdm_write_while_bars_are_shown(unwatched, tmp_path, capsys) -> None:
    from attnmel.data import make_synthetic
    from attnmel.trainer import fit

    root = make_synthetic(tmp_path / "syn", n=40, size=40, seed=0, workers=1).root
    written: list[str] = []
    unwatched.setattr(progress, "write", written.append)
    config = tiny_config(root, tmp_path / "runs", epochs=1, max_train_samples=8, n_boot=0, progress=True)
    unwatched.setenv(ENV_VAR, "1")
    fit(config.replace(run_name="shown"))
    assert any(line.startswith("epoch 1/1:") for line in written)
    assert "epoch 1/1:" not in capsys.readouterr().out
    written.clear()
    unwatched.setenv(ENV_VAR, "0")
    fit(config.replace(run_name="quiet"))
    assert written == [] and "epoch 1/1:" in capsys.readouterr().out  # no bars: plain print
