"""The prior p(z) = N(0, I). It is part of the generative model and lives in ``vaelab.generative``;
this module keeps the names importable from ``vaelab.prior``."""

from __future__ import annotations

from .generative import StandardNormalPrior, standard_normal_log_prob

__all__ = ["StandardNormalPrior", "standard_normal_log_prob"]
