"""The chapter-5 attention browser without a kernel: the static fallback, and the widget's pickers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from attnmel.browser import AttentionBrowser, attention_browser, live_frontend

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def split_maps(maps: dict[str, int], n: int = 3, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 1, 16, 16, dtype=torch.bool)
    masks[:, :, 4:12, 4:12] = True
    return SimpleNamespace(
        image_ids=[f"ISIC_{i:07d}" for i in range(n)],
        labels=np.array([0, 1, 0][:n]),
        probs=np.array([0.2, 0.9, 0.4][:n]) + seed / 100,
        images=torch.randn(n, 3, 16, 16, generator=g),
        masks=masks,
        maps={k: torch.rand(n, 1, side, side, generator=g) for k, side in maps.items()},
    )


@pytest.fixture
def results() -> dict[str, SimpleNamespace]:
    return {
        "AttnMel-CNN": split_maps({"pool3": 2, "pool4": 1, "gradcam": 1}),
        "VGG-16-GAP": split_maps({"cam": 1, "gradcam": 1}, seed=1),
        "Mel-CNN (no maps)": SimpleNamespace(maps={}),
    }


def test_not_interactive_gives_a_static_figure_of_the_first_melanoma(results) -> None:
    assert not live_frontend()  # pytest is no notebook kernel
    fig = attention_browser(results, MEAN, STD)  # auto: no live frontend -> static
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["Input", "AttnMel-CNN: pool-3 attention"]
    assert "ISIC_0000001" in fig.axes[0].get_ylabel() and "melanoma" in fig.axes[0].get_ylabel()
    assert "JupyterLab" in fig.get_suptitle()
    fig = attention_browser(results, MEAN, STD, interactive=False, model="VGG-16-GAP", layer="cam")
    assert "VGG-16-GAP: CAM" in [ax.get_title() for ax in fig.axes]
    assert "p(melanoma)=0.91" in fig.axes[0].get_ylabel()  # that model's probability


def test_without_ipywidgets_auto_falls_back_and_insisting_says_what_to_install(results, monkeypatch) -> None:
    import attnmel.browser

    monkeypatch.setattr(attnmel.browser, "_widgets", lambda: None)
    monkeypatch.setattr(attnmel.browser, "live_frontend", lambda: True)
    assert isinstance(attention_browser(results, MEAN, STD), Figure)
    with pytest.raises(ImportError, match="ipywidgets"):
        attention_browser(results, MEAN, STD, interactive=True)


def test_models_without_maps_are_left_out_and_sizes_must_agree(results) -> None:
    browser = AttentionBrowser(results, MEAN, STD)
    assert browser.models == ["AttnMel-CNN", "VGG-16-GAP"]
    assert [i for _, i in browser.image_options()] == [1, 0, 2]  # melanomas first
    with pytest.raises(ValueError, match="different numbers of images"):
        AttentionBrowser({"a": split_maps({"cam": 1}), "b": split_maps({"cam": 1}, n=2)}, MEAN, STD)


def test_widget_offers_the_images_models_and_layers(results, monkeypatch) -> None:
    pytest.importorskip("ipywidgets")
    import attnmel.browser

    monkeypatch.setattr(attnmel.browser, "live_frontend", lambda: True)
    drawn = []
    monkeypatch.setattr(
        AttentionBrowser, "figure", lambda self, i, m, layer: drawn.append((i, m, layer)) or Figure()
    )
    box = attention_browser(results, MEAN, STD)
    images, models, layers = box.children[0].children
    assert [o[1] for o in images.options] == [1, 0, 2] and images.value == 1
    assert list(models.options) == ["AttnMel-CNN", "VGG-16-GAP"]
    assert list(layers.options) == ["pool3", "pool4", "gradcam"]
    assert drawn == [(1, "AttnMel-CNN", "pool3")]
    layers.value = "gradcam"
    models.value = "VGG-16-GAP"  # the layers follow the model; Grad-CAM, which both have, stays chosen
    assert list(layers.options) == ["cam", "gradcam"] and layers.value == "gradcam"
    assert drawn[-1] == (1, "VGG-16-GAP", "gradcam")
    images.value = 2
    assert drawn[-1] == (2, "VGG-16-GAP", "gradcam")
