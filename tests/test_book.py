"""The HTML book builds with Sphinx warnings treated as errors, and it has a page for every chapter.

The build (once per session, see book_build.py `built_book`) executes every chapter as configured in
_config.yml; set VAELAB_BOOK_HTML to reuse a built html folder instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from book_build import ROOT, TEST_BUILD, require_book, toc_files, toc_source

pytestmark = pytest.mark.book

CHAPTERS = toc_files()
# Sphinx reports problems as "<where>: WARNING: ...", "ERROR: ..." or "CRITICAL: ...".
PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL|SEVERE):")


@pytest.fixture(scope="module")
def built_book():
    return require_book()  # built at most once per session, shared with the other module


def test_toc_is_complete():
    """Every entry of _toc.yml has a source, and every chapter in book/ is in _toc.yml (else it is never built)."""
    assert len(CHAPTERS) == len(set(CHAPTERS)), f"_toc.yml lists a file twice: {CHAPTERS}"
    for entry in CHAPTERS:
        toc_source(entry)  # raises with the missing path
    listed = set(CHAPTERS)
    sources = sorted(p for p in (ROOT / "book").glob("*") if p.suffix in (".ipynb", ".md"))
    missing = [str(p.relative_to(ROOT)) for p in sources if str(p.relative_to(ROOT).with_suffix("")) not in listed]
    assert not missing, f"chapters in book/ that _toc.yml leaves out (only_build_toc_files skips them): {missing}"


def test_book_builds_without_warnings(built_book):
    if built_book.reused:
        pytest.skip(f"VAELAB_BOOK_HTML={built_book.html}: reusing that build, so its warnings are not checked here")
    problems = [line for line in built_book.log.splitlines() if PROBLEM.search(line)]
    assert built_book.returncode == 0 and not problems, (
        f"jupyter-book build -W -n exited {built_book.returncode} after {built_book.seconds:.0f} s with "
        f"{len(problems)} warning/error line(s) (full log in artifacts/book-build.log):\n"
        + ("\n".join(problems[:50]) if problems else built_book.log[-5000:])
    )


def test_make_book_always_builds_the_full_book():
    """`make test` then `make book` once left the tests' quick-mode pages in _build/html (Sphinx saw nothing
    changed). Now the tests build elsewhere, and `make book` rebuilds every page (--all) whatever ran before."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^book:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert recipe, "the Makefile has no `book:` target"
    build_lines = [line for line in recipe.group(1).splitlines() if "jupyter-book build" in line]
    assert build_lines and all("--all" in line for line in build_lines), (
        f"`make book` must rebuild every page (jupyter-book build --all): {build_lines}"
    )
    assert "VAELAB_QUICK" not in recipe.group(1), "`make book` is the full-settings build"
    assert (TEST_BUILD / "_build" / "html") != ROOT / "_build" / "html", "the tests must not build into _build/html"


@pytest.mark.parametrize("entry", CHAPTERS)
def test_every_chapter_has_its_page(built_book, entry):
    page = Path(built_book.html) / (entry + ".html")
    assert page.is_file(), f"{entry} is in _toc.yml but the build wrote no {page}"
    if not built_book.reused:
        # --all rewrites every page: an older file is a leftover of an earlier build, not this one's.
        assert page.stat().st_mtime >= built_book.started - 1, f"{page} was not written by this build"
    text = page.read_text(encoding="utf-8")
    h1 = re.findall(r"<h1[^>]*>(.*?)</h1>", text, flags=re.S)
    title = re.sub(r"<[^>]+>|#", "", h1[0]).strip() if h1 else ""
    assert title, f"{page} has no <h1> title: the chapter should open with a '# Title' cell"
    # The page holds the chapter's body, not just the title: its article has more text than the heading.
    article = re.search(r'<article class="bd-article">(.*?)</article>', text, flags=re.S)
    body = re.sub(r"<[^>]+>", " ", article.group(1)) if article else ""
    assert len(body.split()) > 20, f"{page} ({title!r}) is nearly empty: {body.split()[:30]}"
