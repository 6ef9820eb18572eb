"""The homework is an Otter-Grader assignment (issues 17 and 28), and the README's teacher flow works
end to end: ``scripts/assign_homework.py`` executes a copy of the instructor notebook
(``teachers/homework_template.ipynb``, here with a new task added and never executed by hand), runs
``otter assign`` (student notebook, Gradescope autograder carrying vaelab as a wheel) and creates the
results folder; ``otter run`` grades offline: the instructor solution gets full marks, an untouched
student notebook zero (no crash), and a submission with typical mistakes partial marks, with feedback
that starts with the check's message and, at the default hint level, shows no answer code.

The book publishes only the student edition of the homework (``book/homework_template.ipynb``), which
must be the current one."""

from __future__ import annotations

import contextlib
import importlib.util
import io
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
TEMPLATE = ROOT / "teachers" / "homework_template.ipynb"  # the instructor notebook
BOOK_PAGE = ROOT / "book" / "homework_template.ipynb"  # its student edition, published in the book
# question name -> (check, the student's function); in the template's order
QUESTIONS = {
    "task1_reparameterize": ("check_reparameterize", "my_reparameterize"),
    "task2_kl": ("check_kl_standard_normal", "my_kl"),
    "task3_bernoulli": ("check_bernoulli_log_likelihood", "my_bernoulli_log_likelihood"),
    "task4_gaussian": ("check_gaussian_log_likelihood", "my_gaussian_log_likelihood"),
    "task5_elbo": ("check_elbo", "my_elbo"),
    "task6_iwae": ("check_iwae_bound", "my_iwae_bound"),
}
# A task the teacher adds (2 points), whose test cell has never been executed.
NEW_TASK = ("task7_ess", "check_effective_sample_size", "my_ess")
NEW_TASK_SOLUTION = '''def my_ess(log_weights: torch.Tensor) -> torch.Tensor:
    """(sum_i w_i)^2 / sum_i w_i^2 per example; log_weights: (k, batch)."""
    # BEGIN SOLUTION NO PROMPT
    log_sum = torch.logsumexp(log_weights, dim=0)
    return torch.exp(2 * log_sum - torch.logsumexp(2 * log_weights, dim=0))
    # END SOLUTION
    raise NotImplementedError("your code here")'''
NEW_TASK_MISTAKE = '''def my_ess(log_weights: torch.Tensor) -> torch.Tensor:
    """The weights exponentiated directly (the mistake: they underflow)."""
    w = log_weights.exp()
    return w.sum(0) ** 2 / (w**2).sum(0)
'''
# Pieces of the reference solutions that no feedback at the default hint level may show.
ANSWER_CODE = ("logsumexp", "logsigmoid", "randn", "0.5 *", ".sum(", "dim=0", "torch.exp", "`")
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
    assert config["plugins"] == ["vaelab.checks.otter_plugin.CheckMessageFirst"]
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


def test_book_publishes_the_current_student_edition_without_solutions():
    script = _script()
    assert BOOK_PAGE.read_text() == nbformat.writes(script.book_edition(TEMPLATE)) + "\n", (
        "book/homework_template.ipynb is out of date: run python scripts/assign_homework.py --publish"
    )
    page = nbformat.read(BOOK_PAGE, as_version=4)
    text = "\n".join(c.source for c in page.cells)
    for secret in ("logsumexp", "logsigmoid", "randn_like", "0.5 * (mu.pow(2)", "{solution}", "BEGIN SOLUTION"):
        assert secret not in text, secret
    assert "teachers/homework_template.ipynb" in text  # where teachers find the solutions
    assert not any(c.cell_type == "raw" for c in page.cells)
    for _, fn in QUESTIONS.values():
        stub = next(c.source for c in page.cells if f"def {fn}(" in c.source)
        assert stub.rstrip().endswith('raise NotImplementedError("your code here")')


def test_a_master_notebook_that_fails_to_execute_is_a_clear_error(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('broken task')")]
    path = tmp_path / "hw.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(
        SystemExit, match=r"executing hw.ipynb failed before `otter assign`.*broken task.*fix that cell"
    ):
        _script().execute(path)


def test_otter_plugin_finds_the_checks_message_in_a_doctest_report():
    pytest.importorskip("otter", reason="Otter-Grader is in the test extra: pip install -e '.[test]'")
    from vaelab.checks.otter_plugin import check_message

    report = (
        "Trying:\n    vaelab.checks.check_kl_standard_normal(my_kl)\nExpecting:\n"
        "    check_kl_standard_normal: passed (12 cases)\n" + "*" * 70 + "\nLine 2, in task2_kl 0\n"
        "Failed example:\n    vaelab.checks.check_kl_standard_normal(my_kl)\nExpected:\n"
        "    check_kl_standard_normal: passed (12 cases)\nGot:\n"
        "    check_kl_standard_normal: FAILED on case 2 of 12: mu=0, logvar=1\n"
        "      expected: [0.359141] shape (1,)\n      hint: the factor 1/2 is missing.\n"
    )
    assert check_message(report) == (
        "check_kl_standard_normal: FAILED on case 2 of 12: mu=0, logvar=1\n"
        "  expected: [0.359141] shape (1,)\n  hint: the factor 1/2 is missing."
    )
    # a test that is not a vaelab check keeps Otter's report
    assert check_message("Failed example:\n    x\nExpected:\n    1\nGot:\n    2\n") is None


def _with_new_task(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The template with NEW_TASK added before "Check your work", its test cell never executed."""
    name, check, fn = NEW_TASK
    raw = nbformat.v4.new_raw_cell
    solution = nbformat.v4.new_code_cell(NEW_TASK_SOLUTION)
    solution.metadata["tags"] = ["solution"]
    cells = [
        raw(f"# BEGIN QUESTION\nname: {name}\npoints: 2"),
        nbformat.v4.new_markdown_cell("## Task 7: effective sample size\n\nWrite `my_ess(log_weights)`."),
        raw("# BEGIN SOLUTION"),
        solution,
        raw("# END SOLUTION"),
        raw("# BEGIN TESTS"),
        nbformat.v4.new_code_cell(f"vaelab.checks.{check}({fn})"),
        raw("# END TESTS"),
        raw("# END QUESTION"),
    ]
    at = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Check your work"))
    nb.cells[at:at] = cells
    return nb


@pytest.fixture(scope="module")
def assignment(tmp_path_factory):
    """The README's flow: `python scripts/assign_homework.py MASTER OUT` on the template with a new task."""
    pytest.importorskip("otter", reason="Otter-Grader is in the test extra: pip install -e '.[test]'")
    base = tmp_path_factory.mktemp("homework")
    master = base / TEMPLATE.name
    nb = _with_new_task(nbformat.read(TEMPLATE, as_version=4))
    nbformat.validator.normalize(nb)
    nbformat.write(nb, master)
    out = base / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert _script().main([str(master), str(out), "--no-run-tests"]) == 0
    zip_path = next((out / "autograder").glob("*.zip"))
    return out, zip_path, printed.getvalue()


def test_assign_reports_the_points_graded_by_hand(assignment):
    out, zip_path, printed = assignment
    assert "autograded: 8 points in 7 questions" in printed
    assert "graded by hand: 1 point (kl_derivation (1 point)), not in the autograder's total" in printed
    assert (out / "results").is_dir()  # otter run -o needs it to exist
    assert f"otter run -a {zip_path} -o {out / 'results'}" in printed


@pytest.mark.slow
def test_autograder_zip_carries_the_tests_and_vaelab_as_a_wheel(assignment):
    import vaelab

    _, zip_path, _ = assignment
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        environment = yaml.safe_load(zf.read("environment.yml"))
    wheel = f"vaelab-{vaelab.__version__}-py3-none-any.whl"
    assert {f"tests/{q}.py" for q in [*QUESTIONS, NEW_TASK[0]]} <= names
    assert f"files/vaelab_wheel/{wheel}" in names
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert f"/autograder/source/files/vaelab_wheel/{wheel}" in pip


@pytest.mark.slow
def test_student_notebook_has_stubs_and_checks_but_no_solutions(assignment):
    out, _, _ = assignment
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
    out.mkdir(exist_ok=True)
    otter = Path(sys.executable).with_name("otter")
    return subprocess.Popen(
        [str(otter), "run", "-a", str(zip_path), "-o", str(out), "--no-logo", str(submission)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _submission_with_mistakes(out: Path, path: Path) -> None:
    """The student notebook, every function filled in with the reference except my_kl (no 1/2) and
    my_ess (weights exponentiated directly)."""
    master = nbformat.read(out / "autograder" / TEMPLATE.name, as_version=4)
    student = nbformat.read(out / "student" / TEMPLATE.name, as_version=4)
    for _, fn in [*QUESTIONS.values(), NEW_TASK[1:]]:
        reference = next(c.source for c in master.cells if c.cell_type == "code" and f"def {fn}(" in c.source)
        cell = next(c for c in student.cells if c.cell_type == "code" and f"def {fn}(" in c.source)
        cell.source = {"my_kl": MISTAKE, "my_ess": NEW_TASK_MISTAKE}.get(fn, reference)
    nbformat.write(student, path)


@pytest.mark.slow
def test_otter_run_grades_solution_untouched_and_mistakes(assignment, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("VAELAB_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out, zip_path, _ = assignment
    tasks = [*QUESTIONS, NEW_TASK[0]]
    mistake = tmp_path / "mistake.ipynb"
    _submission_with_mistakes(out, mistake)
    submissions = {
        "solution": out / "autograder" / TEMPLATE.name,
        "untouched": out / "student" / TEMPLATE.name,
        "mistake": mistake,
    }
    # The solution is graded into the results folder the script made, as the README says.
    folders = {"solution": out / "results", "untouched": tmp_path / "untouched", "mistake": tmp_path / "mistake"}
    runs = {k: _otter_run(zip_path, path, folders[k]) for k, path in submissions.items()}
    results = {}
    for key, proc in runs.items():
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, log
        tests = json.loads((folders[key] / "results.json").read_text())["tests"]
        results[key] = {t["name"]: t for t in tests if t["name"] in tasks}
        assert set(results[key]) == set(tasks), log

    def score(key):
        return sum(t["score"] for t in results[key].values()), sum(t["max_score"] for t in results[key].values())

    assert score("solution") == (8, 8)  # the new task, never executed by hand, grades right
    assert score("untouched") == (0, 8)
    assert all("not implemented yet" in t["output"] for t in results["untouched"].values())
    # my_elbo calls the student's my_kl, so the mistake costs task 5 as well
    assert {name: t["score"] for name, t in results["mistake"].items()} == {
        name: 0 if name in ("task2_kl", "task5_elbo", "task7_ess") else 1 for name in tasks
    }
    for name in ("task2_kl", "task7_ess"):
        feedback = results["mistake"][name]["output"]
        check = QUESTIONS[name][0] if name in QUESTIONS else NEW_TASK[1]
        # the check's message comes first (vaelab's Otter plugin), not after Otter's doctest report
        first = next(line for line in feedback.splitlines() if "❌" in line).split("❌", 1)[1].strip()
        assert first.startswith(f"{check}: FAILED on case"), feedback
        assert "Failed example" not in feedback and "hint: " in feedback
        assert not [code for code in ANSWER_CODE if code in feedback], feedback
    assert "factor 1/2 is missing" in results["mistake"]["task2_kl"]["output"]
