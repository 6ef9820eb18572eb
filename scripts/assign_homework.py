#!/usr/bin/env python
"""Make the student notebook and the Gradescope autograder of a homework with Otter-Grader.

The homework (e.g. ``teachers/homework_template.ipynb``) is written in Otter's assign format; Otter's own
command, ``otter assign``, does the work. What this script adds:

1. vaelab itself: until vaelab is on PyPI, the autograder must carry it. The script copies the notebook
   to ``OUT/src/``, builds vaelab's wheel from this checkout into ``OUT/src/vaelab_wheel/`` and writes
   ``OUT/src/requirements.txt`` naming that wheel where Gradescope unpacks the autograder
   (``/autograder/source/files/...``), which the notebook's ``# ASSIGNMENT CONFIG`` refers to;
2. it executes that copy first (Otter's tests expect each test cell's saved output, so a new or edited
   task would otherwise fail to assign until someone ran the notebook by hand); ``--no-execute`` skips
   this for a notebook whose saved outputs are current;
3. it creates ``OUT/results/`` for ``otter run -o``, which does not create its output folder;
4. it reports the points: the autograded questions, and the manual ones (pen and paper) that Otter
   leaves out of the autograder's total, for you to grade by hand.

Then it runs

    otter assign OUT/src/NOTEBOOK OUT            (OUT/student/, OUT/autograder/*.zip)

Usage:
    python scripts/assign_homework.py teachers/homework_template.ipynb _build/homework [--no-run-tests]

Grade a submission without Docker (as Gradescope would, in this environment):
    otter run -a _build/homework/autograder/homework_template-autograder_*.zip -o _build/homework/results \
        submission.ipynb
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MASTER = ROOT / "teachers" / "homework_template.ipynb"  # the instructor notebook, with the reference solutions
BOOK_PAGE = ROOT / "book" / "homework_template.ipynb"  # its student edition, the page the book publishes
WHEEL_DIR = "vaelab_wheel"  # the notebook's ASSIGNMENT CONFIG names it (autograder_files)
GRADESCOPE_FILES = "/autograder/source/files"  # where Otter's autograder zip puts autograder_files


def otter_command() -> list[str]:
    """``otter`` of this Python's environment (so it grades with the same vaelab and torch)."""
    otter = Path(sys.executable).with_name("otter")
    if not otter.exists():
        raise SystemExit(
            "otter is not installed in this environment: pip install -e '.[test]' (or pip install otter-grader)."
        )
    return [str(otter)]


def build_wheel(dest: Path, root: Path = ROOT) -> Path:
    """vaelab's wheel, built from a copy of the checkout ``root`` (so no build/ folder is left there)."""
    dest.mkdir(parents=True, exist_ok=True)
    work = dest.parent / "_vaelab_source"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(
        root,
        work,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv*",
            "_build*",
            "book",
            "teachers",
            "benchmarks",
            "tests",
            "runs",
            "artifacts",
            "*.egg-info",
            "build",
            "__pycache__",
            "node_modules",
        ),
    )
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(dest),
                str(work),
            ],
            check=True,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wheels = sorted(dest.glob("vaelab-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one vaelab wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


def prepare(notebook: Path, out: Path, root: Path = ROOT) -> Path:
    """OUT/src with the notebook, vaelab_wheel/ and requirements.txt; returns the copied notebook."""
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    master = src / notebook.name
    shutil.copy2(notebook, master)
    wheel = build_wheel(src / WHEEL_DIR, root)
    (src / "requirements.txt").write_text(f"{GRADESCOPE_FILES}/{WHEEL_DIR}/{wheel.name}\n")
    return master


def execute(notebook: Path, timeout: int = 1200) -> None:
    """Run every cell of ``notebook`` in place (a copy), so that its test cells' saved outputs are current."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
    )
    try:
        client.execute()
    except CellExecutionError as error:
        last = str(error).strip().splitlines()[-1]
        raise SystemExit(
            f"executing {notebook.name} failed before `otter assign`: a cell raised ({last}); "
            "fix that cell (run the notebook in Jupyter to see it), then assign again."
        ) from None
    nbformat.write(nb, notebook)


def questions(notebook: Path) -> list[dict]:
    """The notebook's Otter questions, in order: name, points and whether they are graded by hand."""
    import yaml

    cells = json.loads(notebook.read_text())["cells"]
    found = []
    for cell in cells:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "raw" and source.startswith("# BEGIN QUESTION"):
            config = yaml.safe_load(source.split("\n", 1)[1]) or {}
            found.append(
                {"name": config["name"], "points": config.get("points", 1), "manual": bool(config.get("manual", False))}
            )
    return found


def _points(n: float) -> str:
    return f"{n:g} point" + ("" if n == 1 else "s")


def points_report(notebook: Path) -> str:
    """Autograded and manual points of the homework, as lines for the teacher."""
    found = [q for q in questions(notebook) if q["points"]]
    auto = [q for q in found if not q["manual"]]
    manual = [q for q in found if q["manual"]]
    lines = [f"autograded: {_points(sum(q['points'] for q in auto))} in {len(auto)} questions (the autograder's total)"]
    if manual:
        names = ", ".join(f"{q['name']} ({_points(q['points'])})" for q in manual)
        lines.append(
            f"graded by hand: {_points(sum(q['points'] for q in manual))} ({names}), not in the autograder's "
            "total; add them yourself (on Gradescope, as a manually graded question)"
        )
    return "\n".join(lines)


def assign(notebook: Path, out: Path, run_tests: bool = True, root: Path = ROOT, execute_first: bool = True) -> Path:
    """Run ``otter assign`` on a prepared (and, by default, freshly executed) copy of ``notebook``.

    Creates OUT/student/, OUT/autograder/ and an empty OUT/results/ for ``otter run -o``; returns the
    autograder zip.
    """
    if not notebook.is_file():
        raise SystemExit(
            f"{notebook} is not a file; give the homework notebook, e.g. teachers/homework_template.ipynb."
        )
    out = out.resolve()
    for sub in ("student", "autograder"):
        shutil.rmtree(out / sub, ignore_errors=True)
    master = prepare(notebook.resolve(), out, root)
    if execute_first:
        execute(master)
    command = otter_command() + ["assign", str(master), str(out)] + ([] if run_tests else ["--no-run-tests"])
    subprocess.run(command, check=True)
    zips = sorted((out / "autograder").glob("*.zip"))
    if len(zips) != 1:
        raise SystemExit(f"otter assign made {len(zips)} autograder zips in {out / 'autograder'}; expected one.")
    (out / "results").mkdir(exist_ok=True)
    return zips[0]


def book_edition(master: Path = MASTER):
    """The page the book publishes: the student edition of the instructor notebook ``master``.

    Solutions become stubs (``raise NotImplementedError``), solution blocks and the teachers' note are
    dropped (scripts/make_student_edition.py), so are Otter's raw cells; outputs are cleared (the book
    executes the page). A short note tells teachers where the instructor notebook is.
    """
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location("make_student_edition", ROOT / "scripts" / "make_student_edition.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    nb = module.student_notebook(nbformat.read(master, as_version=4))
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "raw" and cell.source.startswith(("# ASSIGNMENT CONFIG", "# BEGIN ", "# END ")):
            continue
        if cell.cell_type == "code":
            lines = [line for line in cell.source.split("\n") if line.strip() != "# NBVAL_CHECK_OUTPUT"]
            cell.source = "\n".join(_keep_import(line, nb) for line in lines)
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
        cell.pop("id", None)
        cells.append(cell)
    note = nbformat.v4.new_markdown_cell(TEACHERS_NOTE)
    note.pop("id", None)
    note.metadata["tags"] = ["instructor"]  # the student book (make student-book) leaves it out
    cells.insert(1, note)
    nb.cells = cells
    nb.nbformat_minor = 4  # no cell ids: the page is regenerated, ids would only churn
    return nb


def _keep_import(line: str, nb) -> str:
    """An import the stubs no longer use stays for the students' code (ruff would drop it)."""
    match = re.fullmatch(r"import ([\w.]+)(?: as (\w+))?", line)
    if not match:
        return line
    name = match.group(2) or match.group(1).split(".")[0]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    used = re.search(rf"(?<![\w.]){re.escape(name)}\.", code.replace(line, ""))
    return line if used else f"{line}  # noqa: F401 (for your code)"


TEACHERS_NOTE = """```{admonition} For teachers
:class: tip
This page is the student edition of the homework. The instructor notebook, with the reference
solutions and the Otter-Grader configuration, is `teachers/homework_template.ipynb` in the
repository; the README's section "For teachers" shows how to assign and grade it.
```"""


def publish(master: Path = MASTER, page: Path = BOOK_PAGE) -> Path:
    """Write the book's page (the student edition of ``master``) to ``page``."""
    import nbformat

    nbformat.write(book_edition(master), page)
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("notebook", type=Path, nargs="?", help="the homework in Otter's assign format")
    parser.add_argument(
        "out", type=Path, nargs="?", help="output folder: student/, autograder/ (with the zip) and results/ go there"
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help=f"only write the book's page {BOOK_PAGE.relative_to(ROOT)} (the student edition of "
        f"{MASTER.relative_to(ROOT)}); run it after editing the instructor notebook",
    )
    parser.add_argument(
        "--no-run-tests", action="store_true", help="skip Otter's check that the solution passes every test (faster)"
    )
    parser.add_argument(
        "--no-execute",
        action="store_true",
        help="do not execute the notebook before assigning (only if its saved outputs are current)",
    )
    args = parser.parse_args(argv)
    if args.publish:
        print(f"book page: {publish()}")
        return 0
    if args.notebook is None or args.out is None:
        parser.error(
            "give the homework notebook and an output folder, e.g. teachers/homework_template.ipynb _build/homework"
        )
    zip_path = assign(args.notebook, args.out, run_tests=not args.no_run_tests, execute_first=not args.no_execute)
    print(
        f"student notebook: {args.out / 'student' / args.notebook.name}\nautograder: {zip_path}\n"
        f"{points_report(args.notebook)}\n"
        f"grade: otter run -a {zip_path} -o {args.out / 'results'} SUBMISSION.ipynb"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
