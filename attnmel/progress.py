"""Progress bars, shown only when someone watches.

One decision for the whole package, :func:`watching`: bars (tqdm.auto: widgets in JupyterLab, text on a
terminal, always on stderr) appear when a person can see them, and never in a book build, CI or tests:

1. ``ATTNMEL_PROGRESS=0`` / ``1`` decides outright (``attnmel book`` sets 0 for the kernels it starts, so an
   executed chapter holds no bar; papermill itself exposes nothing a notebook could detect);
2. otherwise no bars under CI (``CI`` set, as GitHub Actions, GitLab CI and most services do) or pytest;
3. otherwise bars on a terminal (stderr is a TTY) and in an interactive notebook kernel.

Lines printed while a bar is open go through :func:`write` (``tqdm.write``), so they do not land inside it.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from typing import Any

__all__ = ["ENV_VAR", "watching", "in_notebook", "bar", "write", "tqdm_class"]

ENV_VAR = "ATTNMEL_PROGRESS"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, papermill: all run a ZMQ kernel)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def watching() -> bool:
    """Is someone watching? Decides whether progress bars are shown (see the module docstring)."""
    setting = os.environ.get(ENV_VAR, "").strip().lower()
    if setting in _TRUE:
        return True
    if setting in _FALSE:
        return False
    if os.environ.get("CI", "").strip().lower() not in ("", *_FALSE) or "PYTEST_CURRENT_TEST" in os.environ:
        return False
    return _stderr_is_tty() or in_notebook()


def tqdm_class() -> Any:
    """``tqdm.auto.tqdm`` (widgets in a notebook, text elsewhere), without its warning when ipywidgets is absent."""
    with (
        warnings.catch_warnings()
    ):  # tqdm.auto warns in notebooks without ipywidgets, then falls back to text
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm
    return tqdm


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    leave: bool = False,
    enabled: bool = True,
    **kwargs: Any,
) -> Any:
    """A tqdm bar on stderr, disabled unless ``enabled`` and :func:`watching` (a disabled bar costs nothing)."""
    show = bool(enabled) and watching()
    return tqdm_class()(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        disable=not show,
        file=sys.stderr,
        dynamic_ncols=True,
        **kwargs,
    )


def write(message: str) -> None:
    """Print ``message`` to stdout above any open bar (``tqdm.write``), not into it."""
    tqdm_class().write(message, file=sys.stdout)
