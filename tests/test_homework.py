"""The homework template is an Otter-Grader assignment (issue 17): Otter's own `otter assign` makes the
student notebook and the Gradescope autograder (which carries vaelab as a wheel), and `otter run`
grades without Docker, offline: the instructor solution gets full marks, an untouched student
notebook zero (no crash), and a submission with one typical mistake partial marks with the
check's hint in the feedback (the KL without its 1/2: tasks 2 and 5, which uses the
student's KL, fail; 4 of 6).

The template itself is executed by nbval (`pytest book --nbval-lax`): every check passes there."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "book" / "homework_template.ipynb"
# question name -> (check, the student's function); in the template's order
QUESTIONS = {
    "task1_reparameterize": ("check_reparameterize", "my_reparameterize"),
    "task2_kl": ("check_kl_standard_normal", "my_kl"),
    "task3_bernoulli": ("check_bernoulli_log_likelihood", "my_bernoulli_log_likelihood"),
    "task4_gaussian": ("check_gaussian_log_likelihood", "my_gaussian_log_likelihood"),
    "task5_elbo": ("check_elbo", "my_elbo"),
    "task6_iwae": ("check_iwae_bound", "my_iwae_bound"),
}
# The typical mistake: the KL without its factor 1/2.
MISTAKE = '''def my_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL without the factor 1/2 (the mistake)."""
    return (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=-1)
'''


def _script():
    spec = importlib.util.spec_from_file_location("assign_homework", ROOT / "scripts" / "assign_homework.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _blocks(nb: nbformat.NotebookNode) -> dict[str, list[nbformat.NotebookNode]]:
    """Question name -> the cells between its `# BEGIN QUESTION` and `# END QUESTION` raw cells."""
    questions: dict[str, list] = {}
    current = None
    for cell in nb.cells:
        if cell.cell_type == "raw" and cell.source.startswith("# BEGIN QUESTION"):
            current = yaml.safe_load(cell.source.split("\n", 1)[1])["name"]
            questions[current] = []
        elif cell.cell_type == "raw" and cell.source.startswith("# END QUESTION"):
            current = None
        elif current is not None:
            questions[current].append(cell)
    return questions


def _text(output) -> str:
    return output.get("text", "") + output.get("data", {}).get("text/plain", "")


def test_template_is_an_otter_assignment_that_the_book_can_render():
    nb = nbformat.read(TEMPLATE, as_version=4)
    raw = [c for c in nb.cells if c.cell_type == "raw"]
    # Otter's boundary and config cells are raw cells the book removes (tag remove-cell).
    assert raw and all("remove-cell" in c.metadata.get("tags", []) for c in raw)
    config = yaml.safe_load(raw[0].source)  # the first raw cell: # ASSIGNMENT CONFIG
    assert raw[0].source.startswith("# ASSIGNMENT CONFIG")
    assert config["requirements"] == "requirements.txt" and config["autograder_files"] == ["vaelab_wheel"]
    questions = _blocks(nb)
    autograded = {name: cells for name, cells in questions.items() if name.startswith("task")}
    assert list(autograded) == list(QUESTIONS)
    for name, cells in autograded.items():
        check, fn = QUESTIONS[name]
        solutions = [c for c in cells if "solution" in c.metadata.get("tags", [])]
        assert len(solutions) == 1, name
        source = solutions[0].source
        assert f"def {fn}(" in source
        # the body Otter removes, then the line the student sees instead
        body = source.split("# BEGIN SOLUTION NO PROMPT\n")[1].split("# END SOLUTION\n")
        assert body[0].strip() and body[1].strip() == 'raise NotImplementedError("your code here")'
        tests = [c for c in cells if c.cell_type == "code" and "vaelab.checks." in c.source]
        assert len(tests) == 1, name
        assert tests[0].source == f"# NBVAL_CHECK_OUTPUT\nvaelab.checks.{check}({fn})"
        # Otter's doctest expects the stored output of the master notebook: the check passing
        stored = "".join(_text(o) for o in tests[0].outputs)
        assert re.fullmatch(rf"'?{check}: passed \(\d+ cases\)'?", stored.strip()), (name, stored)
    assert "vaelab.checks.summary(" in nb.cells[-1].source


@pytest.fixture(scope="module")
def assignment(tmp_path_factory):
    """`otter assign` on the template (via scripts/assign_homework.py, which adds vaelab's wheel)."""
    pytest.importorskip("otter", reason="Otter-Grader is in the test extra: pip install -e '.[test]'")
    out = tmp_path_factory.mktemp("homework")
    zip_path = _script().assign(TEMPLATE, out, run_tests=False)
    return out, zip_path


@pytest.mark.slow
def test_autograder_zip_carries_the_tests_and_vaelab_as_a_wheel(assignment):
    import vaelab

    _, zip_path = assignment
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        environment = yaml.safe_load(zf.read("environment.yml"))
    wheel = f"vaelab-{vaelab.__version__}-py3-none-any.whl"
    assert {f"tests/{q}.py" for q in QUESTIONS} <= names
    assert f"files/vaelab_wheel/{wheel}" in names
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert f"/autograder/source/files/vaelab_wheel/{wheel}" in pip


@pytest.mark.slow
def test_student_notebook_has_stubs_and_checks_but_no_solutions(assignment):
    out, _ = assignment
    student = nbformat.read(out / "student" / TEMPLATE.name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    for secret in (
        "logsumexp",
        "logsigmoid",
        "randn_like",
        "0.5 * (mu.pow(2)",
        "{solution}",
        "For teachers",
        "BEGIN SOLUTION",
    ):
        assert secret not in text, secret
    for name, (_, fn) in QUESTIONS.items():
        assert f'grader.check("{name}")' in text
        stub = next(c.source for c in student.cells if f"def {fn}(" in c.source)
        assert stub.rstrip().endswith('raise NotImplementedError("your code here")')
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


def _otter_run(zip_path: Path, submission: Path, out: Path) -> subprocess.Popen:
    out.mkdir()
    otter = Path(sys.executable).with_name("otter")
    return subprocess.Popen(
        [str(otter), "run", "-a", str(zip_path), "-o", str(out), "--no-logo", str(submission)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _submission_with_the_mistake(out: Path, path: Path) -> None:
    """The student notebook, every function filled in with the reference except my_kl (no 1/2)."""
    master = nbformat.read(out / "autograder" / TEMPLATE.name, as_version=4)
    student = nbformat.read(out / "student" / TEMPLATE.name, as_version=4)
    for _, fn in QUESTIONS.values():
        reference = next(c.source for c in master.cells if c.cell_type == "code" and f"def {fn}(" in c.source)
        cell = next(c for c in student.cells if c.cell_type == "code" and f"def {fn}(" in c.source)
        cell.source = MISTAKE if fn == "my_kl" else reference
    nbformat.write(student, path)


@pytest.mark.slow
def test_otter_run_grades_solution_untouched_and_one_mistake(assignment, tmp_path, monkeypatch):
    import torch

    import vaelab.checks

    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("VAELAB_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out, zip_path = assignment
    mistake = tmp_path / "mistake.ipynb"
    _submission_with_the_mistake(out, mistake)
    submissions = {
        "solution": out / "autograder" / TEMPLATE.name,
        "untouched": out / "student" / TEMPLATE.name,
        "mistake": mistake,
    }
    runs = {k: _otter_run(zip_path, path, tmp_path / k) for k, path in submissions.items()}
    results = {}
    for key, proc in runs.items():
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, log
        tests = json.loads((tmp_path / key / "results.json").read_text())["tests"]
        results[key] = {t["name"]: t for t in tests if t["name"] in QUESTIONS}
        assert set(results[key]) == set(QUESTIONS), log

    def score(key):
        return sum(t["score"] for t in results[key].values()), sum(t["max_score"] for t in results[key].values())

    assert score("solution") == (6, 6)
    assert score("untouched") == (0, 6)
    assert all("not implemented yet" in t["output"] for t in results["untouched"].values())
    # my_elbo calls the student's my_kl, so the mistake costs task 5 as well: 4 of 6
    assert {name: t["score"] for name, t in results["mistake"].items()} == {
        name: 0 if name in ("task2_kl", "task5_elbo") else 1 for name in QUESTIONS
    }
    # The feedback is the check's own verdict, hint included (computed here, in-process, for comparison).
    namespace = {"torch": torch}
    exec(MISTAKE, namespace)
    verdict = repr(vaelab.checks.check_kl_standard_normal(namespace["my_kl"]))
    hint = next(line.strip() for line in verdict.splitlines() if line.strip().startswith("hint:"))
    assert "1/2" in hint
    assert hint in results["mistake"]["task2_kl"]["output"]
