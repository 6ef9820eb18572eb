"""Publishing (issue 17): the GitHub workflows are valid and run the Makefile's commands; the
repository URL has one source that every place follows, and one command changes it; CITATION.cff
is valid CFF 1.2.0; `python -m build` and `twine check` pass, and the version lives in one place."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
NEW_URL = "https://github.com/Some-Org/vae-book"


def _tool(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        pytest.fail(f"{name} is missing from this environment: pip install -e '.[test]'")
    return str(path)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _version() -> str:
    """vaelab.__version__, read from the source without importing the package."""
    tree = ast.parse((ROOT / "vaelab" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("vaelab/__init__.py defines no __version__")


def _pyproject(root: Path = ROOT) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((root / "pyproject.toml").read_text())


# ----------------------------------------------------------------------------- workflows


def _workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _runs(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job.get("steps", []) if "run" in step]


def _uses(workflow: dict) -> list[str]:
    return [
        step["uses"].split("@")[0]
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if "uses" in step
    ]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_workflows_are_valid_github_workflows():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"book.yml", "ci.yml"}
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    broken = _workflow("ci.yml")
    broken["jobs"]["test"]["runs-on"] = None
    del broken["jobs"]["test"]["steps"]
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0


def test_workflow_commands_are_the_makefiles():
    targets = _make_targets()
    ci, book = _workflow("ci.yml"), _workflow("book.yml")
    # ci.yml: on every push and pull request, the CI entry point
    assert {"push", "pull_request"} <= set(ci[True] if True in ci else ci["on"])
    assert "bash .ci/run" in _runs(ci) and (ROOT / ".ci" / "run").is_file()
    # book.yml: on pushes to main, make book + make student-book, then Pages
    on = book[True] if True in book else book["on"]
    assert on["push"]["branches"] == ["main"]
    runs = _runs(book)
    for run in runs + _runs(ci):
        for target in re.findall(r"\bmake ([\w-]+)", run):
            assert target in targets, f"workflow runs `make {target}`, which the Makefile does not define"
    assert "make book" in runs and "make student-book" in runs
    makefile = (ROOT / "Makefile").read_text()
    # the student edition's HTML is where `make student-book` writes it, copied under /student/
    student_src = re.search(r"^student-book:.*?jupyter-book build (\S+)", makefile, re.MULTILINE | re.DOTALL).group(1)
    assert f"cp -r {student_src}/_build/html _build/html/student" in runs
    # `make book` builds `.` into _build/html, which is what Pages gets
    book_recipe = re.search(r"^book:.*?\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1)
    assert "jupyter-book build ." in book_recipe and "--path-output" not in book_recipe
    upload = next(
        s
        for j in book["jobs"].values()
        for s in j.get("steps", [])
        if s.get("uses", "").startswith("actions/upload-pages-artifact")
    )
    assert upload["with"]["path"] == "_build/html"
    assert "actions/deploy-pages" in _uses(book)
    assert book["permissions"]["pages"] == "write" and book["permissions"]["id-token"] == "write"
    for workflow in (ci, book):
        uses = _uses(workflow)
        assert "actions/cache" in uses  # MNIST
        setup = next(
            s
            for j in workflow["jobs"].values()
            for s in j["steps"]
            if s.get("uses", "").startswith("actions/setup-python")
        )
        assert setup["with"]["cache"] == "pip"
        job = next(iter(workflow["jobs"].values()))
        cache = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/cache"))
        data = cache["with"]["path"].replace("~", "$HOME", 1)
        assert f'echo "VAELAB_DATA={data}" >> "$GITHUB_ENV"' in [s.get("run", "").strip() for s in job["steps"]]


# ----------------------------------------------------------------------------- the repository URL


def _places(root: Path) -> dict[str, set[str]]:
    """Every URL each place names for the repository and the book, parsed independently of the script."""
    urls = _pyproject(root)["project"]["urls"]
    config = yaml.safe_load((root / "_config.yml").read_text())
    citation = yaml.safe_load((root / "CITATION.cff").read_text())
    places = {
        "pyproject Repository": {urls["Repository"]},
        "pyproject Issues": {urls["Issues"].removesuffix("/issues")},
        "_config.yml": {config["repository"]["url"]},
        "CITATION.cff repository-code": {citation["repository-code"]},
    }
    install = re.compile(r'vaelab @ git\+([^"\s\\]+)')
    for name in ("README.md", "CONTRIBUTING.md"):
        places[name] = set(install.findall((root / name).read_text()))
    for path in sorted((root / "book").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
        places[f"{path.name} install cell"] = set(install.findall("".join(first_code["source"])))
        raw = re.findall(r"https://raw\.githubusercontent\.com/([\w-]+)/([\w.-]+)/", path.read_text())
        if raw:  # a committed result file read on Colab
            places[f"{path.name} raw files"] = {f"https://github.com/{o}/{n}" for o, n in raw}
    return places


def _book_places(root: Path) -> dict[str, set[str]]:
    readme = (root / "README.md").read_text()
    return {
        "pyproject Homepage": {_pyproject(root)["project"]["urls"]["Homepage"]},
        "CITATION.cff url": {yaml.safe_load((root / "CITATION.cff").read_text())["url"]},
        "README.md": set(re.findall(r"\((https://[\w-]+\.github\.io/[\w.-]+/)\)", readme)),
    }


def test_every_place_names_the_repository_url_of_pyproject():
    url = _pyproject(ROOT)["project"]["urls"]["Repository"]
    places = _places(ROOT)
    # chapters read committed results on Colab through vaelab.benchmark_results, whose raw URL comes from
    # the package metadata (pyproject's Repository); no notebook keeps a copy of it
    assert not any(p.endswith("raw files") for p in places)
    import vaelab.notebook

    owner_name = url.removeprefix("https://github.com/")
    assert vaelab.notebook.raw_repository_url() == f"https://raw.githubusercontent.com/{owner_name}/main/"
    assert len([p for p in places if p.endswith("install cell")]) == len(list((ROOT / "book").glob("*.ipynb"))) >= 11
    assert {name: found for name, found in places.items() if found != {url}} == {}
    owner, name = re.fullmatch(r"https://github\.com/([\w-]+)/([\w.-]+)", url).groups()
    book = f"https://{owner.lower()}.github.io/{name}/"
    assert {k: v for k, v in _book_places(ROOT).items() if v != {book}} == {}
    assert _script("set_repository_url").disagreements(ROOT) == []


def test_set_repository_url_changes_every_place_in_one_command(tmp_path):
    for name in ("pyproject.toml", "_config.yml", "README.md", "CONTRIBUTING.md", "CITATION.cff"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("*.ipynb_checkpoints"))
    old = _pyproject(ROOT)["project"]["urls"]["Repository"]
    script = _script("set_repository_url")
    assert script.main([NEW_URL, "--root", str(tmp_path)]) == 0
    assert {name: found for name, found in _places(tmp_path).items() if found != {NEW_URL}} == {}
    assert {k: v for k, v in _book_places(tmp_path).items() if v != {"https://some-org.github.io/vae-book/"}} == {}
    # Only the URLs changed: putting the old ones back gives the original bytes (notebook JSON included).
    old_book = script.book_url(old)
    for path in [tmp_path / "README.md", tmp_path / "pyproject.toml", *sorted((tmp_path / "book").glob("*.ipynb"))]:
        text = path.read_text()
        assert old not in text
        restored = text.replace("https://some-org.github.io/vae-book/", old_book).replace(NEW_URL, old)
        restored = restored.replace(script.raw_url(NEW_URL), script.raw_url(old))
        assert restored == (ROOT / path.relative_to(tmp_path)).read_text(), path
    # A disagreeing place is reported; a malformed URL is refused with the expected form.
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace(f"git+{NEW_URL}", "git+https://github.com/else/where", 1))
    assert any(line.startswith("README.md: https://github.com/else/where") for line in script.disagreements(tmp_path))
    assert script.main(["--check", "--root", str(tmp_path)]) == 1
    with pytest.raises(ValueError, match="https://github.com/OWNER/NAME"):
        script.set_url("https://github.com/owner/name.git", tmp_path)


# ----------------------------------------------------------------------------- citation


def test_citation_cff_is_valid_and_matches_the_package():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= set(citation)
    assert str(citation["version"]) == _version()
    assert citation["license"] == _pyproject(ROOT)["project"]["license"]
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.citation-file-format", str(ROOT / "CITATION.cff")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cff_schema_check_catches_a_broken_citation(tmp_path):
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    del citation["authors"]
    citation["cff-version"] = "1.2"
    path = tmp_path / "CITATION.cff"
    path.write_text(yaml.safe_dump(citation))
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.citation-file-format", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0


# ----------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist and wheel from `python -m build` on a copy of what the package is made of (about 10 s)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "vaelab", src / "vaelab", ignore=shutil.ignore_patterns("__pycache__"))
    out = src / "dist"
    # --no-isolation: build with this environment's setuptools (offline; the pyproject's minimum is checked here)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_build_makes_an_sdist_and_a_wheel_that_twine_accepts(dist):
    version = _version()
    sdist, wheel = dist / f"vaelab-{version}.tar.gz", dist / f"vaelab-{version}-py3-none-any.whl"
    assert sdist.is_file() and wheel.is_file(), sorted(p.name for p in dist.iterdir())
    result = subprocess.run(
        [_tool("twine"), "check", "--strict", str(sdist), str(wheel)], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.count("PASSED") == 2, result.stdout + result.stderr


@pytest.mark.slow
def test_wheel_metadata_version_and_urls_come_from_their_one_place(dist):
    version = _version()
    with zipfile.ZipFile(dist / f"vaelab-{version}-py3-none-any.whl") as zf:
        names = zf.namelist()
        meta = Parser().parsestr(zf.read(f"vaelab-{version}.dist-info/METADATA").decode())
    assert meta["Name"] == "vaelab" and meta["Version"] == version
    assert str(yaml.safe_load((ROOT / "CITATION.cff").read_text())["version"]) == version
    urls = dict(line.split(", ", 1) for line in meta.get_all("Project-URL"))
    assert urls == _pyproject(ROOT)["project"]["urls"]
    assert urls["Repository"] == yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    # every subpackage is in the wheel (vaelab.checks is a package), and nothing of the book or tests
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "vaelab").rglob("__init__.py")}
    assert packages <= {n.rsplit("/", 1)[0] for n in names}
    assert not [n for n in names if n.startswith(("tests/", "book/", "benchmarks/"))]
    assert meta["License-Expression"] == "MIT" and meta["Requires-Python"] == ">=3.10"
