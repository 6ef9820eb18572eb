"""Helpers for the book's notebooks: the quick-mode switch and a one-line setup.

Every chapter reads one switch, the environment variable ``VAELAB_QUICK``: unset (a reader) means
the full settings; ``VAELAB_QUICK=1`` (CI, or a reader in a hurry) cuts epochs and data so the
chapter runs in well under a minute on a 2-core CPU. Progress bars are quiet when $CI is set.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .devices import resolve_device

__all__ = ["quick_mode", "setup", "QUICK_ENV"]

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
