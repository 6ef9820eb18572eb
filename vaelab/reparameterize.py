"""The reparameterization trick z = mu + sigma * eps, eps ~ N(0, I) (chapter 5). It is how q(z|x) draws
samples and lives in ``vaelab.recognition``; this module keeps the name importable from here."""

from __future__ import annotations

from .recognition import reparameterize

__all__ = ["reparameterize"]
