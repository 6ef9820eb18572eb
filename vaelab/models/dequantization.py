"""Dequantization and bits per dimension (chapter 14): one scale on which every likelihood can be compared.

The data are 8-bit levels k in {0, ..., 255} per pixel, stored as x = k/255. A likelihood over the 256 levels
(the discretized logistic) gives probabilities P(x|z) <= 1, and -log P(x) is a code length. A density p on
[0, 1] (the continuous Bernoulli, a Gaussian) gives values of another kind: its log p(x) changes with the units
of x and is not bounded above. The convention used everywhere in vaelab (Theis et al. 2016):

    y = (k + u)/256,  u ~ U[0, 1)^D,    the level k spread uniformly over the bin [k/256, (k + 1)/256),
    log P(k) >= E_u[log p(y)] - D log 256,

because P(k) = integral of p over the bin = E_u[p(y)]/256^D, and Jensen's inequality. The - log 256 per
dimension is the change of scale from a density on [0, 1] to a probability of 256 levels; it makes an ELBO or
an importance-weighted bound on log p(y) a bound on the discrete log P(k), comparable in bits per dimension.
"""

from __future__ import annotations

import math

import torch
from torch.special import ndtr

from ..core.generative import Likelihood
from ..core.validation import check_positive_int
from .likelihoods import GaussianLikelihood
from .pixel_levels import LEVELS, check_8bit_levels

__all__ = ["Dequantized", "dequantize", "bits_per_dim", "dequantized_log_likelihood", "LOG_LEVELS"]

LOG_LEVELS = math.log(LEVELS)  # log 256, nats per dimension between a density on [0, 1] and 8-bit levels


def dequantize(
    x: torch.Tensor, generator: torch.Generator | None = None, shape: torch.Size | tuple[int, ...] | None = None
) -> torch.Tensor:
    """y = (k + u)/256 with k = round(255 x) and u ~ U[0, 1) per entry: a level k/255 spread over its bin
    [k/256, (k + 1)/256). x: levels k/255 of any shape; ``shape`` (default x.shape) broadcasts x to draw
    several u per image (e.g. (K, batch, D) for K importance samples). Returns ``shape``, in [0, 1)."""
    shape = x.shape if shape is None else torch.Size(shape)
    u = torch.rand(shape, dtype=x.dtype, device=x.device, generator=generator)
    return (torch.round(x * (LEVELS - 1)) + u) / LEVELS


def dequantized_log_likelihood(log_density: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """log_density - D log 256: from log p(y) of the dequantized y = (k + u)/256 on [0, 1]^D (or a bound on
    it) to a (bound on the) log-probability of the 8-bit levels, in nats. Same type and shape as log_density."""
    return log_density - check_positive_int("num_dims", num_dims) * LOG_LEVELS


def bits_per_dim(log_px: torch.Tensor | float, num_dims: int, density: bool = False) -> torch.Tensor | float:
    """-log P(x) / (D log 2): the code length of 8-bit pixels in bits per dimension (pixel).

    log_px: log P(x) in nats of the D levels k/255 (a likelihood over 256 levels, or a bound on one such as
    L_k), any shape. density=True: log_px is instead log p(y) of a density on [0, 1]^D evaluated at the
    dequantized y = (k + u)/256 (``dequantize``), and is first moved to the scale of the levels by
    ``dequantized_log_likelihood`` (- D log 256, i.e. + 8 bits per dimension). Do not pass a density evaluated
    at x = k/255 itself: it is not on either scale. ``Dequantized`` likelihoods already include the - D log 256,
    so their ELBO and L_k take density=False. Same type and shape as log_px.
    """
    check_positive_int("num_dims", num_dims)
    if density:
        log_px = dequantized_log_likelihood(log_px, num_dims)
    return -log_px / (num_dims * math.log(2.0))


def _base_cdf(base: Likelihood, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """P(Y_i <= y_i | z) per pixel under the continuous likelihood ``base``."""
    if isinstance(base, GaussianLikelihood):
        return ndtr((y - params) * torch.exp(-0.5 * base.logvar))
    if hasattr(base, "cdf"):
        return base.cdf(y, params)
    raise TypeError(
        f"Dequantized needs the CDF of its base likelihood to compute mean(), and {type(base).__name__} has no "
        "cdf(y, params) method; add one, or use ContinuousBernoulliLikelihood or GaussianLikelihood."
    )


class Dequantized(Likelihood):
    """A density p(y|z) on [0, 1] (``base``: ``ContinuousBernoulliLikelihood`` or ``GaussianLikelihood``) made a
    model of 8-bit levels by uniform dequantization (Theis et al. 2016).

    The discrete model: P(k|z) = integral of p(y|z) over the bin [k/256, (k + 1)/256), with the first bin
    extended to -inf and the last to +inf (for a Gaussian, which puts mass outside [0, 1]); ``sample`` and
    ``mean`` are those of this P. ``log_prob(x, params)`` returns

        log p((k + u)/256 | z) - D log 256,  u ~ U[0, 1)^D drawn afresh on every call (shape of params),

    a random variable whose expectation is at most log P(k|z): the ELBO and L_k computed with it are bounds
    on the discrete log-likelihood, in nats, ready for ``bits_per_dim`` (density=False). With a fresh u for each
    of the K importance samples, L_K still tends to log P(x) as K grows. ``log_density(y, params)`` is the base's
    deterministic log p(y|z). x: (batch, D) levels k/255; params: the base's, (..., batch, P D).
    """

    def __init__(self, base: Likelihood) -> None:
        super().__init__()
        if not isinstance(base, Likelihood):
            raise TypeError(
                f"base must be a vaelab Likelihood with a density on [0, 1], got {type(base).__name__}; use "
                "Dequantized(ContinuousBernoulliLikelihood()) or Dequantized(GaussianLikelihood())."
            )
        self.base = base
        self.params_per_pixel = getattr(base, "params_per_pixel", 1)

    def log_density(self, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(y|z) of the base density, summed over pixels; returns (..., batch)."""
        return self.base.log_prob(y, params)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p((k + u)/256 | z) - D log 256 for one fresh u ~ U[0, 1) per entry; returns (..., batch)."""
        shape = torch.broadcast_shapes(x.shape, params.shape[:-1] + x.shape[-1:])
        y = dequantize(x, generator, shape)
        return self.base.log_prob(y, params) - x.shape[-1] * LOG_LEVELS

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z] = (1/255) sum_{j=1}^{255} P(k >= j) = (1/255) sum_j (1 - F(j/256)) per pixel, F the base's CDF
        (the mean of what ``sample`` draws); (..., batch, D)."""
        total = None
        for j in range(1, LEVELS):
            edge = torch.full((), j / LEVELS, dtype=params.dtype, device=params.device)
            tail = 1.0 - _base_cdf(self.base, edge, params)
            total = tail if total is None else total + tail
        return total / (LEVELS - 1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x = k/255 with k = floor(256 y) clamped to [0, 255], y ~ p(y|z); (..., batch, D)."""
        y = self.base.sample(params, generator)
        return torch.floor(y * LEVELS).clamp(0, LEVELS - 1) / (LEVELS - 1)

    def check_support(self, name: str, x: torch.Tensor) -> None:
        check_8bit_levels(name, x, f"dequantized {type(self.base).__name__}")
