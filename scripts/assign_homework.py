#!/usr/bin/env python
"""Make the student notebook and the Gradescope autograder of a homework with Otter-Grader.

The homework (e.g. ``book/homework_template.ipynb``) is written in Otter's assign format; Otter's own
command, ``otter assign``, does the work. What this script adds is vaelab itself: until vaelab is
on PyPI, the autograder must carry it. So it copies the notebook to ``OUT/src/``, builds vaelab's
wheel from this checkout into ``OUT/src/vaelab_wheel/`` and writes ``OUT/src/requirements.txt``
naming that wheel where Gradescope unpacks the autograder (``/autograder/source/files/...``),
which the notebook's ``# ASSIGNMENT CONFIG`` refers to. Then it runs

    otter assign OUT/src/NOTEBOOK OUT            (OUT/student/, OUT/autograder/*.zip)

Usage:
    python scripts/assign_homework.py book/homework_template.ipynb _build/homework [--no-run-tests]

Grade a submission without Docker (as Gradescope would, in this environment):
    otter run -a _build/homework/autograder/homework_template-autograder_*.zip -o results/ submission.ipynb
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


def assign(notebook: Path, out: Path, run_tests: bool = True, root: Path = ROOT) -> Path:
    """Run ``otter assign`` on a prepared copy of ``notebook``; returns the autograder zip."""
    if not notebook.is_file():
        raise SystemExit(f"{notebook} is not a file; give the homework notebook, e.g. book/homework_template.ipynb.")
    out = out.resolve()
    for sub in ("student", "autograder"):
        shutil.rmtree(out / sub, ignore_errors=True)
    master = prepare(notebook.resolve(), out, root)
    command = otter_command() + ["assign", str(master), str(out)] + ([] if run_tests else ["--no-run-tests"])
    subprocess.run(command, check=True)
    zips = sorted((out / "autograder").glob("*.zip"))
    if len(zips) != 1:
        raise SystemExit(f"otter assign made {len(zips)} autograder zips in {out / 'autograder'}; expected one.")
    return zips[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("notebook", type=Path, help="the homework in Otter's assign format")
    parser.add_argument("out", type=Path, help="output folder: student/ and autograder/ (with the zip) go there")
    parser.add_argument(
        "--no-run-tests", action="store_true", help="skip Otter's check that the solution passes every test (faster)"
    )
    args = parser.parse_args(argv)
    zip_path = assign(args.notebook, args.out, run_tests=not args.no_run_tests)
    print(f"student notebook: {args.out / 'student' / args.notebook.name}\nautograder: {zip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
