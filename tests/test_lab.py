"""``make lab``: a chapter saved in JupyterLab updates both files of its pair, and .py chapters open as notebooks.

A JupyterLab server is started the way the Makefile's ``lab`` target starts it (its flags are read from the
Makefile) in a temporary copy of ``notebooks/`` + ``jupytext.toml``, with the project's settings override
installed in a temporary app-settings directory as ``make setup`` installs it in the venv. A chapter is then
saved through the contents API the way Lab saves a .py opened as a notebook (``type: notebook``), and both the
.py and the .ipynb must change. Rooted at ``notebooks/`` instead, jupytext would not find ``jupytext.toml`` (it
only looks inside the server root) and only the .py would be written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

from .test_notebook_pairs import pair_differences, py_header

ROOT = Path(__file__).resolve().parents[1]
LAB_OVERRIDES = ROOT / "jupyter" / "lab-overrides.json"
CHAPTER = "notebooks/03_training.py"

pytestmark = pytest.mark.slow


def make_lab_flags() -> list[str]:
    """The ``jupyter lab`` options of the Makefile's ``lab`` recipe (the root-only ``$$( ... )`` part aside)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^lab:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.MULTILINE)
    assert recipe, "the Makefile has no `lab` target"
    command = re.sub(r"\\\n\s*", " ", recipe.group(1))
    command = re.sub(r"\$\$\(.*$", "", command, flags=re.MULTILINE)  # $$( [ "$$(id -u)" = 0 ] && echo ... )
    words = shlex.split(command.split("jupyter lab", 1)[1])
    return [w for w in words if w.startswith("--")]


def test_make_lab_roots_the_server_at_the_repository_and_allows_root_only_as_root():
    flags = make_lab_flags()
    assert "--ServerApp.root_dir=." in flags, "rooted elsewhere, jupytext does not find jupytext.toml"
    assert "--ContentsManager.preferred_dir=notebooks" in flags
    assert "--allow-root" not in flags
    lab = re.search(r"^lab:.*?(?=^\S|\Z)", (ROOT / "Makefile").read_text(), re.MULTILINE | re.DOTALL).group(0)
    assert re.search(r'\[ "\$\$\(id -u\)" = 0 \] && echo --allow-root', lab), (
        "--allow-root only when id -u is 0"
    )


def test_lab_override_opens_python_files_with_the_jupytext_notebook_viewer():
    overrides = json.loads(LAB_OVERRIDES.read_text())
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers == {"python": "Jupytext Notebook"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabServer:
    def __init__(self, url: str, token: str, process: subprocess.Popen, log: Path):
        self.url, self.token, self.process, self.log = url, token, process, log

    def request(self, path: str, method: str = "GET", body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"token {self.token}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def json(self, path: str, method: str = "GET", body: dict | None = None) -> dict:
        status, payload = self.request(path, method, body)
        assert status in (200, 201), (
            f"{method} {path} -> {status}: {payload[:500]!r}\nlog:\n{self.log_tail()}"
        )
        return json.loads(payload)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:]) if self.log.exists() else ""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab started like `make lab`, in a temporary copy of the chapters."""
    for module, why in (
        ("jupyter_server", "jupyter_server is not installed (the [lab] extra)"),
        ("jupyterlab", "jupyterlab is not installed (the [lab] extra)"),
        ("jupytext", "jupytext is not installed"),
        ("jupyterlab_jupytext", "jupytext's server extension (jupyterlab_jupytext) is not installed"),
    ):
        if importlib.util.find_spec(module) is None:
            pytest.skip(why)
    base = tmp_path_factory.mktemp("lab")
    repo = base / "repo"
    shutil.copytree(
        ROOT / "notebooks", repo / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints")
    )
    shutil.copy2(ROOT / "jupytext.toml", repo / "jupytext.toml")
    settings = (
        base / "app-settings"
    )  # stands for <venv>/share/jupyter/lab/settings, where `make setup` copies it
    (settings / "overrides.d").mkdir(parents=True)
    shutil.copy2(LAB_OVERRIDES, settings / "overrides.d" / "attnmel.json")

    port, token = _free_port(), uuid.uuid4().hex
    command = [sys.executable, "-m", "jupyterlab", *make_lab_flags()]
    command += ["--no-browser", f"--port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1"]
    command += [f"--IdentityProvider.token={token}", f"--LabApp.app_settings_dir={settings}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    env = dict(os.environ)  # keep the user's own Jupyter config, settings, workspaces and runtime files out
    for var, folder in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_SETTINGS_DIR", "user-settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
    ):
        env[var] = str(base / folder)
    log = base / "server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(command, cwd=repo, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = LabServer(f"http://127.0.0.1:{port}", token, process, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"jupyter lab exited with {process.returncode}:\n{server.log_tail()}")
            try:
                if server.request("/api/status")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within 90 s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield repo, server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_saving_a_py_chapter_in_lab_writes_both_files_of_the_pair(lab):
    repo, server = lab
    py_path = repo / CHAPTER
    ipynb_path = py_path.with_suffix(".ipynb")
    model = server.json(f"/api/contents/{CHAPTER}?type=notebook&content=1")
    assert model["type"] == "notebook", "jupytext's contents manager should serve the .py as a notebook"
    notebook = model["content"]
    assert notebook["metadata"]["kernelspec"]["name"] == "python3", "Lab would ask for a kernel"

    marker = f"Saved from JupyterLab {uuid.uuid4().hex[:8]}"
    notebook["cells"].append(nbformat.v4.new_markdown_cell(marker))
    before = {path: path.read_bytes() for path in (py_path, ipynb_path)}
    saved = server.json(
        f"/api/contents/{CHAPTER}", "PUT", {"type": "notebook", "format": "json", "content": notebook}
    )
    assert saved["type"] == "notebook"

    for path in (py_path, ipynb_path):
        assert path.read_bytes() != before[path], f"saving {CHAPTER} in Lab did not update {path.name}"
        assert marker in path.read_text(encoding="utf-8"), f"{path.name} lacks the new cell"
    assert pair_differences(py_path) == []
    assert nbformat.read(ipynb_path, as_version=4).metadata.kernelspec.name == "python3"
    assert set(py_header(py_path)["jupyter"]) == {"kernelspec", "language_info"}, (
        "the .py header gained noise"
    )


def test_lab_opens_on_notebooks_with_py_files_as_notebooks(lab):
    _, server = lab
    status, page = server.request("/lab")
    assert status == 200
    page_config = json.loads(
        re.search(rb'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.DOTALL).group(1)
    )
    assert page_config["preferredPath"] == "notebooks"
    settings = server.json("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    default_viewers = settings["schema"]["properties"]["defaultViewers"]["default"]
    assert default_viewers.get("python") == "Jupytext Notebook"
