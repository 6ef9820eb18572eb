"""The generative model p_theta(x, z) = p(z) p_theta(x|z) (chapter 4).

* The prior p(z) = N(0, I): ``StandardNormalPrior``.
* A decoder maps codes z: (..., latent_dim) to the parameters of p(x|z), (..., D): Bernoulli
  logits or Gaussian means. It knows nothing about q(z|x).
* A likelihood turns those parameters and the data into log p(x|z), summed over pixels:
  - Bernoulli: log p(x|z) = sum_i [x_i log lambda_i + (1 - x_i) log(1 - lambda_i)] with
    lambda = sigmoid(l), which is sum_i [x_i l_i - softplus(l_i)] for the logits l. It is a
    normalized likelihood only for binary x; on grey pixels in [0, 1] it is the continuous
    Bernoulli without its normalizer, *not* a log-likelihood (chapter 8 explains the difference).
  - Gaussian: log p(x|z) = sum_i log N(x_i | mu_i, sigma^2), with sigma^2 = exp(logvar) fixed
    (default 1) or learned. Swapping the likelihood while keeping the decoder is chapter 6, and the
    Gaussian likelihood lives there, in ``vaelab.models.likelihoods``.
"""

from __future__ import annotations

import torch
from torch import nn

from .recognition import gaussian_log_density
from .softplus import softplus
from .validation import check_finite, check_positive_int, check_unit_interval


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z | 0, I) = -1/2 sum_j (z_j^2 + log 2 pi) over the last dimension. z: (..., latent_dim) -> (...)."""
    return gaussian_log_density(z, 0.0, 0.0).sum(-1)


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) over ``latent_dim`` dimensions. A module without parameters, so that a learnable prior
    can replace it with the same interface (``log_prob``, ``sample``); its draws follow the model's
    device and dtype (``model.double()`` gives float64 draws)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.register_buffer("_like", torch.empty(0), persistent=False)  # moves with .to() and .double()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z: (..., latent_dim). Returns (...)."""
        return standard_normal_log_prob(z)

    def log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z_j | 0, 1) of each dimension (p factorizes), (..., latent_dim)."""
        return gaussian_log_density(z, 0.0, 0.0)

    def sample(
        self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n draws z ~ N(0, I), (n, latent_dim), on ``device`` (default: the prior's) in the prior's dtype."""
        check_positive_int("n", n)
        device = self._like.device if device is None else device
        return torch.randn(n, self.latent_dim, device=device, dtype=self._like.dtype, generator=generator)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"


class MLPDecoder(nn.Module):
    """latent_dim -> hidden_dim (ReLU) -> output_dim likelihood parameters (the MLPEncoder's mirror)."""

    def __init__(self, latent_dim: int = 20, hidden_dim: int = 400, output_dim: int = 784) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.hidden = nn.Linear(latent_dim, check_positive_int("hidden_dim", hidden_dim))
        self.out = nn.Linear(hidden_dim, output_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (..., latent_dim) -> likelihood parameters (..., output_dim)."""
        return self.out(torch.relu(self.hidden(z)))


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum_i log Bernoulli(x_i | sigmoid(l_i)) = sum_i [x_i l_i - softplus(l_i)] over the last dimension.

    x: (..., D) in [0, 1]; logits: broadcastable with x. Returns the broadcast shape without D.
    softplus(l) = log(1 + e^l) is ``vaelab.core.softplus.softplus``: accurate for any l (no overflow, no
    threshold), and its gradient is sigmoid(l).
    """
    return (x * logits - softplus(logits)).sum(-1)


class Likelihood(nn.Module):
    """p(x|z) given the decoder's output ``params``: ``log_prob(x, params)``, ``mean(params)``, ``sample(params)``.

    x: (batch, D); params: (..., batch, D); log_prob returns (..., batch).
    """

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z], the image a decoder 'draws'. Same shape as params."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x|z). Same shape as params."""
        raise NotImplementedError

    def check_support(self, name: str, x: torch.Tensor) -> None:
        """Raise a one-sentence ValueError if x lies outside the likelihood's support (here: not finite)."""
        check_finite(name, x)


class BernoulliLikelihood(Likelihood):
    """p(x|z) = prod_i Bernoulli(x_i | sigmoid(l_i)); the decoder outputs the logits l."""

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_prob(x, params)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(params), generator=generator)

    def check_support(self, name: str, x: torch.Tensor) -> None:
        check_unit_interval(name, x)  # [0, 1]: binary pixels, or grey ones (chapter 8 says what that means)
