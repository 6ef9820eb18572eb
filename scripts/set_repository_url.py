#!/usr/bin/env python
"""The repository URL lives in one place, pyproject.toml's ``[project.urls] Repository``; this
script writes it everywhere else, in one command, and checks that every place agrees.

Where the URL appears (each must name it at least once):

* ``pyproject.toml``: ``[project.urls]`` Repository, Issues (``URL/issues``) and Homepage (the
  published book, ``https://OWNER.github.io/NAME/``);
* ``_config.yml``: ``repository: url:`` (the book's repository, issues and Colab buttons);
* every notebook in ``book/``: the install cell's ``vaelab @ git+URL`` (what Colab installs);
* ``README.md`` and ``CONTRIBUTING.md``: the install line ``vaelab @ git+URL`` (the README also
  links the published book);
* ``CITATION.cff``: ``repository-code`` and ``url`` (the published book);
* notebooks that read a committed result file on Colab: ``https://raw.githubusercontent.com/OWNER/NAME/``
  (checked wherever it appears; today no notebook has one: chapters call ``vaelab.benchmark_results``,
  which derives it from the package metadata, that is from pyproject.toml).

Usage:
    python scripts/set_repository_url.py https://github.com/OWNER/NAME   # change it everywhere
    python scripts/set_repository_url.py --check                          # exit 1 if a place disagrees

The change is a plain text replacement of the old URL (and of the old book URL derived from it),
so notebook JSON and every other byte stay as they were.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "pyproject.toml"
URL_PATTERN = re.compile(r"https://github\.com/(?P<owner>[A-Za-z0-9][A-Za-z0-9-]*)/(?P<name>[A-Za-z0-9._-]+)")
_REPOSITORY_LINE = re.compile(r'^Repository\s*=\s*"(?P<url>[^"]*)"\s*$', re.MULTILINE)
# Every place a file names the repository, as (file glob, regex whose group "url" is the repository URL).
PLACES: tuple[tuple[str, str], ...] = (
    ("pyproject.toml", r'^Repository\s*=\s*"(?P<url>[^"]*)"'),
    ("pyproject.toml", r'^Issues\s*=\s*"(?P<url>[^"]*)/issues"'),
    ("_config.yml", r"^repository:\n\s+url:\s*(?P<url>\S+)"),
    ("book/*.ipynb", r"vaelab @ git\+(?P<url>[^\"\\\s]+)"),
    ("README.md", r"vaelab @ git\+(?P<url>[^\"\s]+)"),
    ("CONTRIBUTING.md", r"vaelab @ git\+(?P<url>[^\"\s]+)"),
    ("CITATION.cff", r"^repository-code:\s*\"?(?P<url>[^\"\s]+)\"?"),
)
# The published book (GitHub Pages), derived from the repository URL.
BOOK_PLACES: tuple[tuple[str, str], ...] = (
    ("pyproject.toml", r'^Homepage\s*=\s*"(?P<url>[^"]*)"'),
    ("CITATION.cff", r"^url:\s*\"?(?P<url>[^\"\s]+)\"?"),
    ("README.md", r"\((?P<url>https://[^)\s]*\.github\.io/[^/)\s]*/)\)"),
)


def parse_repository_url(url: str) -> tuple[str, str]:
    """(owner, name) of ``https://github.com/OWNER/NAME``; a clear error for anything else."""
    match = URL_PATTERN.fullmatch(url)
    if not match or match.group("name").endswith(".git"):
        raise ValueError(
            f"the repository URL must look like https://github.com/OWNER/NAME (no trailing slash, "
            f"no .git), got {url!r}."
        )
    return match.group("owner"), match.group("name")


def book_url(repository: str) -> str:
    """Where GitHub Pages publishes the book of ``repository``: https://owner.github.io/name/."""
    owner, name = parse_repository_url(repository)
    return f"https://{owner.lower()}.github.io/{name}/"


def raw_url(repository: str) -> str:
    """Where GitHub serves the files of ``repository``: https://raw.githubusercontent.com/owner/name/."""
    owner, name = parse_repository_url(repository)
    return f"https://raw.githubusercontent.com/{owner}/{name}/"


RAW_PATTERN = re.compile(r"https://raw\.githubusercontent\.com/[^/\s\"]+/[^/\s\"]+/")


def repository_url(root: Path = ROOT) -> str:
    """The one source: ``Repository = "..."`` in pyproject.toml's [project.urls]."""
    match = _REPOSITORY_LINE.search((root / SOURCE).read_text(encoding="utf-8"))
    if not match:
        raise SystemExit(f"{root / SOURCE} has no 'Repository = \"...\"' line in [project.urls]; add one.")
    return match.group("url")


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(root.glob(pattern))


def disagreements(root: Path = ROOT) -> list[str]:
    """One line per place that does not name the source URL (or its book URL); empty when all agree."""
    url = repository_url(root)
    problems = []
    try:
        expected_book = book_url(url)
    except ValueError as err:
        return [f"{SOURCE}: {err}"]
    for places, expected in ((PLACES, url), (BOOK_PLACES, expected_book)):
        for pattern, regex in places:
            files = _files(root, pattern)
            if not files:
                problems.append(f"{pattern}: no such file")
            for path in files:
                found = [m.group("url") for m in re.finditer(regex, path.read_text(encoding="utf-8"), re.MULTILINE)]
                name = path.relative_to(root).as_posix()
                if not found:
                    problems.append(f"{name}: names no URL where expected (pattern {regex!r})")
                problems += [f"{name}: {got} (expected {expected})" for got in found if got != expected]
    for path in _files(root, "book/*.ipynb"):
        found = RAW_PATTERN.findall(path.read_text(encoding="utf-8"))
        name = path.relative_to(root).as_posix()
        problems += [f"{name}: {got} (expected {raw_url(url)})" for got in found if got != raw_url(url)]
    return problems


def set_url(new: str, root: Path = ROOT) -> list[Path]:
    """Replace the current repository URL (and book URL) by ``new`` in every place; returns the files changed."""
    parse_repository_url(new)
    old = repository_url(root)
    replacements = [
        (old, new),
        (book_url(old), book_url(new)),
        (book_url(old).rstrip("/"), book_url(new).rstrip("/")),
        (raw_url(old), raw_url(new)),
    ]
    changed = []
    for pattern in dict.fromkeys(p for p, _ in PLACES + BOOK_PLACES):
        for path in _files(root, pattern):
            text = path.read_text(encoding="utf-8")
            new_text = text
            for a, b in replacements:
                if a != b:
                    # a URL followed by more name characters is another repository (…/name-old): leave it
                    end = "" if a.endswith("/") else r"(?![A-Za-z0-9._-])"
                    new_text = re.sub(re.escape(a) + end, b, new_text)
            if new_text != text:
                path.write_text(new_text, encoding="utf-8")
                changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", nargs="?", help="the new repository URL, https://github.com/OWNER/NAME")
    parser.add_argument("--check", action="store_true", help="only check that every place agrees (exit 1 if not)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.url:
        try:
            changed = set_url(args.url, args.root)
        except ValueError as err:
            parser.error(str(err))
        for path in changed:
            print(f"updated {path.relative_to(args.root)}")
    elif not args.check:
        parser.error("give the new URL (https://github.com/OWNER/NAME) or --check")
    problems = disagreements(args.root)
    for line in problems:
        print(f"disagrees: {line}", file=sys.stderr)
    if not problems:
        print(f"every place names {repository_url(args.root)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
