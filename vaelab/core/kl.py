"""KL(q(z|x) || p(z)) for the diagonal Gaussian posterior and the standard normal prior (chapter 4).

Closed form (eq. kl-closed-form):
    KL(N(mu, diag(sigma^2)) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1);
per dimension it is ``kl_per_dimension``, which lives beside q(z|x) in ``vaelab.core.recognition``.
The Monte Carlo estimate averages log q(z|x) - log p(z) over reparameterized samples.
"""

from __future__ import annotations

import torch

from .generative import standard_normal_log_prob
from .recognition import diagonal_gaussian_log_prob, kl_per_dimension, reparameterize

__all__ = ["kl_standard_normal", "kl_per_dimension", "kl_monte_carlo", "diagonal_gaussian_log_prob"]


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || p(z)) for q = N(mu, diag(exp(logvar))) and p = N(0, I), summed over latent
    dimensions. mu, logvar: (batch, latent_dim). Returns (batch,)."""
    return kl_per_dimension(mu, logvar).sum(-1)


def kl_monte_carlo(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    n_samples: int = 1,
    z: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Monte Carlo estimate (1/S) sum_s [log q(z_s|x) - log p(z_s)], z_s ~ q(z|x).

    Pass ``z`` of shape (S, batch, latent_dim) to reuse samples drawn elsewhere (e.g. the ones
    used for the reconstruction term). Unbiased for the closed form; can be negative for one
    sample. Returns (batch,).
    """
    if z is None:
        z = reparameterize(mu, logvar, n_samples, generator)
    return (diagonal_gaussian_log_prob(z, mu, logvar) - standard_normal_log_prob(z)).mean(0)
