"""What fit leaves for a reader: figures, model card, best.safetensors; and the seaborn figures over seeds."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from attnmel.trainer import fit

from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic_root(tiny_synthetic) -> Path:
    return tiny_synthetic  # the session's shared 40-image set (tests/conftest.py)


@pytest.fixture(scope="module")
def finished_run(synthetic_root, tmp_path_factory):
    config = tiny_config(
        synthetic_root,
        tmp_path_factory.mktemp("runs"),
        epochs=2,
        max_train_samples=8,
        n_boot=20,
        run_name="run",
        seed=3,
        eval_splits="Validation,Test_v2",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(config, log=lambda _msg: None)
    return config, result, caught


def test_fit_writes_figures_of_history_and_every_evaluated_split(finished_run) -> None:
    from attnmel.report import RunOutputWarning

    _, result, caught = finished_run
    assert not [w for w in caught if issubclass(w.category, RunOutputWarning)]
    figures = result.run_dir / "figures"
    names = sorted(p.name for p in figures.iterdir())
    splits = sorted(result.test_metrics)
    assert splits == ["Test_v2", "Validation"]
    expected = ["history.png"] + [f"{s}_{kind}.png" for s in splits for kind in ("reliability", "roc_pr")]
    if any(result.test_metrics[s]["n_pos"] in (0, result.test_metrics[s]["n"]) for s in splits):
        expected = [n for n in expected if "roc_pr" not in n or (figures / n).exists()]  # one-class split
    assert names == sorted(expected)
    for name in ("history.png", "Test_v2_reliability.png"):
        assert (figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(figures.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_model_card_names_data_protocol_metrics_and_limits(finished_run) -> None:
    config, result, _ = finished_run
    card = (result.run_dir / "model_card.md").read_text()
    for heading in (
        "## Model",
        "## Data",
        "## Training protocol",
        "## Metrics (best checkpoint)",
        "## Limits",
    ):
        assert heading in card
    assert "| Training | training | 8 |" in card  # max_train_samples=8
    assert "from scratch" in card and "Synthetic images" in card and "One seed (3)" in card
    assert f"Input {config.image_size} px (the paper: 224 px)" in card
    metrics = result.test_metrics["Test_v2"]
    assert f"| Test_v2 | {metrics['n']} ({metrics['n_pos']}) |" in card
    if metrics["auc_ci"]:
        assert f"[{metrics['auc_ci'][0]:.3f}, {metrics['auc_ci'][1]:.3f}]" in card


def test_best_safetensors_rebuilds_the_outputs_of_best_pt(finished_run) -> None:
    from safetensors import safe_open

    from attnmel.checkpoint import build_model_from_checkpoint, load_safetensors

    run = finished_run[1].run_dir
    path = run / "checkpoints" / "best.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["arch"] == "attnmel_cnn" and '"backbone": "vgg16_bn"' in meta["arch_kwargs"]
    model, metadata = load_safetensors(path)
    reference, ckpt = build_model_from_checkpoint(run / "checkpoints" / "best.pt")
    assert metadata["epoch"] == str(ckpt["epoch"])
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = model(x), reference(x)
    for got, want in zip(a, b, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_load_safetensors_refuses_a_file_without_our_metadata(tmp_path) -> None:
    from safetensors.torch import save_file

    from attnmel.checkpoint import CheckpointError, load_safetensors

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not an attnmel safetensors file"):
        load_safetensors(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_safetensors(tmp_path / "junk.safetensors")


def test_a_failing_figure_is_a_warning_and_the_rest_is_still_written(finished_run, monkeypatch) -> None:
    import attnmel.plots
    from attnmel.report import RunOutputWarning, write_run_outputs

    run = finished_run[1].run_dir
    (run / "model_card.md").unlink()
    (run / "checkpoints" / "best.safetensors").unlink()

    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(attnmel.plots, "plot_history", broken)
    with pytest.warns(RunOutputWarning, match="could not write the figures: RuntimeError: no display"):
        written = write_run_outputs(run)
    assert (run / "model_card.md").is_file() and (run / "checkpoints" / "best.safetensors").is_file()
    assert run / "model_card.md" in written


# --------------------------------------------------------------------------------------- seaborn over seeds
SEEDS = {
    "AttnMel-CNN": {0: 0.80, 1: 0.82, 2: 0.79},
    "Mel-CNN": {0: 0.75, 1: 0.78, 2: 0.74},
    "VGG-16": [0.70, 0.72],
}


def _interval_segments(ax) -> list[np.ndarray]:
    """The error-bar segments seaborn's pointplot draws: lines whose points share one y (horizontal bars)."""
    segments = []
    for line in ax.lines:  # an error bar with caps is one line: cap, NaN, bar, NaN, cap
        xy = np.asarray(line.get_xydata())
        breaks = np.flatnonzero(~np.isfinite(xy).all(axis=1))
        for part in np.split(xy, breaks):
            part = part[np.isfinite(part).all(axis=1)]
            if len(part) == 2 and part[0, 1] == part[1, 1] and part[0, 0] != part[1, 0]:
                segments.append(part)
    return segments


def test_mean_ci95_is_the_t_interval() -> None:
    from scipy import stats

    from attnmel.plots import mean_ci95

    x = np.array([0.80, 0.82, 0.79])
    half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    assert mean_ci95(x) == pytest.approx((x.mean() - half, x.mean() + half))
    assert mean_ci95([0.5]) == (0.5, 0.5)


def test_seed_distribution_draws_every_seed_and_the_mean_with_its_interval() -> None:
    from attnmel.plots import mean_ci95, plot_seed_distribution

    fig = plot_seed_distribution(SEEDS, metric="AUC")
    ax = fig.axes[0]
    points = [c.get_offsets() for c in ax.collections]
    assert [len(p) for p in points] == [3, 3, 2]  # one strip per model, one point per seed
    assert sorted(points[0][:, 0].tolist()) == pytest.approx(sorted(SEEDS["AttnMel-CNN"].values()))
    means = next(line.get_xydata() for line in ax.lines if len(line.get_xydata()) == 3)
    assert means[:, 0] == pytest.approx(
        [np.mean(list(v.values() if isinstance(v, dict) else v)) for v in SEEDS.values()]
    )
    bars = [s for s in _interval_segments(ax) if s[0, 1] == int(s[0, 1])]  # the bar itself, not the caps
    low, high = mean_ci95(list(SEEDS["Mel-CNN"].values()))
    assert any(sorted(s[:, 0].tolist()) == pytest.approx([low, high]) and s[0, 1] == 1 for s in bars)
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "AttnMel-CNN (n=3)",
        "Mel-CNN (n=3)",
        "VGG-16 (n=2)",
    ]


def test_paired_differences_pair_by_seed_and_mark_zero() -> None:
    from attnmel.plots import plot_paired_differences

    fig = plot_paired_differences(SEEDS, reference="Mel-CNN")
    ax = fig.axes[0]
    points = [c.get_offsets() for c in ax.collections]
    assert sorted(points[0][:, 0].tolist()) == pytest.approx(sorted([0.05, 0.04, 0.05]))
    assert sorted(points[1][:, 0].tolist()) == pytest.approx(sorted([-0.05, -0.06]))  # seeds 0, 1 only
    zero = [line for line in ax.lines if np.allclose(line.get_xdata(), 0.0) and len(line.get_xdata()) == 2]
    assert zero, "no line at 0"
    with pytest.raises(ValueError, match="reference 'ResNet'"):
        plot_paired_differences(SEEDS, reference="ResNet")


def test_calibration_curves_one_line_per_model_with_a_band_over_seeds() -> None:
    from attnmel.plots import plot_calibration_curves

    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 2, 60), rng.random(60)) for _ in range(3)]
    fig = plot_calibration_curves({"a": pairs, "b": pairs[0]}, n_bins=5)
    ax_rel, ax_hist = fig.axes[:2]
    labels = [t.get_text() for t in ax_rel.get_legend().get_texts()]
    assert labels[-2:] == ["a", "b"]
    assert len(ax_rel.collections) >= 1  # the 95% band of "a" (three seeds)
    assert ax_hist.get_legend() is not None
