"""vaelab's layout: sub-packages by what a reader looks for, every import pointing down toward the core.

Read from the source with an AST walk (nothing is imported): the graph of vaelab's imports between its
modules has no cycle, at run time or for type hints; a module imports only from its own layer or the
layers below it; a module imports vaelab only at its top, except the command line's lazy imports
(which keep ``python -m vaelab --help`` free of torch); and one Python version floor holds everywhere.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vaelab"

# Bottom to top. A module may import from its own layer and the layers below it.
LAYERS = [
    ["vaelab.utils"],
    ["vaelab.core"],
    ["vaelab.data"],
    ["vaelab.models"],
    ["vaelab.estimators"],
    ["vaelab.train"],
    ["vaelab.checks"],
    ["vaelab.diagnostics", "vaelab.plots", "vaelab.notebook"],
    ["vaelab.cli", "vaelab.__main__", "vaelab"],
]
# The one import inside a function that may name a vaelab module: the CLI's plots (matplotlib), lazy so
# that it comes after the CLI chooses the Agg backend; named as such there.
LAZY_IMPORTS = {("vaelab.cli", "vaelab.plots")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in layer):
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py; add it where it belongs")


def resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The vaelab modules an import statement names (``from . import x`` names the module x)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name == "vaelab" or a.name.startswith("vaelab.")]
    if node.level == 0:
        base = node.module or ""
        if not (base == "vaelab" or base.startswith("vaelab.")):
            return []
    else:
        package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    names = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    return names or [base]


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at the top of the file?) for every vaelab import of ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found += [(name, node.lineno, id(node) in top) for name in resolve(module, node)]
    return found


def graph() -> dict[str, set[str]]:
    return {m: {target for target, _, _ in imports(m) if target in MODULES and target != m} for m in MODULES}


def test_the_resolver_on_known_imports():
    assert resolve("vaelab.models.config", ast.parse("from ..core.model import VAE").body[0]) == ["vaelab.core.model"]
    assert resolve("vaelab.estimators.evaluation", ast.parse("from . import bernoulli_mlp").body[0]) == [
        "vaelab.estimators.bernoulli_mlp"
    ]
    assert resolve("vaelab", ast.parse("from .core.kl import register_kl").body[0]) == ["vaelab.core.kl"]
    assert resolve("vaelab.core", ast.parse("import torch").body[0]) == []


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_point_down_toward_the_core():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)}) on line {line}"
        for module in MODULES
        for target, line, _ in imports(module)
        if target in MODULES and layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for module in sorted(edges):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_local_imports_of_vaelab_except_the_clis_lazy_plots():
    hidden = [
        f"{module}:{line} imports {target} inside a function"
        for module in MODULES
        for target, line, at_top in imports(module)
        if not at_top and target.startswith("vaelab") and (module, target) not in LAZY_IMPORTS
    ]
    # imports under `if TYPE_CHECKING:` are at the top of the file but not at run time: also checked
    assert not hidden, "\n".join(hidden)
    assert "lazy" in MODULES["vaelab.cli"].read_text().lower(), "cli.py should name its lazy imports as such"


def test_the_reading_path_is_the_core_in_book_order():
    from test_reading_path import READING_PATH

    assert all(layer_of(f"vaelab.core.{name}") == layer_of("vaelab.core") for name in READING_PATH)
    order = [n for n in ("recognition", "generative", "kl", "model", "objectives") if n in READING_PATH]
    assert list(READING_PATH) == order
    edges = graph()
    for position, name in enumerate(READING_PATH):  # each file imports only files before it
        later = {f"vaelab.core.{n}" for n in READING_PATH[position:]}
        assert not (edges[f"vaelab.core.{name}"] & later), f"{name}.py imports a later file of the reading path"


def test_the_public_api_is_listed_in_the_readme():
    tree = ast.parse(MODULES["vaelab"].read_text())
    public = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__all__"
    )
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in public if f"`{name}`" not in readme]
    assert not missing, f"README.md does not list these public names: {missing}"


# ----------------------------------------------------------------------------- one Python floor


def python_floors() -> dict[str, tuple[int, int]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = {
        "requires-python": pyproject["project"]["requires-python"],
        "ruff target-version": pyproject["tool"]["ruff"]["target-version"],
        "README": re.search(r"Python (3\.\d+)\+", (ROOT / "README.md").read_text()).group(1),
        "environment.yml": re.search(r"python>=(3\.\d+)", (ROOT / "environment.yml").read_text()).group(1),
    }
    floors = {}
    for where, text in found.items():
        digits = re.search(r"3\.?(\d+)", text)
        assert digits, f"{where}: no Python version in {text!r}"
        floors[where] = (3, int(digits.group(1)))
    return floors


def test_one_python_floor_everywhere():
    floors = python_floors()
    assert len(set(floors.values())) == 1, f"the Python floor differs: {floors}"
    assert set(floors.values()) == {(3, 10)}  # zip(strict=True) and X | Y at run time need 3.10


def _python_sources() -> list[tuple[str, str]]:
    sources = [
        (str(p.relative_to(ROOT)), p.read_text())
        for folder in ("vaelab", "tests", "benchmarks", "scripts")
        for p in sorted((ROOT / folder).rglob("*.py"))
    ]
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(notebook.read_text())["cells"]):
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                code = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
                sources.append((f"{notebook.name} cell {i}", code))
    return sources


@pytest.mark.parametrize("where,source", _python_sources(), ids=lambda v: v if len(v) < 60 else "")
def test_the_code_parses_on_the_python_floor(where, source):
    """No syntax newer than the floor: the package, tests, benchmarks, scripts and every chapter cell."""
    floor = next(iter(python_floors().values()))
    ast.parse(source, filename=where, feature_version=floor)
