"""The prior p(z) = prod_j N(z_j | 0, 1): fixed, with no parameters.

It is an ``nn.Module`` so that a learnable prior can replace it later with the same interface
(``log_prob`` and ``sample``); the standard normal prior holds no state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .validation import check_positive_int, check_tensor

__all__ = ["StandardNormalPrior", "standard_normal_log_prob"]

_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z | 0, I) = -1/2 sum_j (z_j^2 + log 2 pi), summed over the last dimension.

    z: (..., latent_dim). Returns (...).
    """
    check_tensor("z", z, min_ndim=1)
    return -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) over ``latent_dim`` dimensions."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z of shape (..., latent_dim); returns (...)."""
        if z.shape[-1:] != (self.latent_dim,):
            raise ValueError(
                f"z has shape {tuple(z.shape)} but the prior has latent_dim={self.latent_dim}; "
                "its last dimension must equal latent_dim."
            )
        return standard_normal_log_prob(z)

    def sample(self, n: int, device: torch.device | str | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws z ~ N(0, I); returns (n, latent_dim)."""
        check_positive_int("n", n)
        return torch.randn(n, self.latent_dim, device=device, generator=generator)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"
