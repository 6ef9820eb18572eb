"""Likelihoods for grey pixels (chapter 14): the continuous Bernoulli, and the discretized logistic and its
mixture over the 256 levels of an 8-bit pixel.

Conventions shared by all of them:
* x: (batch, D) grey pixels in [0, 1]; an 8-bit level k in {0, ..., 255} is stored as x = k/255 (what
  ``vaelab.load_mnist`` and ``vaelab.load_fashion_mnist`` return with ``binarization="none"``).
* params: (..., batch, P * D), the decoder's output; P = ``params_per_pixel`` (1 for the continuous
  Bernoulli, 2 for the discretized logistic, 3 M for a mixture of M), so a decoder for D pixels needs
  ``output_dim = likelihood.params_per_pixel * D``.
* log_prob(x, params) returns (..., batch): log p(x|z) summed over the D pixels, in nats.

The continuous Bernoulli is a density on [0, 1]; the discretized logistics are probabilities of the 256
levels, so their -log p(x|z) converts to bits per dimension directly (``vaelab.models.dequantization``),
while a density must first go through dequantization.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.generative import Likelihood
from ..core.softplus import softplus
from ..core.validation import check_finite, check_positive_int

__all__ = [
    "ContinuousBernoulliLikelihood",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixtureLikelihood",
    "continuous_bernoulli_log_normalizer",
    "continuous_bernoulli_mean",
    "continuous_bernoulli_cdf",
    "discretized_logistic_log_prob",
    "check_grey_pixels",
    "check_8bit_levels",
    "LEVELS",
]

LEVELS = 256  # levels of an 8-bit pixel; level k is stored as k / (LEVELS - 1)
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


def check_grey_pixels(name: str, x: torch.Tensor, likelihood: str) -> None:
    """Raise a one-sentence ValueError unless ``x`` is finite and lies in [0, 1]."""
    check_finite(name, x)
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    if lo < 0 or hi > 1:
        outside = int(((x < 0) | (x > 1)).sum())
        fix = "did you forget to divide by 255? use x / 255" if hi > 1.5 else "clip them with x.clamp(0, 1)"
        raise ValueError(
            f"{name} must lie in [0, 1] for a {likelihood} likelihood, but {outside} of {x.numel()} values are "
            f"outside it (smallest {lo.item():.6g}, largest {hi.item():.6g}); {fix}."
        )


def check_8bit_levels(name: str, x: torch.Tensor, likelihood: str) -> None:
    """Raise a one-sentence ValueError unless ``x`` holds 8-bit grey levels k/255, k = 0, ..., 255 (to 1e-3 of
    a level), the support of a likelihood over the 256 levels."""
    check_grey_pixels(name, x, likelihood)
    scaled = x.detach() * (LEVELS - 1)
    off = (scaled - scaled.round()).abs() > 1e-3
    if bool(off.any()):
        first = x.detach().flatten()[off.flatten().nonzero()[0, 0]].item()
        raise ValueError(
            f"{name} must hold 8-bit grey levels k/255 for a {likelihood} likelihood, but {int(off.sum())} of "
            f"{x.numel()} values lie between levels (the first is {first:.6g}); load grey images with "
            "binarization='none', or round them with torch.round(x * 255) / 255."
        )


# ----------------------------------------------------------------------------------------------------------
# The continuous Bernoulli


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

    The first two terms are the Bernoulli 'likelihood' applied to grey pixels; log C (from 2 at rho = 1/2 to
    infinity at rho = 0 or 1, see ``continuous_bernoulli_log_normalizer``) makes it a density on [0, 1].
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
        t = torch.log1p(v * torch.expm1(neg)) / neg  # the inverse of F_{-|l|}
        x = torch.where(mirrored, 1.0 - t, t)
        return torch.where(small, u, x).clamp(0.0, 1.0)

    def check_support(self, name: str, x: torch.Tensor) -> None:
        check_grey_pixels(name, x, "continuous Bernoulli")


# ----------------------------------------------------------------------------------------------------------
# The discretized logistic and its mixture (PixelCNN++, Salimans et al. 2017)


def discretized_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, levels: int = LEVELS
) -> torch.Tensor:
    """log P(x_i) per pixel for a logistic(mean, e^log_scale) discretized to ``levels`` grey levels.

    Level k is stored as x = k/(levels - 1) and owns the bin [x - h, x + h], h = 1/(2 (levels - 1)); the first
    bin extends to -inf and the last to +inf, so the levels' probabilities sum to 1. With a = (x + h - mean)/s
    and b = (x - h - mean)/s,

        P(k) = sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - e^-(a - b)),

    and log P = logsigmoid(a) + logsigmoid(-b) + log(-expm1(-(a - b))), with a - b = 2h/s formed directly.
    Each term is accurate for any a, b (far in either tail, and for bins far narrower than the scale), so
    PixelCNN++'s fallback to the density times the bin width for tiny cdf differences is not needed. The edge
    bins drop the term that involves infinity: log P(0) = logsigmoid(a), log P(levels - 1) = logsigmoid(-b).
    Returns the broadcast shape of the arguments (nothing is summed).
    """
    inv_scale = torch.exp(-log_scale)
    half = 0.5 / (levels - 1)
    centered = x - mean
    a = (centered + half) * inv_scale
    b = (centered - half) * inv_scale
    bottom = x < half  # level 0
    top = x > 1.0 - half  # level levels - 1
    zero = torch.zeros((), dtype=a.dtype, device=a.device)
    upper = torch.where(top, zero, F.logsigmoid(a))
    lower = torch.where(bottom, zero, F.logsigmoid(-b))
    width = torch.where(bottom | top, zero, torch.log(-torch.expm1(-2.0 * half * inv_scale)))
    return upper + lower + width


def _logistic_level_mean(mean: torch.Tensor, log_scale: torch.Tensor, levels: int) -> torch.Tensor:
    """E[x] = (1/(levels - 1)) sum_{j=1}^{levels-1} P(k >= j) = (1/(levels - 1)) sum_j sigmoid((mean - e_j)/s),
    e_j = (j - 1/2)/(levels - 1) the edge between levels j - 1 and j. One pass per edge (memory of one input)."""
    inv_scale = torch.exp(-log_scale)
    total = torch.zeros_like(mean * inv_scale)
    for j in range(1, levels):
        total = total + torch.sigmoid((mean - (j - 0.5) / (levels - 1)) * inv_scale)
    return total / (levels - 1)


def _sample_logistic_levels(
    mean: torch.Tensor, log_scale: torch.Tensor, levels: int, generator: torch.Generator | None
) -> torch.Tensor:
    """y = mean + s log(u/(1 - u)), rounded to the nearest level k/(levels - 1), k clamped to [0, levels - 1]:
    exactly the bins of ``discretized_logistic_log_prob``."""
    tiny = torch.finfo(mean.dtype).tiny
    u = torch.rand(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator).clamp(tiny, 1.0 - 1e-7)
    y = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    k = torch.round(y * (levels - 1)).clamp(0, levels - 1)
    return k / (levels - 1)


class DiscretizedLogisticLikelihood(Likelihood):
    """p(x|z) = prod_i P(x_i | mu_i, s_i), a logistic with mean mu_i and scale s_i discretized to the 256 levels
    (``discretized_logistic_log_prob``: bins of width 1/255 around each level k/255, edge bins to +-inf).

    params: (..., batch, 2 D), read as (..., batch, 2, D): params[..., 0, :] the means mu (on the [0, 1] scale
    of x), params[..., 1, :] the log-scales log s, clamped to [log_scale_min, log_scale_max] (PixelCNN++ clamps
    at -7 on its [-1, 1] scale; at the default -8 the most likely bin can hold 0.994 of the mass, and beyond
    +5 the logistic is flat over [0, 1]). x: (batch, D) levels k/255. log_prob returns (..., batch).
    """

    params_per_pixel = 2

    def __init__(self, log_scale_min: float = -8.0, log_scale_max: float = 5.0) -> None:
        super().__init__()
        if not log_scale_min < log_scale_max:
            raise ValueError(
                f"log_scale_min must be below log_scale_max, got {log_scale_min} and {log_scale_max}; "
                "keep the defaults -8 and 5."
            )
        self.log_scale_min = float(log_scale_min)
        self.log_scale_max = float(log_scale_max)

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, clamped log-scales), each (..., batch, D), from params (..., batch, 2 D)."""
        if params.shape[-1] % 2:
            raise ValueError(
                f"params must have 2 D entries per example (means, log-scales) for a discretized logistic, got "
                f"{params.shape[-1]}; give the decoder output_dim = 2 * D."
            )
        mean, log_scale = params.unflatten(-1, (2, -1)).unbind(-2)
        return mean, log_scale.clamp(self.log_scale_min, self.log_scale_max)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """sum_i log P(x_i | mu_i, s_i); returns (..., batch)."""
        mean, log_scale = self.split(params)
        return discretized_logistic_log_prob(x, mean, log_scale).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z] = sum_k (k/255) P(k) per pixel, (..., batch, D) (not mu: the edge bins pull it inward)."""
        return _logistic_level_mean(*self.split(params), LEVELS)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x|z): levels k/255, (..., batch, D)."""
        return _sample_logistic_levels(*self.split(params), LEVELS, generator)

    def check_support(self, name: str, x: torch.Tensor) -> None:
        check_8bit_levels(name, x, "discretized logistic")

    def extra_repr(self) -> str:
        return f"log_scale_min={self.log_scale_min}, log_scale_max={self.log_scale_max}"


class DiscretizedLogisticMixtureLikelihood(DiscretizedLogisticLikelihood):
    """p(x|z) = prod_i sum_m pi_{m,i} P(x_i | mu_{m,i}, s_{m,i}): a mixture of M discretized logistics per pixel
    (PixelCNN++'s likelihood for one grey channel), pi_{., i} = softmax of the logit weights over m.

    params: (..., batch, 3 M D), read as (..., batch, 3, M, D): params[..., 0, m, :] the logit weights,
    params[..., 1, m, :] the means, params[..., 2, m, :] the log-scales (clamped as in the single logistic).
    The decoder's output layer is 3 M times as wide as a Bernoulli decoder's. log_prob returns (..., batch).
    """

    def __init__(self, num_components: int = 5, log_scale_min: float = -8.0, log_scale_max: float = 5.0) -> None:
        super().__init__(log_scale_min, log_scale_max)
        self.num_components = check_positive_int("num_components", num_components)
        self.params_per_pixel = 3 * num_components

    def split_mixture(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log pi, means, clamped log-scales), each (..., batch, M, D), from params (..., batch, 3 M D)."""
        m = self.num_components
        if params.shape[-1] % (3 * m):
            raise ValueError(
                f"params must have 3 M D entries per example for a mixture of M = {m} discretized logistics, got "
                f"{params.shape[-1]}; give the decoder output_dim = {3 * m} * D."
            )
        logits, mean, log_scale = params.unflatten(-1, (3, m, -1)).unbind(-3)
        return F.log_softmax(logits, dim=-2), mean, log_scale.clamp(self.log_scale_min, self.log_scale_max)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """sum_i logsumexp_m [log pi_{m,i} + log P(x_i | mu_{m,i}, s_{m,i})]; returns (..., batch)."""
        log_pi, mean, log_scale = self.split_mixture(params)
        per_component = log_pi + discretized_logistic_log_prob(x.unsqueeze(-2), mean, log_scale)
        return torch.logsumexp(per_component, dim=-2).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z] = sum_m pi_m E_m[x] per pixel, (..., batch, D)."""
        log_pi, mean, log_scale = self.split_mixture(params)
        return (log_pi.exp() * _logistic_level_mean(mean, log_scale, LEVELS)).sum(-2)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x|z): a component per pixel (Gumbel-max on log pi), then its discretized logistic; (..., batch, D)."""
        log_pi, mean, log_scale = self.split_mixture(params)
        tiny = torch.finfo(log_pi.dtype).tiny
        u = torch.rand(log_pi.shape, dtype=log_pi.dtype, device=log_pi.device, generator=generator)
        pick = (log_pi - torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))).argmax(-2, keepdim=True)
        chosen = [t.gather(-2, pick).squeeze(-2) for t in (mean, log_scale)]
        return _sample_logistic_levels(*chosen, LEVELS, generator)

    def check_support(self, name: str, x: torch.Tensor) -> None:
        check_8bit_levels(name, x, "discretized logistic mixture")

    def extra_repr(self) -> str:
        return f"num_components={self.num_components}, {super().extra_repr()}"
