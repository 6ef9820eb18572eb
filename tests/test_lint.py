"""ruff on everything a reader or a contributor opens: the package, the tests, the benchmarks, the
scripts and the chapters (notebook code at 79 columns, from book/ruff.toml). Lint findings and
unformatted files fail the test with ruff's own report."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["vaelab", "tests", "benchmarks", "scripts", "book"]


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]' installs it")
    return [found]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(command: list[str]) -> None:
    result = subprocess.run([*_ruff(), *command, *TARGETS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"ruff {' '.join(command)} found problems:\n{result.stdout}{result.stderr}"
