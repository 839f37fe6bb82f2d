"""Run the chapters headless and build the HTML book.

The chapters live in ``notebooks/`` as jupytext py:percent files. ``execute_chapters`` turns each into a
notebook in memory, injects the profile's parameters with papermill and writes the executed copy to
``book/executed/``; ``build_html`` then runs Jupyter Book 1.x (Sphinx) on ``book/`` with warnings as errors.
Execution happens here, not inside Jupyter Book, so a batch run, the test suite and the book all execute the
chapters the same way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from attnmel.io import atomic_write_json
from attnmel.progress import ENV_VAR as PROGRESS_ENV

__all__ = [
    "PROFILES",
    "ChapterRun",
    "chapter_paths",
    "chapter_parameters",
    "declared_parameters",
    "execute_chapter",
    "execute_chapters",
    "build_html",
    "build_book",
    "read_timings",
    "timings_markdown",
    "repo_root",
]

# Every preset is a profile: smoke-mini runs every chapter under the smallest preset (the quickest book).
PROFILES = ("smoke", "smoke-mini", "isic2017-cpu", "paper", "scratch", "scratch-cpu")
KERNEL_NAME = "python3"
TIMINGS_FILE = "book_timings.json"
CHAPTER_TIMEOUT_S = 3 * 3600  # per cell; the paper profile trains for hours on a GPU


def repo_root() -> Path:
    """The checkout that holds ``notebooks/`` and ``book/`` (this package is installed editable)."""
    return Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class ChapterRun:
    """What happened when one chapter was executed."""

    name: str
    source: Path
    output: Path
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def chapter_paths(notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """The chapter sources, in reading order (``NN_name.py``)."""
    folder = Path(notebooks_dir) if notebooks_dir else repo_root() / "notebooks"
    paths = sorted(p for p in folder.glob("[0-9][0-9]_*.py"))
    if not paths:
        raise FileNotFoundError(f"no chapters (NN_name.py) found in {folder}")
    return paths


def chapter_parameters(
    profile: str = "smoke",
    data_root: str | None = None,
    device: str = "auto",
    runs_dir: str | os.PathLike = "runs",
    *,
    isic2016_root: str | os.PathLike | None = None,
    ph2_root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The papermill parameters of the book: the four every chapter takes, and the extra datasets.

    ``isic2016_root`` (Table 1) and ``ph2_root`` (the external PH2 column of Table 2) go only to the chapters
    that declare them (:func:`execute_chapter` passes a chapter the parameters its cell declares).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    parameters = {
        "profile": profile,
        "data_root": str(data_root) if data_root else "",
        "device": device,
        "runs_dir": str(Path(runs_dir).resolve()),
    }
    for name, folder in (("isic2016_root", isic2016_root), ("ph2_root", ph2_root)):
        if folder:
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"{name}: {folder} is not a folder")
            parameters[name] = str(Path(folder).resolve())
    return parameters


def declared_parameters(notebook: Any) -> set[str]:
    """Names assigned in the notebook's ``parameters`` cell (what papermill may override)."""
    import re

    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return set(re.findall(r"^([A-Za-z_]\w*)\s*=", cell.source, re.MULTILINE))
    return set()


def execute_chapter(
    source: str | os.PathLike,
    output: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike | None = None,
    progress: bool = False,
) -> ChapterRun:
    """Execute one py:percent chapter with papermill; failures are recorded, not raised."""
    import jupytext
    import papermill

    source, output = Path(source), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(source)
    declared = declared_parameters(notebook)
    parameters = {k: v for k, v in (parameters or {}).items() if k in declared}
    # The chapters carry their kernelspec (jupytext.toml keeps it in the .py header); this is only a fallback.
    notebook.metadata.setdefault(
        "kernelspec", {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
    )
    start = time.perf_counter()
    error = None
    # The kernel inherits this: no progress bars in an executed chapter (attnmel.progress.watching); ``progress``
    # is papermill's own bar over the cells, on this terminal
    saved = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "0"
    try:
        papermill.execute_notebook(
            notebook,
            str(output),
            parameters=dict(parameters or {}),
            kernel_name=KERNEL_NAME,
            cwd=str(cwd) if cwd else str(source.parent),
            progress_bar=progress,
            execution_timeout=CHAPTER_TIMEOUT_S,
        )
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if saved is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = saved
    return ChapterRun(source.stem, source, output, time.perf_counter() - start, error)


def execute_chapters(
    out_dir: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    chapters: Iterable[str | os.PathLike] | None = None,
    log: Callable[[str], None] = print,
    stop_on_error: bool = False,
) -> list[ChapterRun]:
    """Execute the chapters in order into ``out_dir``; later chapters may reuse earlier chapters' runs."""
    out_dir = Path(out_dir)
    sources = [Path(c) for c in chapters] if chapters is not None else chapter_paths()
    runs_dir = (parameters or {}).get("runs_dir")
    timings: list[dict[str, Any]] = []
    runs: list[ChapterRun] = []
    for i, source in enumerate(sources, 1):
        log(f"==> [{i}/{len(sources)}] executing {source.name}")
        run = execute_chapter(source, out_dir / f"{source.stem}.ipynb", parameters)
        status = "ok" if run.ok else "FAILED"
        log(f"    {source.stem}: {status} in {run.seconds:.0f} s")
        runs.append(run)
        if runs_dir:  # the reproducibility chapter reports these
            timings.append({"chapter": run.name, "seconds": round(run.seconds, 1), "ok": run.ok})
            atomic_write_json(Path(runs_dir) / TIMINGS_FILE, timings)
        if not run.ok and stop_on_error:
            break
    return runs


def read_timings(runs_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-chapter wall times that :func:`execute_chapters` recorded in ``runs_dir`` (empty if none)."""
    path = Path(runs_dir) / TIMINGS_FILE
    return json.loads(path.read_text()) if path.exists() else []


def timings_markdown(timings: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`read_timings` records, with the total."""
    lines = ["| chapter | seconds | minutes |", "|---|---:|---:|"]
    lines += [f"| {t['chapter']} | {t['seconds']:.0f} | {t['seconds'] / 60:.1f} |" for t in timings]
    total = sum(t["seconds"] for t in timings)
    lines.append(f"| **total** | {total:.0f} | {total / 60:.1f} |")
    return "\n".join(lines)


def build_html(book_dir: str | os.PathLike, build_dir: str | os.PathLike | None = None) -> Path:
    """Build the Jupyter Book in ``book_dir`` with warnings as errors; returns the path of index.html."""
    book_dir = Path(book_dir)
    build_parent = Path(build_dir) if build_dir else book_dir
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(book_dir)]
    command += ["--path-output", str(build_parent), "--warningiserror", "--keep-going", "--builder", "html"]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-40:])
        raise RuntimeError(f"jupyter-book build failed for {book_dir} (exit {completed.returncode}):\n{tail}")
    index = build_parent / "_build" / "html" / "index.html"
    if not index.exists():
        raise RuntimeError(f"jupyter-book reported success but {index} is missing")
    return index


def build_book(
    profile: str = "smoke",
    data_root: str | None = None,
    device: str = "auto",
    book_dir: str | os.PathLike | None = None,
    runs_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    *,
    isic2016_root: str | os.PathLike | None = None,
    ph2_root: str | os.PathLike | None = None,
) -> Path:
    """Execute every chapter under ``profile`` and build the HTML book; returns index.html."""
    root = repo_root()
    book_dir = Path(book_dir) if book_dir else root / "book"
    runs_dir = Path(runs_dir) if runs_dir else root / "runs" / profile
    executed = book_dir / "executed"
    start = time.perf_counter()
    parameters = chapter_parameters(
        profile, data_root, device, runs_dir, isic2016_root=isic2016_root, ph2_root=ph2_root
    )
    runs = execute_chapters(executed, parameters, log=log)
    failed = [r for r in runs if not r.ok]
    if failed:
        details = "\n".join(f"- {r.name}: {r.error.splitlines()[0] if r.error else ''}" for r in failed)
        raise RuntimeError(f"{len(failed)} chapter(s) failed; executed copies are in {executed}:\n{details}")
    log("==> building the HTML book (Jupyter Book, warnings are errors)")
    if (book_dir / "_build").exists():
        shutil.rmtree(book_dir / "_build")
    index = build_html(book_dir)
    log(f"==> book built in {time.perf_counter() - start:.0f} s: {index}")
    log(f"    open file://{index.resolve()}")
    return index
