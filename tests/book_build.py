"""The HTML book, built once per test session, for tests/test_book.py and tests/test_browser.py.

`require_book()` (behind each test module's `built_book` fixture) runs `jupyter-book build . -W -n --keep-going --all`
with execution as configured in _config.yml (CI sets VAELAB_QUICK=1, so the chapters run their quick
settings), into its own folder, _build/test/_build/html (TEST_BUILD), and saves the log to
artifacts/book-build.log. Its own folder: the quick-mode pages of the tests never stand in _build/html, where
`make book` writes the full-settings book (which builds with --all anyway, whatever ran before). The build runs at
most once per process, whichever modules ask for it, and only where asked: with CI set (`make test`, .ci/run)
or VAELAB_BOOK_BUILD=1; elsewhere the book tests skip, saying so (a plain `pytest tests` stays quick).
Set VAELAB_BOOK_HTML to an already built html folder to reuse it instead (development: e.g. a build made
with execution off); the build's own checks are then skipped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# jupyter-book build --path-output P writes P/_build/html; _build/ is excluded from the book and from git.
TEST_BUILD = ROOT / "_build" / "test"


def toc_files(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Every `root` and `file` entry of a jupyter-book _toc.yml, in reading order (paths without suffix)."""
    toc = yaml.safe_load(toc_path.read_text())
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(node[key])
            for key in ("parts", "chapters", "sections", "subtrees", "entries"):
                walk(node.get(key) or [])
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return [re.sub(r"\.(ipynb|md)$", "", f) for f in found]


def toc_source(entry: str) -> Path:
    """The source file (.ipynb or .md) of a _toc.yml entry; raises if there is none."""
    for suffix in (".ipynb", ".md"):
        path = ROOT / (entry + suffix)
        if path.is_file():
            return path
    raise FileNotFoundError(f"_toc.yml lists {entry!r}, but neither {entry}.ipynb nor {entry}.md exists")


@dataclass
class BookBuild:
    html: Path
    reused: bool  # True: VAELAB_BOOK_HTML named an existing build, nothing was built here
    returncode: int | None = None
    log: str = ""
    started: float | None = None  # time.time() when the build started
    seconds: float | None = None
    problem: str = ""  # why there is no build (then the fixture fails or skips with this)


_BUILD: BookBuild | None = None


def build_book() -> BookBuild:
    """Build the book (or take VAELAB_BOOK_HTML's), once per process."""
    global _BUILD
    if _BUILD is not None:
        return _BUILD
    reuse = os.environ.get("VAELAB_BOOK_HTML")
    if reuse:
        html = Path(reuse).expanduser().resolve()
        problem = (
            ""
            if (html / "index.html").is_file()
            else (f"VAELAB_BOOK_HTML={reuse} is not a built HTML book (no index.html there)")
        )
        _BUILD = BookBuild(html=html, reused=True, problem=problem)
        return _BUILD
    if not (os.environ.get("CI") or os.environ.get("VAELAB_BOOK_BUILD")):
        _BUILD = BookBuild(
            html=TEST_BUILD / "_build" / "html",
            reused=False,
            problem=(
                "building the book executes every chapter (minutes): set VAELAB_BOOK_BUILD=1 to build it here "
                "(CI and `make test` do), or VAELAB_BOOK_HTML=<a built html folder> to test an existing build"
            ),
        )
        return _BUILD
    jb = Path(sys.executable).parent / "jupyter-book"
    if not jb.exists():
        _BUILD = BookBuild(
            html=TEST_BUILD / "_build" / "html",
            reused=False,
            problem=f'jupyter-book is not installed beside {sys.executable}: pip install -e ".[book]"',
        )
        return _BUILD
    timeout = float(os.environ.get("VAELAB_BOOK_TIMEOUT", "3600"))
    cmd = [str(jb), "build", str(ROOT), "-W", "-n", "--keep-going", "--all", "--path-output", str(TEST_BUILD)]
    started = time.time()
    # Its own process group, so that a timeout also ends the notebook kernels it started.
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        returncode = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        returncode, output = None, (output or "") + f"\n[timed out after {timeout:.0f} s (VAELAB_BOOK_TIMEOUT)]"
    log = ANSI.sub("", output)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "book-build.log").write_text(log)
    _BUILD = BookBuild(
        html=TEST_BUILD / "_build" / "html",
        reused=False,
        returncode=returncode,
        log=log,
        started=started,
        seconds=time.time() - started,
    )
    return _BUILD


def require_book() -> BookBuild:
    """The build, for a fixture: fails (or, outside CI, skips for a missing extra) when there is none."""
    build = build_book()
    if build.problem:
        # Not asked to build, or a missing optional extra, skips on a developer's machine; in CI it fails.
        if build.reused or os.environ.get("CI"):
            pytest.fail(build.problem)
        pytest.skip(build.problem)
    return build
