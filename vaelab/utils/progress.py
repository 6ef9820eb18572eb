"""Progress bars: a tqdm widget in notebooks that have ipywidgets (Colab, JupyterLab), plain text
elsewhere, and none when $CI or $VAELAB_QUIET is set.

``tqdm.auto`` warns on import in a notebook without ipywidgets (and the warning carries a local
path into saved outputs), so it is imported only where the widget can actually be shown.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar", "quiet_by_default"]


def quiet_by_default() -> bool:
    """True when $CI or $VAELAB_QUIET (other than '0') is set: bars are off unless asked for."""
    return bool(os.environ.get("CI")) or os.environ.get("VAELAB_QUIET", "") not in ("", "0")


def progress_bar(iterable: Iterable | None = None, enabled: bool | None = None, **kwargs: Any):
    """A tqdm bar over ``iterable`` (or of ``total=`` steps); ``enabled=None`` means "unless
    quiet_by_default()"."""
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    disable = quiet_by_default() if enabled is None else not enabled
    return tqdm(iterable, disable=disable, **kwargs)
