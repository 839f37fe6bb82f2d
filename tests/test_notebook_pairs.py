"""Every chapter is a py:percent file paired with an .ipynb; the pair must agree, and each has parameters."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (cell.cell_type, cell.source.strip(), tuple(cell.get("metadata", {}).get("tags", ())))
        for cell in notebook.cells
    ]


def pair_differences(py_path: Path) -> list[str]:
    """Human-readable differences between a py:percent file and its paired .ipynb (empty when in sync)."""
    ipynb_path = py_path.with_suffix(".ipynb")
    if not ipynb_path.exists():
        return [f"{ipynb_path.name} is missing: run `jupytext --sync {py_path.name}`"]
    from_py, from_ipynb = _cells(jupytext.read(py_path)), _cells(nbformat.read(ipynb_path, as_version=4))
    problems = []
    if len(from_py) != len(from_ipynb):
        problems.append(f"{py_path.name} has {len(from_py)} cells, {ipynb_path.name} has {len(from_ipynb)}")
    for i, (a, b) in enumerate(zip(from_py, from_ipynb, strict=False)):
        if a != b:
            problems.append(f"cell {i} differs between {py_path.name} and {ipynb_path.name}")
    return problems


def test_there_are_chapters():
    assert len(SOURCES) >= 5, f"expected the five chapters in {NOTEBOOKS}"


@pytest.mark.parametrize("py_path", SOURCES, ids=lambda p: p.stem)
def test_pair_is_in_sync(py_path):
    assert pair_differences(py_path) == []


@pytest.mark.parametrize("py_path", SOURCES, ids=lambda p: p.stem)
def test_chapter_has_a_parameters_cell_with_the_common_parameters(py_path):
    notebook = jupytext.read(py_path)
    tagged = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{py_path.name} needs exactly one cell tagged 'parameters'"
    for name in ("profile", "data_root", "device", "runs_dir"):
        assert f"{name} = " in tagged[0].source, f"{py_path.name}: parameter {name!r} missing"


def py_header(py_path: Path) -> dict:
    """The YAML header of a py:percent file (the ``# ---`` block jupytext writes), or {} when there is none."""
    lines = py_path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != "# ---":
        return {}
    end = lines.index("# ---", 1)
    return yaml.safe_load("\n".join(line.removeprefix("# ") for line in lines[1:end])) or {}


@pytest.mark.parametrize("py_path", SOURCES, ids=lambda p: p.stem)
def test_both_files_of_a_pair_name_the_kernel_and_language(py_path):
    """papermill (``-k`` or not, ``--help-notebook``) and JupyterLab take the kernel from the notebook itself."""
    from papermill.utils import nb_kernel_name, nb_language

    ipynb_path = py_path.with_suffix(".ipynb")
    for name, notebook in (
        (py_path.name, jupytext.read(py_path)),
        (ipynb_path.name, nbformat.read(ipynb_path, 4)),
    ):
        assert nb_kernel_name(notebook) == "python3", f"{name}: kernelspec.name should be python3"
        assert nb_language(notebook) == "python", (
            f"{name}: no language (run `jupytext --sync {py_path.name}`)"
        )
        assert notebook.metadata.kernelspec.get("language") == "python", name
        assert notebook.metadata.kernelspec.get("display_name"), f"{name}: nbformat requires a display_name"


@pytest.mark.parametrize("py_path", SOURCES, ids=lambda p: p.stem)
def test_py_header_keeps_only_the_kernelspec_and_the_language_name(py_path):
    """jupytext.toml's notebook_metadata_filter strips everything else (versions, widgets, jupytext's own)."""
    header = py_header(py_path)
    assert set(header) == {"jupyter"}, f"{py_path.name}: unexpected header {header}"
    assert set(header["jupyter"]) == {"kernelspec", "language_info"}, f"{py_path.name}: {header['jupyter']}"
    assert header["jupyter"]["language_info"] == {"name": "python"}
    assert set(header["jupyter"]["kernelspec"]) <= {"name", "display_name", "language"}


@pytest.mark.parametrize("py_path", SOURCES, ids=lambda p: p.stem)
def test_ipynb_is_committed_without_outputs(py_path):
    notebook = nbformat.read(py_path.with_suffix(".ipynb"), as_version=4)
    with_outputs = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.get("outputs")]
    assert with_outputs == [], (
        f"{py_path.with_suffix('.ipynb').name}: clear the outputs of cells {with_outputs}"
    )


def test_a_changed_py_is_detected_as_out_of_sync(tmp_path):
    source = SOURCES[0]
    (tmp_path / source.name).write_text(source.read_text() + "\n# %%\nprint('new cell')\n")
    (tmp_path / source.with_suffix(".ipynb").name).write_bytes(source.with_suffix(".ipynb").read_bytes())
    assert pair_differences(tmp_path / source.name) != []


def test_table_of_contents_lists_every_chapter():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    chapters = [f"executed/{p.stem}" for p in SOURCES]
    assert [f for f in files if f.startswith("executed/")] == chapters
    assert all((ROOT / "book" / f"{f}.md").exists() for f in files if not f.startswith("executed/"))


@pytest.mark.parametrize("py_path", SOURCES, ids=lambda p: p.stem)
def test_papermill_can_read_every_parameter(py_path):
    """papermill parses ``name = value  # help``; an '=' in the help text hides the parameter from it."""
    from papermill.translators import PythonTranslator

    cell = next(
        c for c in jupytext.read(py_path).cells if "parameters" in c.get("metadata", {}).get("tags", [])
    )
    assigned = [line.split("=", 1)[0].strip() for line in cell.source.splitlines() if "=" in line]
    parsed = [p.name for p in PythonTranslator.inspect(cell)]
    assert parsed == assigned
