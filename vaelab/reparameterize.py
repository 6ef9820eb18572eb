"""The reparameterization trick: z = mu + sigma * eps with eps ~ N(0, I).

Writing the sample as a deterministic, differentiable function of (mu, log sigma^2) and
parameter-free noise lets gradients of E_q[f(z)] flow to the encoder (book chapter 5).
"""

from __future__ import annotations

import torch

from .validation import check_matching_shapes, check_positive_int, check_tensor

__all__ = ["reparameterize"]


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw z ~ N(mu, diag(exp(logvar))) as z = mu + exp(logvar / 2) * eps.

    mu, logvar: (batch, latent_dim). Returns (batch, latent_dim) when ``n_samples`` is None,
    else (n_samples, batch, latent_dim). Gradients flow to ``mu`` and ``logvar``.
    """
    check_tensor("mu", mu, min_ndim=1)
    check_tensor("logvar", logvar, min_ndim=1)
    check_matching_shapes("mu", mu, "logvar", logvar)  # shapes and devices
    shape = mu.shape if n_samples is None else (check_positive_int("n_samples", n_samples), *mu.shape)
    eps = torch.randn(shape, dtype=mu.dtype, device=mu.device, generator=generator)
    return mu + torch.exp(0.5 * logvar) * eps
