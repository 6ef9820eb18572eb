"""The discretized logistic and its mixture over the 256 levels of an 8-bit pixel (PixelCNN++, Salimans et al.
2017; chapter 14). Conventions of x and params: ``pixel_levels``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.generative import Likelihood
from ..core.validation import check_positive_int
from .pixel_levels import LEVELS, check_8bit_levels

__all__ = ["DiscretizedLogisticLikelihood", "DiscretizedLogisticMixtureLikelihood", "discretized_logistic_log_prob"]


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
    u = torch.rand(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator).clamp(min=tiny)  # < 1
    y = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    k = torch.round(y * (levels - 1)).clamp(0, levels - 1)
    return k / (levels - 1)


def _log_scale_bounds(log_scale_min: float, log_scale_max: float) -> tuple[float, float]:
    """The clamp range of the log-scales, checked: finite and log_scale_min < log_scale_max."""
    lo, hi = float(log_scale_min), float(log_scale_max)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(
            f"log_scale_min must be below log_scale_max and both finite, got {log_scale_min} and {log_scale_max}; "
            "keep the defaults -8 and 5."
        )
    return lo, hi


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
        self.log_scale_min, self.log_scale_max = _log_scale_bounds(log_scale_min, log_scale_max)

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


class DiscretizedLogisticMixtureLikelihood(Likelihood):
    """p(x|z) = prod_i sum_m pi_{m,i} P(x_i | mu_{m,i}, s_{m,i}): a mixture of M discretized logistics per pixel
    (PixelCNN++'s likelihood for one grey channel), pi_{., i} = softmax of the logit weights over m.

    params: (..., batch, 3 M D), read as (..., batch, 3, M, D): params[..., 0, m, :] the logit weights,
    params[..., 1, m, :] the means, params[..., 2, m, :] the log-scales (clamped as in the single logistic).
    The decoder's output layer is 3 M times as wide as a Bernoulli decoder's. log_prob returns (..., batch).
    """

    def __init__(self, num_components: int = 5, log_scale_min: float = -8.0, log_scale_max: float = 5.0) -> None:
        super().__init__()
        self.log_scale_min, self.log_scale_max = _log_scale_bounds(log_scale_min, log_scale_max)
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
        pick = (log_pi - torch.log(-torch.log(u.clamp(min=tiny)))).argmax(-2, keepdim=True)
        chosen = [t.gather(-2, pick).squeeze(-2) for t in (mean, log_scale)]
        return _sample_logistic_levels(*chosen, LEVELS, generator)

    def check_support(self, name: str, x: torch.Tensor) -> None:
        check_8bit_levels(name, x, "discretized logistic mixture")

    def extra_repr(self) -> str:
        bounds = f"log_scale_min={self.log_scale_min}, log_scale_max={self.log_scale_max}"
        return f"num_components={self.num_components}, {bounds}"
