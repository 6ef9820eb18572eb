"""Shared fixtures and helpers. Keep them generic: several test modules use them."""

from __future__ import annotations

import os
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
        pytest.fail(
            f"these tests read MNIST from ${vaelab.DATA_ENV}; set it to the folder that "
            "contains MNIST/raw (the CI script does this)."
        )
    root = vaelab.data_root()
    missing = [name for name in MNIST_SHA256 if not (root / "MNIST" / "raw" / name).is_file()]
    if missing:
        pytest.fail(
            f"${vaelab.DATA_ENV}={root} lacks MNIST/raw/{', '.join(missing)}; point it at a "
            "folder with the four raw MNIST files."
        )
    return root


# ----------------------------------------------------------------------------- the book
# The book build (ROOT, toc_files, toc_source, built_book) lives in tests/book_build.py, shared by
# tests/test_book.py and tests/test_browser.py; here only the `book` marker (`browser` is in pyproject.toml).


def pytest_configure(config):
    config.addinivalue_line("markers", "book: builds the HTML book with jupyter-book (executes every chapter)")
