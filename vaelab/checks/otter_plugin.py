"""An Otter-Grader plugin that puts a vaelab check's verdict first in the autograder's feedback.

Otter grades a test cell such as ``vaelab.checks.check_kl_standard_normal(my_kl)`` as a doctest, so a
failure reads "Trying: ... Expecting: ... Failed example: ... Expected: ... Got:" and only then the
check's message. ``CheckMessageFirst`` rewrites each failed test case's feedback to start with the
check's message (the failing input, expected and returned values and the hint), followed by the
test that produced it. A homework lists it in its ``# ASSIGNMENT CONFIG``::

    plugins:
      - vaelab.checks.otter_plugin.CheckMessageFirst

Otter imports it while grading (``otter run`` or Gradescope), where vaelab is installed; nothing
else in vaelab imports this module, so vaelab does not need Otter.
"""

from __future__ import annotations

import dataclasses
import re
from textwrap import dedent
from typing import Any

from otter.plugins import AbstractOtterPlugin

__all__ = ["CheckMessageFirst", "check_message"]

_VERDICT = re.compile(r"^(check_\w+|summary): ")


def check_message(feedback: str) -> str | None:
    """The vaelab check's message inside Otter's doctest feedback, or None if there is none."""
    if "\nGot:\n" in feedback:
        block = feedback.split("\nGot:\n", 1)[1]
    elif "AssertionError: " in feedback:
        block = "    " + feedback.rsplit("AssertionError: ", 1)[1]
    else:
        return None
    lines = []
    for line in block.splitlines():
        if line.startswith("****") or (line.strip() and not line.startswith("    ")):
            break
        lines.append(line)
    text = dedent("\n".join(lines)).strip().strip("'\"")
    return text if _VERDICT.match(text) else None


def _test_source(feedback: str) -> str | None:
    if "\nFailed example:\n" not in feedback:
        return None
    lines = []
    for line in feedback.split("\nFailed example:\n", 1)[1].splitlines():
        if not line.startswith("    "):
            break
        lines.append(line)
    return dedent("\n".join(lines)).strip() or None


class CheckMessageFirst(AbstractOtterPlugin):
    """Otter plugin (event ``after_grading``): a failed test's feedback starts with the check's message."""

    def after_grading(self, results: Any) -> None:
        for test_file in results.results.values():
            rewritten = []
            for result in test_file.test_case_results:
                message = check_message(result.message or "") if not result.passed else None
                if message is not None:
                    source = _test_source(result.message)
                    text = "❌ " + message + (f"\n\n(from the test: {source})" if source else "")
                    result = dataclasses.replace(result, message=text)
                rewritten.append(result)
            test_file.test_case_results = rewritten
