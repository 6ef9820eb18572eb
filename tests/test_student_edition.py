"""scripts/make_student_edition.py: solution cells become stubs, {solution} blocks disappear,
exercises and everything else stay, outputs that would give answers away are cleared, and the
generated book configuration hides solutions and does not execute the notebooks."""

from __future__ import annotations

import ast
import copy
import importlib.util
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parent.parent


def _load_script():
    spec = importlib.util.spec_from_file_location("make_student_edition", ROOT / "scripts" / "make_student_edition.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mse = _load_script()

EXERCISE_MD = """\
## Exercises

:::{exercise} Implement the KL
:label: t-ex-kl
Write `my_kl`.
:::

:::{solution} t-ex-kl
:class: dropdown
The KL is 1/2 sum(mu^2 + exp(logvar) - logvar - 1). SECRET-COLON
:::

Text between the blocks stays.

````{solution} t-ex-kl
Backtick fence with a nested code block:
```python
SECRET-BACKTICK = 1
```
````

::::{solution} t-ex-kl
A longer colon fence with a nested directive:
:::{note}
SECRET-NESTED
:::
::::

After the solutions."""

SOLUTION_CODE = '''\
import torch


@torch.no_grad()
def helper(a,
           b: int = 2) -> int:
    """Add two numbers.

    a, b: ints.
    """
    # SECRET-COMMENT: the trick is to add
    return a + b


def my_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)), shape (batch,)."""
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(-1)  # SECRET-BODY


def one_liner(x): return x * 2


THRESHOLD = 0.5 * 3
print("SECRET-PRINT")
'''


def _out(text: str):
    return new_output("execute_result", data={"text/plain": text}, execution_count=1)


def synthetic_notebook():
    solution = new_code_cell(
        SOLUTION_CODE,
        metadata={"tags": ["solution"]},
        execution_count=3,
        outputs=[new_output("stream", name="stdout", text="SECRET-PRINT\n")],
    )
    return new_notebook(
        cells=[
            new_markdown_cell("# Chapter\n\nIntro."),
            new_code_cell("x = 1 + 1\nx", execution_count=1, outputs=[_out("2")]),
            new_markdown_cell(EXERCISE_MD),
            solution,
            new_code_cell(
                "# NBVAL_CHECK_OUTPUT\nvaelab.checks.check_kl_standard_normal(my_kl)",
                execution_count=4,
                outputs=[_out("check_kl_standard_normal: passed (12 cases)")],
            ),
            new_code_cell("print(helper(1, 2))", execution_count=5, outputs=[_out("3")]),
            new_markdown_cell(":::{solution} t-ex-kl\nOnly a solution in this cell.\n:::"),
            new_markdown_cell("Notes for teachers only.", metadata={"tags": ["instructor"]}),
            new_markdown_cell("Gated part one.\n\n```{solution-start} t-ex-kl\n```\nSECRET-GATED-1"),
            new_code_cell("print('SECRET-GATED-CODE')", execution_count=6),
            new_markdown_cell("SECRET-GATED-2\n```{solution-end}\n```\nAfter the gated solution."),
            new_code_cell("y = 2 * x\ny", execution_count=7, outputs=[_out("4")]),
        ]
    )


@pytest.fixture(scope="module")
def student():
    return mse.student_notebook(synthetic_notebook())


def text_of(nb):
    return "\n".join(c.source for c in nb.cells) + str([c.get("outputs", []) for c in nb.cells])


def test_no_secret_survives(student):
    assert "SECRET" not in text_of(student)


def test_exercises_and_ordinary_text_are_kept(student):
    md = student.cells[2].source
    assert ":::{exercise} Implement the KL\n:label: t-ex-kl\nWrite `my_kl`.\n:::" in md
    assert "Text between the blocks stays." in md and md.endswith("After the solutions.")
    assert "{solution" not in md
    assert student.cells[0].source == "# Chapter\n\nIntro."


def test_solution_only_and_instructor_cells_are_dropped_and_gated_solution_spans_cells(student):
    sources = [c.source for c in student.cells]
    assert "Only a solution in this cell." not in "\n".join(sources)
    assert "Notes for teachers only." not in sources
    assert "Gated part one." in sources
    assert "After the gated solution." in sources
    assert len(student.cells) == 9  # 12 - solution-only - instructor - gated code cell


def test_solution_cell_becomes_stubs_with_signatures_and_docstrings(student):
    stub = student.cells[3]
    assert stub.metadata["tags"] == ["solution"]
    src = stub.source
    tree = ast.parse(src)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert set(functions) == {"helper", "my_kl", "one_liner"}
    assert "def helper(a,\n           b: int = 2) -> int:" in src
    assert "@torch.no_grad()" in src and "import torch" in src
    assert ast.get_docstring(functions["helper"]) == "Add two numbers.\n\na, b: ints."
    assert ast.get_docstring(functions["my_kl"]) == "KL(N(mu, exp(logvar)) || N(0, I)), shape (batch,)."
    for fn in functions.values():
        last = fn.body[-1]
        assert isinstance(last, ast.Raise) and ast.unparse(last.exc).startswith("NotImplementedError(")
    assert "THRESHOLD = ..." in src
    namespace: dict = {}
    exec(compile(src, "<stub>", "exec"), namespace)  # the stub cell itself runs
    with pytest.raises(NotImplementedError):
        namespace["my_kl"](0, 0)
    with pytest.raises(NotImplementedError):
        namespace["one_liner"](1)


def test_outputs_of_solution_and_check_cells_are_cleared_others_kept(student):
    by_source = {c.source.splitlines()[0]: c for c in student.cells if c.cell_type == "code"}
    assert by_source["# NBVAL_CHECK_OUTPUT"].outputs == []
    assert by_source["# NBVAL_CHECK_OUTPUT"].execution_count is None
    assert by_source["print(helper(1, 2))"].outputs == []  # uses a name the solution defines
    assert student.cells[3].outputs == [] and student.cells[3].execution_count is None
    assert by_source["x = 1 + 1"].outputs[0]["data"]["text/plain"] == "2"
    assert by_source["y = 2 * x"].outputs[0]["data"]["text/plain"] == "4"


def test_transform_is_idempotent_and_leaves_the_input_alone(student):
    original = synthetic_notebook()
    before = copy.deepcopy(original)
    mse.student_notebook(original)
    assert original == before
    assert mse.student_notebook(student) == student


def _is_stub(source: str) -> bool:
    """Only imports, classes, functions that end in raise NotImplementedError, and `name = ...`."""
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef)):
            continue
        if isinstance(node, ast.FunctionDef):
            last = node.body[-1]
            if not (isinstance(last, ast.Raise) and "NotImplementedError" in ast.unparse(last)):
                return False
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            if not (isinstance(node.value, ast.Constant) and node.value.value is Ellipsis):
                return False
        else:
            return False
    return True


def test_book_edition_hides_solutions_and_turns_execution_off(tmp_path):
    out = tmp_path / "student"
    made = mse.make_book(ROOT, out)
    config = yaml.safe_load((out / "_config.yml").read_text())
    assert config["sphinx"]["config"]["hide_solutions"] is True
    assert config["execute"]["execute_notebooks"] == "off"
    assert "student edition" in config["title"]
    instructor = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["bibtex_bibfiles"] == instructor["bibtex_bibfiles"]
    assert config["parse"] == instructor["parse"]
    assert (out / "_toc.yml").read_text() == (ROOT / "_toc.yml").read_text()
    assert (out / "references.bib").exists()
    notebooks = sorted((ROOT / "book").glob("*.ipynb"))
    assert {p.name for p in made} == {p.name for p in notebooks}
    for path in made:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                assert "{solution}" not in cell.source, path
            elif "solution" in cell.metadata.get("tags", []):
                assert _is_stub(cell.source), (path, cell.source)
    # A second run replaces its own output; a directory it did not make is refused.
    mse.make_book(ROOT, out)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="refusing to overwrite"):
        mse.make_book(ROOT, foreign)
    assert (foreign / "keep.txt").read_text() == "mine"
    with pytest.raises(SystemExit, match="overwrite the instructor sources"):
        mse.make_book(ROOT, ROOT / "book" / "x")


def test_command_line_makes_the_book_edition_and_leaves_homework_to_otter(tmp_path, capsys):
    out = tmp_path / "student"
    assert mse.main(["--out", str(out)]) == 0
    assert "jupyter-book build" in capsys.readouterr().out
    homework = nbformat.read(out / "book" / "homework_template.ipynb", as_version=4)
    text = "\n".join(c.source for c in homework.cells)
    assert "For teachers" not in text and "{solution}" not in text
    stubs = [c.source for c in homework.cells if "solution" in c.metadata.get("tags", [])]
    assert len(stubs) == 6
    for stub in stubs:  # Otter's solution markers go with the body; the stub is what Otter's student gets
        assert "BEGIN SOLUTION" not in stub and "END SOLUTION" not in stub
        assert stub.rstrip().endswith('raise NotImplementedError("your code here")')
    # single notebooks are Otter's job now (scripts/assign_homework.py): the script takes none
    with pytest.raises(SystemExit):
        mse.main([str(ROOT / "book" / "homework_template.ipynb"), "--out", str(tmp_path / "hw.ipynb")])
