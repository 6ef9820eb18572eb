"""Shared fixtures and helpers. Keep them generic: several test modules use them.

NOTE (reliability work, issue 6): the first version of this file, written for the book and browser
tests, was overwritten by mistake; ROOT, ARTIFACTS, toc_files, toc_source and built_book below are a
reconstruction from what tests/test_book.py and tests/test_browser.py use. Their author should
check them against the original.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


# ----------------------------------------------------------------------------- MNIST


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The folder that holds MNIST/raw, from $VAELAB_DATA (as vaelab reads it); fails with the fix
    when it is not set or the files are missing."""
    import vaelab
    from vaelab.data import MNIST_SHA256

    if not os.environ.get(vaelab.DATA_ENV):
        pytest.fail(f"these tests read MNIST from ${vaelab.DATA_ENV}; set it to the folder that "
                    "contains MNIST/raw (the CI script does this).")
    root = vaelab.data_root()
    missing = [name for name in MNIST_SHA256 if not (root / "MNIST" / "raw" / name).is_file()]
    if missing:
        pytest.fail(f"${vaelab.DATA_ENV}={root} lacks MNIST/raw/{', '.join(missing)}; point it at a "
                    "folder with the four raw MNIST files.")
    return root


# ----------------------------------------------------------------------------- the book


def toc_files() -> list[str]:
    """The root and every ``file:`` entry of _toc.yml, in order (paths without suffix)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in toc.items() if k != "root"})
    return files


def toc_source(entry: str) -> Path:
    """The source file (.ipynb or .md) of a _toc.yml entry; raises naming the missing path."""
    for suffix in (".ipynb", ".md"):
        path = ROOT / (entry + suffix)
        if path.is_file():
            return path
    raise FileNotFoundError(f"_toc.yml lists {entry!r} but neither {entry}.ipynb nor {entry}.md exists")


@dataclass
class BookBuild:
    html: Path
    log: str
    returncode: int
    seconds: float
    started: float
    reused: bool


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> BookBuild:
    """The HTML book, built once per session with ``jupyter-book build -W -n --keep-going --all``
    (the log goes to artifacts/book-build.log); $VAELAB_BOOK_HTML reuses a built html folder."""
    reuse = os.environ.get("VAELAB_BOOK_HTML")
    if reuse:
        html = Path(reuse)
        if not (html / "index.html").is_file():
            pytest.fail(f"VAELAB_BOOK_HTML={reuse} has no index.html; build the book or unset it.")
        return BookBuild(html, "", 0, 0.0, 0.0, True)
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(ROOT), "-W", "-n",
               "--keep-going", "--all", "--path-output", str(out)]
    started = time.time()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.time() - started
    log = result.stdout + result.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "book-build.log").write_text(log, encoding="utf-8")
    return BookBuild(out / "_build" / "html", log, result.returncode, seconds, started, False)
