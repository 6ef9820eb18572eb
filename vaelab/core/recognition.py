"""The recognition model q_phi(z|x) = N(mu_phi(x), diag(sigma^2_phi(x))) (chapters 4 and 5).

An encoder maps flattened images x: (batch, input_dim) to (mu, logvar), each (batch, latent_dim),
with logvar = log sigma^2; it knows nothing about the likelihood. ``DiagonalGaussian(mu, logvar)``
is q(z|x) itself: ``rsample`` draws reparameterized samples and ``log_prob`` is log q(z|x) (its KL to
the prior is looked up in ``vaelab.core.kl``). Every Gaussian log-density in vaelab (log q, log p(z),
the Gaussian likelihood) is ``gaussian_log_density`` below.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .validation import check_positive_int

LOG_2PI = math.log(2.0 * math.pi)
LOGVAR_MIN = -30.0  # the encoder's log-variance is clamped here, so that exp(logvar) can neither
LOGVAR_MAX = 20.0  # underflow to 0 nor overflow in float32 (a guard against a too-large learning rate)


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor | float, logvar: torch.Tensor | float) -> torch.Tensor:
    """log N(x | mean, exp(logvar)) = -1/2 [(x - mean)^2 / exp(logvar) + logvar + log 2 pi], elementwise
    (arguments broadcast; a float logvar is a fixed variance)."""
    precision = torch.exp(-torch.as_tensor(logvar, dtype=x.dtype, device=x.device))
    return -0.5 * ((x - mean).pow(2) * precision + logvar + LOG_2PI)


def diagonal_gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z | mu, diag(exp(logvar))), summed over the last dimension.

    z: (..., batch, latent_dim) broadcastable against mu, logvar: (batch, latent_dim). Returns (..., batch).
    """
    return gaussian_log_density(z, mu, logvar).sum(-1)


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, n_samples: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I): a draw of N(mu, diag(exp(logvar))) through which
    gradients flow to mu and logvar (chapter 5).

    mu, logvar: (batch, latent_dim). Returns (batch, latent_dim) when ``n_samples`` is None, else
    (n_samples, batch, latent_dim).
    """
    shape = mu.shape if n_samples is None else (n_samples, *mu.shape)
    eps = torch.randn(shape, dtype=mu.dtype, device=mu.device, generator=generator)
    return mu + torch.exp(0.5 * logvar) * eps


class DiagonalGaussian(NamedTuple):
    """q(z|x) = N(mu, diag(exp(logvar))), mu and logvar: (batch, latent_dim).

    Any other recognition distribution only needs ``rsample_with_log_prob`` for the objectives (and a
    closed form registered in ``vaelab.core.kl`` for the analytic KL): a normalizing flow
    (``vaelab.models.flows``) has no ``log_prob`` of an arbitrary z, but knows log q of its own draws.
    """

    mu: torch.Tensor
    logvar: torch.Tensor

    def rsample(self, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n_samples reparameterized draws, (n_samples, batch, latent_dim)."""
        return reparameterize(self.mu, self.logvar, n_samples, generator)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) for z: (..., batch, latent_dim). Returns (..., batch)."""
        return diagonal_gaussian_log_prob(z, self.mu, self.logvar)

    def log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z_j|x) of each dimension (q factorizes), (..., batch, latent_dim)."""
        return gaussian_log_density(z, self.mu, self.logvar)

    def rsample_with_log_prob(
        self, n_samples: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n_samples reparameterized draws z, (n_samples, batch, latent_dim), and log q(z|x), (n_samples, batch)."""
        z = self.rsample(n_samples, generator)
        return z, self.log_prob(z)


class GaussianEncoder(nn.Module):
    """Base class: subclasses implement ``features(x) -> h`` and set ``input_dim``, ``latent_dim`` and
    ``head``, a Linear layer with 2 * latent_dim outputs split into (mu, logvar)."""

    input_dim: int
    latent_dim: int
    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, input_dim) -> (mu, logvar), each (batch, latent_dim)."""
        mu, logvar = self.head(self.features(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


class MLPEncoder(GaussianEncoder):
    """input_dim -> hidden_dim (ReLU) -> (mu, logvar). Kingma and Welling (2013) used one tanh hidden layer of
    500 units (trained with Adagrad); the 784-400-20 ReLU sizes are those of PyTorch's examples VAE."""

    def __init__(self, input_dim: int = 784, hidden_dim: int = 400, latent_dim: int = 20) -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.hidden = nn.Linear(input_dim, check_positive_int("hidden_dim", hidden_dim))
        self.head = nn.Linear(hidden_dim, 2 * latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x))
