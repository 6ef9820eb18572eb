"""KL(q(z|x) || p(z)), looked up by the pair of types (chapter 4), as ``torch.distributions.kl_divergence``.

A closed form is registered for a pair of types with ``@register_kl(QType, PType)``; it takes (q, p) and
returns the
KL of each latent dimension, (batch, latent_dim), for a q and a p that factorize over dimensions
(their sum is the KL). The lookup follows the classes' bases, so a subclass inherits its parent's
closed form. The one registered here (eq. kl-closed-form), for q = N(mu, diag(sigma^2)) and p = N(0, I):

    KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1).

Pairs without a closed form (a flow, a mixture prior) use the Monte Carlo estimate
E_q[log q(z|x) - log p(z)] of ``vaelab.core.objectives``, which needs only ``log_prob`` and samples.
The book's functions of (mu, logvar) for p = N(0, I) are here too: ``kl_per_dimension`` and
``kl_standard_normal``.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product
from typing import Any

import torch

from .generative import StandardNormalPrior
from .recognition import DiagonalGaussian


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_j, exp(logvar_j)) || N(0, 1)) = 1/2 (mu_j^2 + exp(logvar_j) - logvar_j - 1) for each latent
    dimension j. mu, logvar: (batch, latent_dim). Returns (batch, latent_dim), every entry >= 0."""
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar)  # expm1(l) - l: no cancellation for small |l|


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || p(z)) for q = N(mu, diag(exp(logvar))) and p = N(0, I), summed over latent
    dimensions. mu, logvar: (batch, latent_dim). Returns (batch,)."""
    return kl_per_dimension(mu, logvar).sum(-1)


_CLOSED_FORMS: dict[tuple[type, type], Callable[[Any, Any], torch.Tensor]] = {}


def register_kl(q_type: type, p_type: type) -> Callable:
    """Decorator: ``fn(q, p) -> (batch, latent_dim)`` is the closed-form KL of each dimension for this pair."""

    def register(fn: Callable[[Any, Any], torch.Tensor]) -> Callable[[Any, Any], torch.Tensor]:
        _CLOSED_FORMS[q_type, p_type] = fn
        return fn

    return register


def closed_form_kl(q: Any, p: Any) -> Callable[[Any, Any], torch.Tensor] | None:
    """The closed form registered for the types of q and p (or their bases), None where there is none."""
    pairs = product(type(q).__mro__, type(p).__mro__)
    return next((_CLOSED_FORMS[pair] for pair in pairs if pair in _CLOSED_FORMS), None)


@register_kl(DiagonalGaussian, StandardNormalPrior)
def _kl_diagonal_gaussian_standard_normal(q: DiagonalGaussian, p: StandardNormalPrior) -> torch.Tensor:
    return kl_per_dimension(q.mu, q.logvar)
