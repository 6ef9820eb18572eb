"""The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019, chapter 14): the density on [0, 1] that the Bernoulli
'likelihood' of grey pixels becomes once it is normalized. Conventions of x and params: ``pixel_levels``."""

from __future__ import annotations

import math

import torch

from ..core.generative import Likelihood
from ..core.softplus import softplus
from .pixel_levels import check_grey_pixels

__all__ = [
    "ContinuousBernoulliLikelihood",
    "continuous_bernoulli_log_normalizer",
    "continuous_bernoulli_mean",
    "continuous_bernoulli_cdf",
]

_SMALL_LOGIT = 0.1  # below |l| = 0.1 the continuous Bernoulli uses Taylor series (rho within 0.025 of 1/2)
# log C = log 2 + sum_n c_n l^(2n), c_n = (2^(2n) - 2) B_(2n) / (2n (2n)!); the l^10 term is below 1e-16 at |l| < 0.1
_LOG_C_TAYLOR = (1 / 12, -7 / 1440, 31 / 90720, -127 / 4838400)
# E[x] = 1/2 + l/12 - l^3/720 + l^5/30240 - l^7/1209600 (the Bernoulli-number series of 1/(1 - e^-l) - 1/l)
_MEAN_TAYLOR = (1 / 12, -1 / 720, 1 / 30240, -1 / 1209600)


def _even_series(l2: torch.Tensor, coefficients: tuple[float, ...]) -> torch.Tensor:
    """sum_n coefficients[n] * l2^n for n = 0, 1, ... (Horner's rule)."""
    total = torch.zeros_like(l2)
    for c in reversed(coefficients):
        total = total * l2 + c
    return total


def continuous_bernoulli_log_normalizer(logits: torch.Tensor) -> torch.Tensor:
    """log C(rho) for rho = sigmoid(l), elementwise; the continuous Bernoulli's normalizing constant

        C(rho) = 2 artanh(1 - 2 rho) / (1 - 2 rho)  (C(1/2) = 2),  which in the logit l is  C = l / tanh(l/2).

    For |l| >= 0.1: log C = log|l| - log tanh(|l|/2), with log tanh(a/2) = log(-expm1(-a)) - log1p(e^-a)
    (accurate for rho near 0 and 1, where log C grows like log|l|). For |l| < 0.1 (rho near 1/2) the
    difference of two nearly equal logarithms would lose the gradient (l/6 from 1/l - 1/sinh l), so the
    Taylor series log C = log 2 + l^2/12 - 7 l^4/1440 + 31 l^6/90720 - 127 l^8/4838400 is used (its first
    omitted term is below 1e-16). Same shape as ``logits``.
    """
    small = logits.abs() < _SMALL_LOGIT
    a = torch.where(small, torch.ones_like(logits), logits.abs())  # never 0: finite gradients on both branches
    direct = torch.log(a) - torch.log(-torch.expm1(-a)) + torch.log1p(torch.exp(-a))
    l2 = torch.where(small, logits, torch.zeros_like(logits)).square()
    taylor = math.log(2.0) + l2 * _even_series(l2, _LOG_C_TAYLOR)
    return torch.where(small, taylor, direct)


def continuous_bernoulli_mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] = rho/(2 rho - 1) + 1/(2 artanh(1 - 2 rho)) = 1/(1 - e^-l) - 1/l for rho = sigmoid(l),
    elementwise (1/2 at l = 0; the Taylor series 1/2 + l/12 - l^3/720 + ... for |l| < 0.1). Same shape."""
    small = logits.abs() < _SMALL_LOGIT
    safe = torch.where(small, torch.ones_like(logits), logits)
    a = safe.abs()
    t = -1.0 / torch.expm1(-a)  # 1/(1 - e^-|l|), in [1, 11): no overflow for either sign (nor in the gradient)
    direct = torch.where(safe > 0, t, -torch.exp(-a) * t) - 1.0 / safe  # 1/(1 - e^-l) = -e^l/(1 - e^l) for l < 0
    near = torch.where(small, logits, torch.zeros_like(logits))
    taylor = 0.5 + near * _even_series(near.square(), _MEAN_TAYLOR)
    return torch.where(small, taylor, direct)


def continuous_bernoulli_cdf(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """P(X <= x) = (e^(l x) - 1)/(e^l - 1) for the continuous Bernoulli with logit l, x clamped to [0, 1].

    Written with expm1 of a non-positive argument only (for l > 0 through the mirror F_l(x) = 1 - F_{-l}(1 - x)),
    so nothing overflows; x + l x (x - 1)/2 for |l| < 1e-6. Broadcast shape of x and logits.
    """
    x = x.clamp(0.0, 1.0)
    small = logits.abs() < 1e-6
    neg = -torch.where(small, torch.ones_like(logits), logits.abs())  # -|l|, never 0
    mirrored = logits > 0
    t = torch.where(mirrored, 1.0 - x, x)
    lower = torch.expm1(neg * t) / torch.expm1(neg)  # F_{-|l|}(t)
    direct = torch.where(mirrored, 1.0 - lower, lower)
    return torch.where(small, x + logits * x * (x - 1.0) / 2.0, direct)


class ContinuousBernoulliLikelihood(Likelihood):
    """p(x|z) = prod_i CB(x_i | rho_i), the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019); the decoder
    outputs the logits l, rho = sigmoid(l).

        CB(x | rho) = C(rho) rho^x (1 - rho)^(1 - x),  x in [0, 1],
        log p(x|z) = sum_i [x_i l_i - softplus(l_i) + log C(rho_i)].

    The first two terms are the Bernoulli 'likelihood' applied to grey pixels; the normalizer C (2 at rho = 1/2,
    growing without bound as rho -> 0 or 1; ``continuous_bernoulli_log_normalizer``) makes it a density on [0, 1].
    It is a density, not a probability of 8-bit levels: wrap it in ``vaelab.models.dequantization.Dequantized``
    to compare it in bits per dimension. x: (batch, D) in [0, 1]; params: (..., batch, D) logits.
    """

    params_per_pixel = 1

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """sum_i log CB(x_i | sigmoid(l_i)); returns (..., batch)."""
        return (x * params - softplus(params) + continuous_bernoulli_log_normalizer(params)).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z] = 1/(1 - e^-l) - 1/l per pixel (not rho: the mean is pulled toward 1/2). Same shape as params."""
        return continuous_bernoulli_mean(params)

    def cdf(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """P(X_i <= x_i | z) per pixel; the broadcast shape of x and params."""
        return continuous_bernoulli_cdf(x, params)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x|z) by the inverse CDF, x = log1p(u (e^l - 1))/l with u ~ U(0, 1) (mirrored for l > 0, u for
        |l| < 1e-6). Same shape as params, values in [0, 1]."""
        u = torch.rand(params.shape, dtype=params.dtype, device=params.device, generator=generator)
        small = params.abs() < 1e-6
        neg = -torch.where(small, torch.ones_like(params), params.abs())
        mirrored = params > 0
        v = torch.where(mirrored, 1.0 - u, u)
        t = (torch.log1p(v * torch.expm1(neg)) / neg).clamp(0.0, 1.0)  # the inverse of F_{-|l|} (v = 1 gives inf)
        x = torch.where(mirrored, 1.0 - t, t)
        return torch.where(small, u, x).clamp(0.0, 1.0)

    def check_support(self, name: str, x: torch.Tensor) -> None:
        check_grey_pixels(name, x, "continuous Bernoulli")
