"""Priors beyond N(0, I): p(z) is part of the generative model, and it can be learned (chapter 12).

A prior is a module with ``log_prob(z)`` (z: (..., latent_dim) -> (...)), ``sample(n, device, generator)``
and ``latent_dim``; every bound in vaelab evaluates the model's own prior, and ``fit`` trains its
parameters with the rest of the model. Where KL(q(z|x) || p(z)) has a closed form it is registered here
with ``vaelab.core.kl.register_kl``; the ELBO then uses it (kl="auto"), and the Monte Carlo estimate
otherwise.

``GaussianPrior``: p(z) = N(m, diag(s^2)) with learnable m and log s^2 (initialized to N(0, I)), and

    KL(N(mu, diag(sigma^2)) || N(m, diag(s^2)))
        = 1/2 sum_j [log s_j^2 - log sigma_j^2 + (sigma_j^2 + (mu_j - m_j)^2) / s_j^2 - 1].
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.kl import register_kl
from ..core.recognition import DiagonalGaussian, diagonal_gaussian_log_prob, gaussian_log_density
from ..core.validation import check_positive_int

__all__ = ["GaussianPrior", "PRIORS"]

PRIORS = ("standard_normal", "gaussian")  # the names VAEConfig and the CLI know


class GaussianPrior(nn.Module):
    """p(z) = N(m, diag(exp(logvar))) over ``latent_dim`` dimensions, with m and logvar learned
    (``learnable=True``, the default) or fixed; it starts as N(0, I)."""

    def __init__(self, latent_dim: int, learnable: bool = True) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.learnable = learnable
        mean, logvar = torch.zeros(latent_dim), torch.zeros(latent_dim)
        if learnable:
            self.mean, self.logvar = nn.Parameter(mean), nn.Parameter(logvar)
        else:
            self.register_buffer("mean", mean)
            self.register_buffer("logvar", logvar)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z: (..., latent_dim). Returns (...)."""
        return diagonal_gaussian_log_prob(z, self.mean, self.logvar)

    def log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z_j | m_j, s_j^2) of each dimension (p factorizes), (..., latent_dim)."""
        return gaussian_log_density(z, self.mean, self.logvar)

    def sample(
        self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n draws z = m + s * eps, (n, latent_dim), on ``device`` (default: the prior's) in its dtype."""
        check_positive_int("n", n)
        device = self.mean.device if device is None else device
        eps = torch.randn(n, self.latent_dim, device=device, dtype=self.mean.dtype, generator=generator)
        return self.mean.to(device) + torch.exp(0.5 * self.logvar.to(device)) * eps

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, learnable={self.learnable}"


@register_kl(DiagonalGaussian, GaussianPrior)
def _kl_diagonal_gaussian_gaussian(q: DiagonalGaussian, p: GaussianPrior) -> torch.Tensor:
    """The closed form above, (batch, latent_dim)."""
    log_ratio = q.logvar - p.logvar  # log sigma_j^2 / s_j^2; expm1(r) - r has no cancellation near r = 0
    return 0.5 * (torch.expm1(log_ratio) - log_ratio + (q.mu - p.mean).pow(2) * torch.exp(-p.logvar))
