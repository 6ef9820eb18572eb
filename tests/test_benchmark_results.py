"""vaelab.benchmark_results: the committed result a chapter reads, found locally or on GitHub."""

import json
from pathlib import Path

import pytest
import tomllib

import vaelab
from vaelab import notebook

ROOT = Path(__file__).resolve().parent.parent


def test_a_result_file_is_found_in_the_nearest_parent_folder(tmp_path, monkeypatch):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "r.json").write_text(json.dumps({"nll": 86.76}))
    deep = tmp_path / "book" / "chapter"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert vaelab.benchmark_results("r.json") == {"nll": 86.76}


def test_elsewhere_it_is_downloaded_from_the_pyproject_repository(tmp_path, monkeypatch):
    """The URL comes from pyproject.toml's [project.urls] Repository (through the package
    metadata), so scripts/set_repository_url.py changes it with everything else."""
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    owner_name = repository.removeprefix("https://github.com/")
    expected = f"https://raw.githubusercontent.com/{owner_name}/main/benchmarks/results/r.json"
    asked = []

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b'{"from": "github"}'

    def fake_urlopen(url, timeout):
        asked.append(url)
        return Response()

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    monkeypatch.chdir(tmp_path)
    assert vaelab.benchmark_results("r.json") == {"from": "github"}
    assert asked == [expected]


def test_offline_and_outside_a_clone_it_is_a_one_line_error(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise OSError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="run the notebook inside a clone") as info:
        notebook.benchmark_results("missing.json")
    assert "\n" not in str(info.value)
