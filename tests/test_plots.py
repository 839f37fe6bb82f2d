"""Figures: each returns a Figure with labelled axes and readable fonts; save_figure writes PNGs atomically."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.text import Text
from sklearn.metrics import roc_auc_score

from attnmel.attention_eval import DeletionCurve
from attnmel.plots import (
    plot_attention_grid,
    plot_deletion_curves,
    plot_history,
    plot_reliability,
    plot_roc_pr,
    save_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _toy(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    y[:2] = [0, 1]
    return y, np.clip(0.4 * y + 0.6 * rng.random(n), 0, 1)


def _plot_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _assert_readable(fig: Figure) -> None:
    texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert texts
    small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < 10]
    assert not small, small


def _assert_labelled(fig: Figure) -> None:
    for ax in _plot_axes(fig):
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(), ax


HISTORY = [
    {
        "epoch": e,
        "train_loss": 1 / e,
        "train_focal": 0.9 / e,
        "train_dice3": 0.0,
        "train_dice4": 0.0,
        "val_auc": [0.6, 0.8, 0.9, 0.85][e - 1],
        "val_ap": 0.3 + 0.1 * e,
        "lr": 0.01,
        "train_images": 64,
        "seconds": 12.0,
    }
    for e in range(1, 5)
]


def test_plot_history_marks_best_epoch_and_skips_empty_columns():
    fig = plot_history(HISTORY)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    _assert_labelled(fig)
    _assert_readable(fig)
    loss_ax = fig.axes[0]
    labels = [line.get_label() for line in loss_ax.get_lines()]
    # all-zero Dice terms and bookkeeping columns (train_images, seconds) are not drawn
    assert labels == ["train_loss", "train_focal", "best epoch 3"]
    assert [line.get_label() for line in fig.axes[1].get_lines()][:2] == ["val_auc", "val_ap"]


def test_plot_history_accepts_columns_csv_rows_and_rejects_empty():
    columns = {k: [row[k] for row in HISTORY] for k in HISTORY[0]}
    fig = plot_history(columns, best_epoch=2)
    assert "best epoch 2" in [line.get_label() for line in fig.axes[0].get_lines()]
    # rows as read back from history.csv: strings; the trainer's is_best flag decides the best epoch
    csv_rows = [
        {k: str(v) for k, v in row.items()} | {"is_best": str(row["epoch"] in (2, 4))} for row in HISTORY
    ]
    fig = plot_history(csv_rows)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["train_loss", "train_focal", "best epoch 4"]
    with pytest.raises(ValueError, match="empty"):
        plot_history([])


def test_plot_roc_pr_legends_hold_auc_and_ap():
    y, p = _toy()
    fig = plot_roc_pr({"AttnMel-CNN": (y, p), "random": (y, np.random.default_rng(1).random(len(y)))})
    _assert_labelled(fig)
    _assert_readable(fig)
    roc_legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"AttnMel-CNN (AUC {roc_auc_score(y, p):.3f})" in roc_legend and "chance" in roc_legend
    pr_legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert any(t.startswith("AttnMel-CNN (AP ") for t in pr_legend)


def test_plot_reliability_titles_ece_and_brier():
    y, p = _toy()
    fig = plot_reliability(y, p)
    _assert_labelled(fig)
    _assert_readable(fig)
    assert "ECE" in fig.axes[0].get_title() and "Brier" in fig.axes[0].get_title()


def test_plot_attention_grid_layout():
    images = torch.rand(2, 3, 32, 32)
    maps = {"pool-3": torch.rand(2, 1, 4, 4), "pool-4": torch.rand(2, 1, 2, 2)}
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, 8:24, 8:24] = 1
    fig = plot_attention_grid(images, maps, masks=masks, titles=["ISIC_1", "ISIC_2"])
    grid = _plot_axes(fig)
    assert len(grid) == 2 * 3 and len(fig.axes) == 2 * 3 + 1  # plus the colour bar
    assert [ax.get_title() for ax in grid[:3]] == ["Input", "pool-3", "pool-4"]
    assert grid[3].get_ylabel() == "ISIC_2"
    assert all(ax.collections for ax in grid)  # the lesion contour is drawn on every cell
    assert fig.axes[-1].get_ylabel() == "attention (min-max normalised)"
    _assert_readable(fig)
    with pytest.raises(ValueError, match="entries for 2 images"):
        plot_attention_grid(images, {"cam": torch.rand(3, 1, 4, 4)})


def test_plot_attention_grid_uint8_without_masks():
    images = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    fig = plot_attention_grid(images, {"cam": np.random.default_rng(0).random((1, 1, 4, 4))})
    assert len(_plot_axes(fig)) == 2 and not any(ax.collections for ax in _plot_axes(fig))


def test_plot_deletion_curves():
    f = np.linspace(0, 1, 5)
    probs = np.array([[0.9, 0.6, 0.4, 0.3, 0.2], [0.8, 0.5, 0.4, 0.3, 0.3]])
    fig = plot_deletion_curves(
        {"attention": (f, probs), "random": DeletionCurve(f, probs.mean(0), probs[::-1] * 0 + 0.5)}
    )
    _assert_labelled(fig)
    _assert_readable(fig)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[1] == "random (AUC 0.500)"
    assert legend[0].startswith("attention (AUC ")


def test_save_figure_writes_png_atomically(tmp_path):
    y, p = _toy()
    fig = plot_reliability(y, p)
    path = save_figure(fig, tmp_path / "figs" / "reliability.png")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert [q.name for q in path.parent.iterdir()] == ["reliability.png"]

    def broken(*_args, **_kwargs):
        raise RuntimeError("renderer crashed")

    fig.savefig = broken
    with pytest.raises(RuntimeError, match="renderer crashed"):
        save_figure(fig, path)
    assert path.read_bytes() == data  # the previous figure is intact
    assert [q.name for q in path.parent.iterdir()] == ["reliability.png"]
    with pytest.raises(ValueError, match=".png, .pdf or .svg"):
        save_figure(plot_reliability(y, p), tmp_path / "x.jpg")
