"""The Gaussian likelihood p(x|z) = prod_i N(x_i | mu_i, sigma^2) (chapter 6), and the book's names of
both likelihoods.

Swapping the likelihood while keeping the decoder is chapter 6: the decoder's outputs become the means
mu, and log p(x|z) = sum_i log N(x_i | mu_i, exp(logvar)). The Bernoulli likelihood the other chapters
train with is on the reading path, in ``vaelab.core.generative``; this module imports it so that both are
importable from ``vaelab.models.likelihoods``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.generative import BernoulliLikelihood, Likelihood, bernoulli_log_prob
from ..core.recognition import gaussian_log_density
from ..core.validation import check_logvar_range

__all__ = [
    "Likelihood",
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "bernoulli_log_prob",
    "gaussian_log_prob",
    "GAUSSIAN_LOGVAR_MAX",
]

GAUSSIAN_LOGVAR_MAX = 10.0  # sigma^2 <= 2.2e4: beyond it a pixel likelihood is flat; exp(-logvar) stays normal


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor | float) -> torch.Tensor:
    """sum_i log N(x_i | mean_i, exp(logvar)) over the last dimension. x: (..., D); mean, logvar: broadcastable."""
    return gaussian_log_density(x, mean, logvar).sum(-1)


class GaussianLikelihood(Likelihood):
    """p(x|z) = prod_i N(x_i | mu_i, sigma^2); the decoder outputs the means mu.

    sigma^2 = exp(logvar), one number for all pixels: fixed (``learn_variance=False``; logvar = 0 is the
    classic choice, where -log p(x|z) = 1/2 ||x - mu||^2 + D/2 log 2 pi) or learned. ``logvar`` must lie
    in [logvar_min, 10]; a learned one is kept there (clamped) so that exp never under- or overflows.
    """

    def __init__(self, logvar: float = 0.0, learn_variance: bool = False, logvar_min: float = -9.0) -> None:
        super().__init__()
        check_logvar_range(logvar, logvar_min, GAUSSIAN_LOGVAR_MAX)
        self.learn_variance = learn_variance
        self.logvar_min = logvar_min
        value = torch.tensor(float(logvar))
        if learn_variance:
            self.raw_logvar = nn.Parameter(value)
        else:
            self.register_buffer("raw_logvar", value)

    @property
    def logvar(self) -> torch.Tensor:
        """The global log sigma^2 (a 0-d tensor)."""
        return self.raw_logvar.clamp(self.logvar_min, GAUSSIAN_LOGVAR_MAX)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(x, params, self.logvar)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(params.shape, dtype=params.dtype, device=params.device, generator=generator)
        return params + torch.exp(0.5 * self.logvar) * noise

    def extra_repr(self) -> str:
        return f"learn_variance={self.learn_variance}"
