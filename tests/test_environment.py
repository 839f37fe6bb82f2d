"""environment.yml (conda) and pyproject.toml (pip) must list the same dependencies with the same bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {"pytorch": "torch"}  # conda-forge package names that differ from PyPI's
NOT_DEPENDENCIES = {"python", "pip"}


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    assert match, f"cannot parse requirement {requirement!r}"
    name = match.group(1).lower().replace("_", "-")
    spec = ",".join(sorted(s.strip() for s in match.group(2).replace(" ", "").split(",") if s.strip()))
    return name, spec


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    result: dict[str, str] = {}
    for requirement in requirements:
        name, spec = _split(requirement)
        assert result.get(name, spec) == spec, f"{name} has two different bounds in pyproject.toml"
        result[name] = spec
    return result


def environment_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"], "environment.yml must use the conda-forge channel only"
    result: dict[str, str] = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            for pip_line in entry["pip"]:
                if pip_line.lstrip().startswith(("-", ".")):
                    continue  # the project itself, installed editable
                name, spec = _split(pip_line)
                result[name] = spec
            continue
        name, spec = _split(entry)
        if name in NOT_DEPENDENCIES:
            continue
        result[CONDA_TO_PYPI.get(name, name)] = spec
    return result


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    pip_side, conda_side = pyproject_requirements(), environment_requirements()
    assert sorted(set(pip_side) - set(conda_side)) == [], "in pyproject.toml but not environment.yml"
    assert sorted(set(conda_side) - set(pip_side)) == [], "in environment.yml but not pyproject.toml"
    mismatched = {n: (pip_side[n], conda_side[n]) for n in pip_side if pip_side[n] != conda_side[n]}
    assert mismatched == {}, f"version bounds differ (pyproject, environment.yml): {mismatched}"


def test_environment_yml_installs_the_project_itself():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lines = next(e["pip"] for e in env["dependencies"] if isinstance(e, dict))
    assert any(line.split()[-1] == "." for line in pip_lines), (
        "environment.yml must install attnmel (pip: -e .)"
    )
