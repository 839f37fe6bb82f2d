"""The README's papermill commands work as written, and papermill reads every chapter's parameters.

The commands are taken from README.md's shell code blocks (every line that calls ``papermill``, backslash
continuations joined) and run in a temporary copy of ``notebooks/`` + ``jupytext.toml``. A command that runs a
chapter gets ``--prepare-only`` (papermill then injects the parameters and writes the notebook without executing
it: training would take minutes, and the README's data folders do not exist here), so the test fails if the
command itself breaks: no kernelspec or language in the chapter, a parameter papermill cannot parse, a typo.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_shell_commands() -> list[str]:
    """The commands in README.md's shell code blocks, one per entry, continuation lines joined."""
    commands = []
    for block in SHELL_BLOCK.findall(README.read_text(encoding="utf-8")):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [line.strip() for line in joined.splitlines() if line.strip()]
    return commands


def pipeline(command: str) -> list[list[str]]:
    """``a | b # comment`` -> [[a...], [b...]] (the trailing comment dropped)."""
    segments: list[list[str]] = [[]]
    for token in shlex.split(command, comments=True):
        if token == "|":
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


PAPERMILL_COMMANDS = [
    c for c in readme_shell_commands() if any(seg and seg[0] == "papermill" for seg in pipeline(c))
]


def parameters_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return next(c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", []))


def parameter_names(notebook: nbformat.NotebookNode) -> list[str]:
    from papermill.translators import PythonTranslator

    return [p.name for p in PythonTranslator.inspect(parameters_cell(notebook))]


def run_shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's papermill
    for tool in ("jupytext", "papermill"):
        if shutil.which(tool, path=env["PATH"]) is None:
            pytest.skip(f"{tool} is not installed beside {sys.executable}")
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture()
def checkout(tmp_path) -> Path:
    """A copy of what the README's commands read: notebooks/ and jupytext.toml (the cwd is the repo root)."""
    shutil.copytree(
        ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints")
    )
    shutil.copy2(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    return tmp_path


def test_readme_has_papermill_commands_that_run_a_chapter_and_list_its_parameters():
    runs = [c for c in PAPERMILL_COMMANDS if "--help-notebook" not in c]
    helps = [c for c in PAPERMILL_COMMANDS if "--help-notebook" in c]
    assert runs, "README.md should show how to run a chapter with papermill"
    assert helps, "README.md should show `papermill --help-notebook` on a chapter"


@pytest.mark.parametrize("command", PAPERMILL_COMMANDS)
def test_readme_papermill_command_works_as_written(command, checkout):
    segments = pipeline(command)
    papermill_args = next(seg for seg in segments if seg[0] == "papermill")
    if "--help-notebook" in papermill_args:
        completed = run_shell(command, checkout)
        assert completed.returncode == 0, f"`{command}` failed:\n{completed.stdout}\n{completed.stderr}"
        notebook = nbformat.read(checkout / papermill_args[papermill_args.index("--help-notebook") + 1], 4)
        for name in parameter_names(notebook):
            assert f"  {name}:" in completed.stdout, f"`{command}` does not list parameter {name!r}"
        return

    # Run it as written, plus --prepare-only: papermill checks the kernel and language, injects the parameters
    # and writes the output notebook, but executes nothing.
    prepared = " | ".join(
        shlex.join(seg + ["--prepare-only"] if seg[0] == "papermill" else seg) for seg in segments
    )
    completed = run_shell(prepared, checkout)
    assert completed.returncode == 0, f"`{command}` failed:\n{completed.stderr[-3000:]}"

    output = checkout / papermill_args[2]  # the README writes `papermill INPUT OUTPUT [OPTIONS]`
    notebook = nbformat.read(output, as_version=4)
    assert notebook.metadata.kernelspec.name == "python3"
    injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1, f"`{command}`: papermill injected no parameters"
    source = parameters_cell(notebook).source
    for i, arg in enumerate(papermill_args):
        if arg in ("-p", "--parameters"):
            name, value = papermill_args[i + 1], papermill_args[i + 2]
            assert name in parameter_names(notebook), f"`{command}`: the chapter has no parameter {name!r}"
            # papermill's -p infers numbers and booleans (2 -> 2, True -> True); anything else is a string
            forms = (f'{name} = "{value}"', f"{name} = {value}")
            lines = injected[0].source.splitlines()
            assert any(form in lines for form in forms), f"`{command}`: {name} not injected"
            assert f"{name} = " in source


@pytest.mark.parametrize("py_path", CHAPTERS, ids=lambda p: p.stem)
def test_papermill_help_notebook_lists_every_parameter(py_path):
    """``papermill --help-notebook notebooks/NN_name.ipynb`` works on every chapter (it needs the kernelspec)."""
    from click.testing import CliRunner
    from papermill.cli import papermill

    ipynb = py_path.with_suffix(".ipynb")
    result = CliRunner().invoke(papermill, ["--help-notebook", str(ipynb)])
    assert result.exit_code == 0, (
        f"--help-notebook failed on {ipynb.name}:\n{result.output}\n{result.exception!r}"
    )
    assert f"Parameters inferred for notebook '{ipynb}'" in result.output
    names = parameter_names(jupytext.read(py_path))
    assert {"profile", "data_root", "device", "runs_dir"} <= set(names)
    for name in names:
        assert f"  {name}:" in result.output, f"{ipynb.name}: --help-notebook does not list {name!r}"
