"""An attention browser for chapter 5: pick an image, a model and a layer; see the map over the image.

In a live notebook (JupyterLab, Notebook, VS Code) with ipywidgets installed, :func:`attention_browser`
returns three dropdowns over an output area. Everywhere else (papermill building the HTML book, a terminal,
no ipywidgets) it returns one static figure of the default choice, so the book still shows a picture rather
than an empty widget. The maps are those the chapter already computed (:class:`attnmel.interpret.SplitMaps`
per model: ``images``, ``masks``, ``maps``, ``probs``, ``labels``, ``image_ids``); nothing is recomputed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

__all__ = ["AttentionBrowser", "attention_browser", "live_frontend"]

LAYER_TITLES = {"pool3": "pool-3 attention", "pool4": "pool-4 attention", "cam": "CAM", "gradcam": "Grad-CAM"}


def live_frontend() -> bool:
    """A notebook kernel with someone watching: a Jupyter server session (JupyterLab / Notebook set
    ``JPY_SESSION_NAME`` in the kernel) or VS Code. papermill and nbclient kernels have neither."""
    from attnmel.progress import in_notebook

    return in_notebook() and bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID"))


def _widgets() -> Any:
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


class AttentionBrowser:
    """The choices (images, models, layers) over per-model split maps, and the figure of one choice."""

    def __init__(self, results: Mapping[str, Any], mean: Sequence[float], std: Sequence[float]) -> None:
        self.results = {name: r for name, r in results.items() if getattr(r, "maps", None)}
        if not self.results:
            raise ValueError("attention_browser: no model with saliency maps")
        self.mean, self.std = mean, std
        self.reference = next(iter(self.results.values()))
        sizes = {name: len(r.image_ids) for name, r in self.results.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"attention_browser: the models saw different numbers of images: {sizes}")

    @property
    def models(self) -> list[str]:
        return list(self.results)

    def layers(self, model: str) -> list[str]:
        return list(self.results[model].maps)

    def image_options(self) -> list[tuple[str, int]]:
        """(label, index) per image: id and class, melanomas first (the order of Fig. 3)."""
        ref = self.reference
        order = sorted(range(len(ref.image_ids)), key=lambda i: (-int(ref.labels[i]), i))
        return [(f"{ref.image_ids[i]} ({'melanoma' if ref.labels[i] else 'other'})", i) for i in order]

    def figure(self, index: int, model: str, layer: str) -> Figure:
        """One image with the chosen map over it, the lesion outlined, the model's probability in the title."""
        from attnmel.plots import plot_attention_grid

        r = self.results[model]
        title = (
            f"{r.image_ids[index]}\n{'melanoma' if r.labels[index] else 'other'}, "
            f"p(melanoma)={float(r.probs[index]):.2f}"
        )
        column = f"{model}: {LAYER_TITLES.get(layer, layer)}"
        return plot_attention_grid(
            r.images[index : index + 1],
            {column: r.maps[layer][index : index + 1]},
            r.masks[index : index + 1],
            [title],
            mean=self.mean,
            std=self.std,
        )

    def widget(self, index: int | None = None, model: str | None = None, layer: str | None = None) -> Any:
        """Dropdowns for image, model and layer over an output area (needs ipywidgets)."""
        widgets = _widgets()
        if widgets is None:
            raise ImportError("the attention browser needs ipywidgets (pip install 'attnmel[lab]')")
        from IPython.display import display

        model = model or self.models[0]
        images = widgets.Dropdown(
            options=self.image_options(), value=self.image_options()[0][1] if index is None else index,
            description="image",
        )  # fmt: skip
        models = widgets.Dropdown(options=self.models, value=model, description="model")
        layers = widgets.Dropdown(
            options=self.layers(model), value=layer or self.layers(model)[0], description="layer"
        )
        out = widgets.Output()

        def render(_change: Any = None) -> None:
            fig = self.figure(images.value, models.value, layers.value)
            with out:
                out.clear_output(wait=True)
                display(fig)

        def model_changed(change: Any) -> None:
            keep = layers.value
            options = self.layers(change["new"])
            layers.unobserve(render, names="value")  # one redraw for the new model, not one per step
            try:
                layers.options = options
                layers.value = keep if keep in options else options[0]
            finally:
                layers.observe(render, names="value")
            render()

        images.observe(render, names="value")
        models.observe(model_changed, names="value")
        layers.observe(render, names="value")
        box = widgets.VBox([widgets.HBox([images, models, layers]), out])
        box.render = render  # type: ignore[attr-defined] - tests and notebooks may redraw by hand
        render()
        return box


def attention_browser(
    results: Mapping[str, Any],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    interactive: bool | None = None,
    model: str | None = None,
    layer: str | None = None,
) -> Any:
    """The interactive browser (an ipywidgets box) in a live notebook; else a static figure of the first
    image (melanomas first) under ``model`` / ``layer`` (default: the first model and its first map).

    ``interactive``: None decides by :func:`live_frontend` and whether ipywidgets is installed; True insists
    (ImportError without ipywidgets); False always gives the figure.
    """
    browser = AttentionBrowser(results, mean, std)
    if interactive is None:
        interactive = live_frontend() and _widgets() is not None
    if interactive:
        return browser.widget(model=model, layer=layer)
    model = model or browser.models[0]
    layer = layer or browser.layers(model)[0]
    fig = browser.figure(browser.image_options()[0][1], model, layer)
    fig.suptitle("Static view: run the chapter in JupyterLab to pick the image, model and layer")
    return fig
