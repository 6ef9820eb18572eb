"""The Colab path (issue 17): a chapter's first cell installs vaelab where it is missing, and the
chapter then runs.

A fresh virtual environment holds only what Colab preinstalls (torch, torchvision, numpy,
matplotlib, tqdm, ipykernel, ipywidgets, pip, and what they depend on), without vaelab. The packages
are not copied (torch alone is gigabytes): a folder of symbolic links to just those distributions
in this environment's site-packages is put on the new environment's path with a ``.pth`` file,
so pip there sees them installed and imports find them, while vaelab stays invisible. A copy of
the chapter runs in a temporary folder (so this checkout's ./vaelab is not on the path either) in
a kernel of that environment, with VAELAB_PIP_SOURCE pointing at a wheel built from this checkout
and pip unable to reach any index (PIP_NO_INDEX=1): the install cell must install the wheel and
the chapter must pass in quick mode. Cost: about 30 s.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")
from packaging.requirements import Requirement  # noqa: E402  (packaging comes with pip/setuptools)
from packaging.utils import canonicalize_name  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "book" / "04_models.ipynb"  # a quick chapter that reads MNIST and trains nothing long
COLAB_PREINSTALLED = ("torch", "torchvision", "numpy", "matplotlib", "tqdm", "ipykernel", "ipywidgets", "pip")
PROBE = "import sys, vaelab\nprint(vaelab.__file__)\nprint(sys.prefix)"


def _closure(names: tuple[str, ...]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``names`` and everything they require (markers evaluated, extras followed)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(n, frozenset()) for n in names]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in seen:
            continue
        seen.add((key, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name in names:
                raise
            continue  # an optional dependency this environment does not have
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((req.name, frozenset(req.extras)))
    return found


def _link_packages(dists: dict[str, metadata.Distribution], folder: Path) -> None:
    """Symbolic links in ``folder`` to each distribution's top-level modules and its metadata."""
    folder.mkdir()
    for dist in dists.values():
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            target = base / top
            if target.exists() and not (folder / top).exists():
                (folder / top).symlink_to(target)


@pytest.fixture(scope="module")
def colab_env(tmp_path_factory):
    """(python of a venv with only Colab's preinstalled packages, a vaelab wheel of this checkout)."""
    tmp = tmp_path_factory.mktemp("colab")
    dists = _closure(COLAB_PREINSTALLED)
    assert "vaelab" not in dists
    _link_packages(dists, tmp / "preinstalled")
    venv = tmp / "venv"
    # --without-pip: the venv's own pip and old setuptools would shadow the linked ones (torch needs setuptools>=77)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "colab_preinstalled.pth").write_text(f"{tmp / 'preinstalled'}\n")
    # The wheel, built the way the homework autograder gets it (from a copy: nothing is written into the checkout).
    wheel = _assign_homework().build_wheel(tmp / "wheel")
    return python, Path(purelib), wheel


def _assign_homework():
    spec = importlib.util.spec_from_file_location("assign_homework", ROOT / "scripts" / "assign_homework.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(python: Path, code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=python.parent, env=env)


@pytest.mark.slow
def test_colab_environment_has_the_preinstalled_packages_and_no_vaelab(colab_env):
    python, _, _ = colab_env
    assert _run(python, "import torch, torchvision, numpy, matplotlib, tqdm, ipykernel, ipywidgets").returncode == 0
    missing = _run(python, "import vaelab")
    assert missing.returncode != 0 and "No module named 'vaelab'" in missing.stderr


@pytest.mark.slow
def test_chapter_installs_vaelab_from_the_wheel_and_runs_in_quick_mode(colab_env, tmp_path, monkeypatch, mnist_root):
    python, purelib, wheel = colab_env
    # A kernel of the Colab-like environment, found through JUPYTER_PATH.
    spec = tmp_path / "jupyter" / "kernels" / "colab-like"
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Colab-like", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    for name, value in {
        "CI": "1",
        "VAELAB_QUICK": "1",
        "VAELAB_PIP_SOURCE": str(wheel),
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "OMP_NUM_THREADS": "1",
        "VAELAB_DATA": str(mnist_root),
    }.items():
        monkeypatch.setenv(name, value)
    work = tmp_path / "chapter"
    work.mkdir()
    nb = nbformat.read(CHAPTER, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="colab-like", resources={"metadata": {"path": str(work)}}
    ).execute()  # raises if a cell fails
    install_cell = next(c for c in nb.cells if c.cell_type == "code")
    assert "VAELAB_PIP_SOURCE" in install_cell.source and "%pip install" in install_cell.source
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream").split()
    vaelab_file, prefix = Path(printed[0]).resolve(), Path(printed[1]).resolve()
    assert prefix == python.parent.parent.resolve()
    assert purelib.resolve() in vaelab_file.parents, vaelab_file  # installed by the cell, not this checkout
    assert ROOT not in vaelab_file.parents
    installed = _run(python, "import importlib.metadata as m; print(m.version('vaelab'))").stdout.strip()
    assert wheel.name.startswith(f"vaelab-{installed}-")
