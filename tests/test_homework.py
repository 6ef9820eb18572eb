"""The homework template runs as handed out (stubs: every check reports "not implemented yet",
no cell raises) and as the instructor's version (reference solutions: every check passes)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "book" / "homework_template.ipynb"
CHECKS = ["check_reparameterize", "check_kl_standard_normal", "check_bernoulli_log_likelihood",
          "check_gaussian_log_likelihood", "check_elbo", "check_iwae_bound"]

# Appended to the executed notebook: the truth value and text of every CheckResult it displayed.
PROBE = """
import json
from vaelab.checks import CheckResult
print(json.dumps([[bool(v), repr(v)] for v in Out.values() if isinstance(v, CheckResult)]))
"""


@pytest.fixture(autouse=True)
def quick_environment(monkeypatch):
    """The kernel inherits these: quick mode, quiet progress bars, one thread."""
    for name, value in {"CI": "1", "VAELAB_QUICK": "1", "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(name, value)


def _student_edition():
    spec = importlib.util.spec_from_file_location("make_student_edition", ROOT / "scripts" / "make_student_edition.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[tuple[bool, str]]]:
    """Execute nb (raises CellExecutionError if any cell raises); return it and its CheckResults."""
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(TEMPLATE.parent)}}).execute()
    probe = nb.cells.pop()
    text = "".join(o.get("text", "") for o in probe.outputs if o.output_type == "stream" and o.name == "stdout")
    return nb, [tuple(item) for item in json.loads(text.strip().splitlines()[-1])]


def check_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "vaelab.checks." in c.source]


def test_template_follows_the_homework_pattern():
    nb = nbformat.read(TEMPLATE, as_version=4)
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) == len(CHECKS)
    assert all(c.cell_type == "code" and "def my_" in c.source for c in solutions)
    cells = check_cells(nb)
    # Ends with one check per task, each the last expression of its cell, then the summary.
    assert [c.source.splitlines()[-1] for c in cells[:-1]] == [
        f"vaelab.checks.{name}({fn})" for name, fn in zip(CHECKS, [
            "my_reparameterize", "my_kl", "my_bernoulli_log_likelihood", "my_gaussian_log_likelihood",
            "my_elbo", "my_iwae_bound"])]
    assert "vaelab.checks.summary(" in cells[-1].source
    assert nb.cells[-1] is cells[-1]
    assert all(c.source.startswith("# NBVAL_CHECK_OUTPUT") for c in cells)


def test_instructor_version_passes_every_check():
    nb, results = run(nbformat.read(TEMPLATE, as_version=4))
    assert len(results) == len(CHECKS) + 1
    assert all(passed for passed, _ in results), results
    texts = [text for _, text in results]
    assert [t.split(":")[0] for t in texts[:-1]] == CHECKS
    assert all(": passed (" in t for t in texts[:-1])
    assert texts[-1] == "summary: all 6 checks passed"


def test_student_version_reports_not_implemented_for_every_check_without_errors():
    student = _student_edition().student_notebook(nbformat.read(TEMPLATE, as_version=4))
    assert not any("{solution}" in c.source for c in student.cells if c.cell_type == "markdown")
    assert not any("instructor" in c.metadata.get("tags", []) for c in student.cells)
    assert all(c.metadata["tags"] == ["solution"] for c in student.cells if "solution" in c.metadata.get("tags", []))
    for cell in student.cells:
        if cell.cell_type == "code":
            assert not cell.outputs or "vaelab.checks." not in cell.source
    nb, results = run(student)  # raises if any cell raises
    assert len(results) == len(CHECKS) + 1
    assert not any(passed for passed, _ in results)
    for name, (_, text) in zip(CHECKS, results):
        assert text.startswith(f"{name}: not implemented yet"), text
    assert results[-1][1].startswith("summary: 0 of 6 checks passed; still to do: check_reparameterize")
    assert all(o.output_type != "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
