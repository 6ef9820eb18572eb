"""Helpers for the book's notebooks: the quick-mode switch, a one-line setup, committed benchmark results.

Every chapter reads one switch, the environment variable ``VAELAB_QUICK``: unset (a reader) means
the full settings; ``VAELAB_QUICK=1`` (CI, or a reader in a hurry) cuts epochs and data so the
chapter runs in well under a minute on a 2-core CPU. Progress bars are quiet when $CI is set.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .utils.devices import resolve_device

__all__ = ["quick_mode", "setup", "glue", "QUICK_ENV", "benchmark_results", "raw_repository_url"]

QUICK_ENV = "VAELAB_QUICK"


def quick_mode() -> bool:
    """True when $VAELAB_QUICK is set to something other than '', '0' or 'false'."""
    return os.environ.get(QUICK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def setup(seed: int = 0, device: str | torch.device = "auto") -> torch.device:
    """Seed Python, NumPy and torch, set figure defaults that fit the page, return the device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 90, "figure.figsize": (6.5, 4.0), "savefig.bbox": "tight"})
    return resolve_device(device)


def glue(name: str, value: Any, fmt: str | None = None) -> Any:
    """Store ``value`` under ``name`` for the chapter's prose, which shows it with the myst-nb role
    {glue:text}`name` (or {glue:text}`name:.2f` to format a number there); returns ``value`` unchanged.

    With myst-nb (the book's build) this calls ``myst_nb.glue(name, shown, display=False)``, where
    ``shown`` is ``format(value, fmt)`` when ``fmt`` is given (e.g. ",.0f") and ``value`` otherwise.
    Without myst-nb (Colab) it shows nothing and still returns the value, so a cell can read
    ``nll = vaelab.glue("ch14-nll", -log_px, ".2f")``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string (the glue key the prose uses), got {name!r}.")
    shown = value if fmt is None else format(value, fmt)  # a str: myst-nb shows it without its quotes
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return value
    myst_glue(name, shown, display=False)
    return value


def benchmark_results(name: str, branch: str = "main") -> dict:
    """The committed benchmark result ``benchmarks/results/<name>`` (JSON) that a chapter reads:
    from this folder or the nearest parent that has it (a clone of the repository), else, e.g. on
    Colab, downloaded from the repository named in vaelab's package metadata (pyproject.toml's
    ``[project.urls] Repository``), branch ``branch``."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        path = folder / "benchmarks" / "results" / name
        if path.is_file():
            return json.loads(path.read_text())
    url = f"{raw_repository_url(branch)}benchmarks/results/{name}"
    from urllib.request import urlopen

    try:
        with urlopen(url, timeout=30) as response:
            return json.loads(response.read())
    except OSError as err:
        raise FileNotFoundError(
            f"benchmarks/results/{name} is neither in {Path.cwd()} or a parent folder nor downloadable from "
            f"{url} ({err}); run the notebook inside a clone of the repository."
        ) from None


def raw_repository_url(branch: str = "main") -> str:
    """``https://raw.githubusercontent.com/OWNER/NAME/<branch>/`` for the repository in vaelab's metadata."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("vaelab").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip() == "Repository" and url.strip().startswith("https://github.com/"):
            return url.strip().replace("https://github.com/", "https://raw.githubusercontent.com/") + f"/{branch}/"
    raise FileNotFoundError("vaelab's package metadata names no GitHub Repository URL; install vaelab with pip.")
