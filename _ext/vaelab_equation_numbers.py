"""Sphinx extension: equation numbers per chapter ("(7.3)"), as the book numbers its figures ("Figure 7.3").

With `numfig` and `math_numfig`, Sphinx numbers labelled equations through `env.toc_fignumbers`, and without a
numbered toctree that counter runs across the whole book (eq. 25 was in chapter 7). The chapters are numbered
by their file names (`book/07_latent_space` is chapter 7), not by their place in the toctree (the preface is
chapter 1 and is the root page, which a numbered toctree would leave out). So after Sphinx has assigned its
numbers, this extension renumbers the labelled equations of each page as (chapter, n), n = 1, 2, ... in the
order of the page. The equations themselves (MathJax) and their references ({eq}`label`) both read these
numbers. A page whose name has no number (an appendix) numbers its equations 1, 2, ... alone.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

CHAPTER = re.compile(r"^(\d+)_")


def chapter_number(docname: str) -> int | None:
    """The chapter number in a page name: 'book/07_latent_space' -> 7; None for a page without one."""
    match = CHAPTER.match(PurePosixPath(docname).name)
    return int(match.group(1)) if match else None


def _renumber_equations(app, env) -> list[str]:
    changed = []
    for docname, fignumbers in env.toc_fignumbers.items():
        equations = fignumbers.get("displaymath")
        if not equations:
            continue
        chapter = chapter_number(docname)
        prefix = () if chapter is None else (chapter,)
        # Sphinx's numbers grow in reading order within the page: keep that order, restart at 1.
        ordered = sorted(equations, key=lambda label: equations[label])
        renumbered = {label: (*prefix, n) for n, label in enumerate(ordered, start=1)}
        if renumbered != equations:
            fignumbers["displaymath"] = renumbered
            changed.append(docname)
    return changed


def setup(app):
    # After the toctree collector (priority 500) has filled env.toc_fignumbers.
    app.connect("env-get-updated", _renumber_equations, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
