"""Messages to users in their own terms: an error can carry its fix twice, in Python terms
(``str(err)``: a keyword such as ``resume=False``) and in command-line terms (``err.cli_message``:
a flag such as ``--restart``), and ``notice`` says what a user must not miss on stderr."""

from __future__ import annotations

import sys
from typing import TypeVar

__all__ = ["user_error", "cli_message", "notice"]

E = TypeVar("E", bound=BaseException)


def user_error(cls: type[E], python: str, cli: str | None = None) -> E:
    """``cls(python)`` whose ``cli_message`` is ``cli`` (the same text when omitted)."""
    err = cls(python)
    err.cli_message = cli or python  # type: ignore[attr-defined]
    return err


def cli_message(err: BaseException) -> str:
    """The one-line message the command line prints for ``err``."""
    text = getattr(err, "cli_message", None) or str(err) or type(err).__name__
    return " ".join(text.split())


def notice(message: str) -> None:
    """Say something the user must not miss (a fallback, nothing left to train) on stderr, even
    when progress bars are quiet."""
    print(f"vaelab: {message}", file=sys.stderr, flush=True)
