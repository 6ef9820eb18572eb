#!/usr/bin/env python
"""Make the student edition of the book from the instructor sources.

The instructor notebooks are the one source of truth. The student edition of the BOOK differs in
these ways:

* code cells tagged ``solution`` become stubs: every function keeps its signature and docstring,
  its body becomes ``raise NotImplementedError(...)``; imports stay; an assignment keeps its
  name, with the value ``...``; other statements are removed;
* ``{solution}`` blocks of sphinx-exercise are removed from markdown cells (colon fences
  ``:::{solution}`` and backtick fences, as well as gated ``{solution-start}`` ... ``{solution-end}``
  pairs, which may span cells);
* solution cells lose the tags that collapse or hide them (``hide-input``, ``remove-cell``, ...),
  which the instructor book may use so that its reference solutions render collapsed;
* cells tagged ``instructor`` (notes for teachers) are left out;
* the outputs of the solution cells, and of every cell that uses a name they define or calls a
  check (``check_...``), are cleared, so no stored output gives an answer away.

Homework handed out as single notebooks is Otter-Grader's job, not this script's: the homework
template is in Otter's format, and ``python scripts/assign_homework.py`` runs ``otter assign``,
which makes the student notebook and the autograder (see the README's section for teachers).

Usage:
    python scripts/make_student_edition.py --out DIR
        DIR gets _config.yml (with ``hide_solutions: true`` and execution off, since the stubs
        cannot run), _toc.yml, references.bib and book/ transformed.
        Then ``jupyter-book build DIR`` builds the student book (``make student-book`` does both).

An existing DIR is replaced only if an earlier run of this script made it.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
SOLUTION_TAG = "solution"
HIDING_TAGS = ("hide-input", "hide-cell", "hide-output", "remove-input", "remove-cell", "remove-output")
INSTRUCTOR_TAG = "instructor"  # cells only for teachers, left out of the student edition
STUB_MESSAGE = "your code here"
MARKER = ".student-edition"
TOP_LEVEL_FILES = ("_config.yml", "_toc.yml", "references.bib")
OPTIONAL_DIRS = ("_static", "_ext", "_templates", "images", "figures")

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>:{3,}|`{3,}|~{3,})\s*\{(?P<name>[\w:-]+)\}")


# ---------------------------------------------------------------------------------------------
# Markdown: remove {solution} blocks


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and set(stripped) == {fence[0]} and len(stripped) >= len(fence)


def _directive_end(lines: list[str], start: int, fence: str) -> int:
    """Index just after the closing fence of the directive opened on lines[start]."""
    i = start + 1
    while i < len(lines):
        if _closes(lines[i], fence):
            return i + 1
        i += 1
    return len(lines)  # an unclosed fence runs to the end, as in MyST


def strip_solutions(text: str, in_gated: bool = False) -> tuple[str, bool]:
    """Remove solution directives from MyST markdown.

    Returns the new text and whether a gated ``{solution-start}`` is still open at the end (its
    content continues in the next cells). ``in_gated``: one is open at the start.
    """
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        name = match.group("name") if match else None
        if in_gated:
            if name == "solution-end":
                in_gated = False
                i = _directive_end(lines, i, match.group("fence"))
            else:
                i += 1
            continue
        if name == "solution":
            i = _directive_end(lines, i, match.group("fence"))
            continue
        if name == "solution-start":
            in_gated = True
            i = _directive_end(lines, i, match.group("fence"))
            continue
        out.append(lines[i])
        i += 1
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n"), in_gated


# ---------------------------------------------------------------------------------------------
# Code: solution cells become stubs


def _start(node: ast.stmt) -> int:
    """The first line of a statement, counting its decorators (1-based)."""
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def _stub_function(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> list[str]:
    """The source lines of ``node`` with its body replaced by a NotImplementedError."""
    first = _start(node) - 1
    body = node.body
    has_doc = (
        isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )
    if body[0].lineno == node.lineno:  # def f(x): return x  (body on the header line)
        header = lines[first : node.lineno]
        colon = header[-1].rfind(":", 0, body[0].col_offset + 1)
        header[-1] = header[-1][: colon + 1]
        indent = " " * (node.col_offset + 4)
        kept = header
    else:
        header = lines[first : _start(body[0]) - 1]
        while header and header[-1].strip().startswith("#") or header and not header[-1].strip():
            header.pop()  # comments between the signature and the body may hold hints of the solution
        indent = lines[body[0].lineno - 1][: body[0].col_offset]
        kept = header + (lines[body[0].lineno - 1 : body[0].end_lineno] if has_doc else [])
    return kept + [f'{indent}raise NotImplementedError("{STUB_MESSAGE}")']


def _stub_statements(nodes: Iterable[ast.stmt], lines: list[str], indent: str) -> str:
    """The stubbed statements, separated as PEP 8 asks: definitions by blank lines."""
    chunks: list[tuple[bool, list[str]]] = []  # (is a definition, lines)
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            chunks.append((True, _stub_function(node, lines)))
        elif isinstance(node, ast.ClassDef):
            chunk = lines[_start(node) - 1 : _start(node.body[0]) - 1]
            doc = node.body[0]
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                chunk += lines[doc.lineno - 1 : doc.end_lineno]
            inner = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
            sub = " " * (node.col_offset + 4)
            chunk += (_stub_statements(inner, lines, sub) or f"{sub}pass").split("\n")
            chunks.append((True, chunk))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            chunks.append((False, lines[node.lineno - 1 : node.end_lineno]))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = " = ".join(ast.unparse(t) for t in targets)
            chunks.append((False, [f"{indent}{names} = ...  # {STUB_MESSAGE}"]))
        # Any other statement (a call, a loop, a print) is part of the solution and is dropped.
    gap = "\n\n" if indent else "\n\n\n"
    text = ""
    for i, (is_def, chunk) in enumerate(chunks):
        if i:
            text += gap if is_def or chunks[i - 1][0] else "\n"
        text += "\n".join(chunk)
    return text


def stub_source(source: str) -> str:
    """The student version of a solution cell's code (see the module docstring)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics or a partial snippet: nothing can be kept safely
        return f"# {STUB_MESSAGE}"
    return _stub_statements(tree.body, source.split("\n"), "") or f"# {STUB_MESSAGE}"


def defined_names(source: str) -> set[str]:
    """Top-level functions, classes and assigned names in a code cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


# ---------------------------------------------------------------------------------------------
# Notebooks


def is_solution(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def _clear(cell: nbformat.NotebookNode) -> None:
    cell.outputs = []
    cell.execution_count = None
    cell.get("metadata", {}).pop("execution", None)


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student edition of one instructor notebook (a new object; ``nb`` is unchanged)."""
    nb = copy.deepcopy(nb)
    solution_names: set[str] = set()
    for cell in nb.cells:
        if is_solution(cell):
            solution_names |= defined_names(cell.source)
    uses = re.compile(
        r"\b(check_\w+|" + "|".join(map(re.escape, sorted(solution_names))) + r")\b"
        if solution_names
        else r"\bcheck_\w+\b"
    )
    cells = []
    in_gated = False
    for cell in nb.cells:
        if INSTRUCTOR_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "markdown":
            if in_gated or "{solution" in cell.source:
                text, in_gated = strip_solutions(cell.source, in_gated)
                if not text.strip():
                    continue
                cell.source = text
            cells.append(cell)
            continue
        if in_gated:
            continue  # a code cell inside a gated solution is part of the solution
        if is_solution(cell):
            cell.source = stub_source(cell.source)
            # The instructor book may collapse or hide its solutions; the stub must show.
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t not in HIDING_TAGS]
            _clear(cell)
        elif cell.cell_type == "code" and uses.search(cell.source):
            _clear(cell)
        cells.append(cell)
    nb.cells = cells
    return nb


def convert_notebook(src: Path, dst: Path) -> None:
    nb = nbformat.read(src, as_version=4)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(student_notebook(nb), dst)


def student_config(text: str) -> str:
    """_config.yml of the student edition: solutions hidden, notebooks not executed."""
    config = yaml.safe_load(text) or {}
    config["title"] = f"{config.get('title', 'Book')} (student edition)"
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    sphinx = config.setdefault("sphinx", {})
    sphinx.setdefault("config", {})["hide_solutions"] = True
    header = (
        "# Generated by scripts/make_student_edition.py from the instructor edition; do not edit.\n"
        "# Solutions are removed and hidden; notebooks are not executed (the stubs raise\n"
        "# NotImplementedError), so the stored outputs of the other cells are shown.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise SystemExit(f"--out {out} exists and is not a directory; choose a new directory.")
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise SystemExit(
                f"--out {out} is a non-empty directory that this script did not make; "
                "refusing to overwrite it. Choose a new or empty directory."
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by scripts/make_student_edition.py; replaced on every run\n")


def make_book(root: Path, out: Path) -> list[Path]:
    """Write the student edition of the book in ``root`` to ``out``; returns the notebooks made."""
    root, out = root.resolve(), out.resolve()
    if out == root or root in out.parents and out.relative_to(root).parts[0] == "book":
        raise SystemExit(f"--out {out} would overwrite the instructor sources; choose another directory.")
    for name in TOP_LEVEL_FILES:
        if not (root / name).exists():
            raise SystemExit(f"{root / name} is missing; run this script from a checkout of the book.")
    _prepare_out(out)
    (out / "_config.yml").write_text(student_config((root / "_config.yml").read_text()))
    for name in TOP_LEVEL_FILES[1:]:
        shutil.copy2(root / name, out / name)
    for name in OPTIONAL_DIRS:
        if (root / name).is_dir():
            shutil.copytree(root / name, out / name)
    made = []
    for src in sorted((root / "book").rglob("*")):
        if ".ipynb_checkpoints" in src.parts or src.is_dir():
            continue
        dst = out / src.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".ipynb":
            convert_notebook(src, dst)
            made.append(dst)
        elif src.suffix == ".md":
            dst.write_text(strip_solutions(src.read_text())[0] + "\n")
        else:
            shutil.copy2(src, dst)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Single homework notebooks: python scripts/assign_homework.py (Otter-Grader).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", "-o", type=Path, required=True, help="output directory of the student book's sources")
    parser.add_argument("--root", type=Path, default=ROOT, help="the book's checkout (default: %(default)s)")
    args = parser.parse_args(argv)
    made = make_book(args.root, args.out)
    print(
        f"student edition of {len(made)} notebooks written to {args.out}; build it with: jupyter-book build {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
