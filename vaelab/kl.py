"""KL(q(z|x) || p(z)) for the diagonal Gaussian posterior and the standard normal prior.

Closed form (book chapter 4, eq. kl-closed-form):
    KL(N(mu, diag(sigma^2)) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1).
The Monte Carlo estimate averages log q(z|x) - log p(z) over reparameterized samples.
"""

from __future__ import annotations

import math

import torch

from .prior import standard_normal_log_prob
from .reparameterize import reparameterize
from .validation import check_matching_shapes, check_positive_int, check_tensor

__all__ = ["kl_standard_normal", "kl_per_dimension", "kl_monte_carlo", "diagonal_gaussian_log_prob"]

_LOG_2PI = math.log(2.0 * math.pi)


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """1/2 (mu_j^2 + exp(logvar_j) - logvar_j - 1) for each latent dimension j.

    mu, logvar: (batch, latent_dim). Returns (batch, latent_dim), every entry >= 0.
    """
    check_tensor("mu", mu, min_ndim=1)
    check_tensor("logvar", logvar, min_ndim=1)
    check_matching_shapes("mu", mu, "logvar", logvar)
    # expm1(l) - l equals exp(l) - 1 - l without cancellation for small |l|.
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || p(z)) for q = N(mu, diag(exp(logvar))) and p = N(0, I), summed over latent
    dimensions. mu, logvar: (batch, latent_dim). Returns (batch,)."""
    return kl_per_dimension(mu, logvar).sum(-1)


def diagonal_gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z | mu, diag(exp(logvar))), summed over the last dimension.

    z: (..., batch, latent_dim) broadcastable against mu, logvar: (batch, latent_dim).
    Returns (..., batch).
    """
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


def kl_monte_carlo(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int = 1,
                   z: torch.Tensor | None = None) -> torch.Tensor:
    """Monte Carlo estimate (1/S) sum_s [log q(z_s|x) - log p(z_s)], z_s ~ q(z|x).

    Pass ``z`` of shape (S, batch, latent_dim) to reuse samples drawn elsewhere (e.g. the ones
    used for the reconstruction term). Unbiased for the closed form; can be negative for one
    sample. Returns (batch,).
    """
    check_positive_int("n_samples", n_samples)
    if z is None:
        z = reparameterize(mu, logvar, n_samples)
    else:
        check_tensor("z", z, ndim=3)
    return (diagonal_gaussian_log_prob(z, mu, logvar) - standard_normal_log_prob(z)).mean(0)
