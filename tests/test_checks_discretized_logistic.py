"""check_discretized_logistic passes correct log-probabilities of 8-bit levels and catches the typical
wrong ones.

Correct formulations: the stable form with log-sigmoids, the CDF difference through
torch.distributions (a logistic as a transformed uniform) in float64 with a guard in the tail, and a
mixture of one component. The check's reference is compared with independent computations: the
256 probabilities sum to 1, and each equals the logistic's mass over its bin by quadrature.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vaelab import checks
from vaelab.checks.discretized_logistic import _reference

H = 0.5 / 255


def stable(x, mean, log_scale):
    inv = torch.exp(-log_scale)
    a, b = (x + H - mean) * inv, (x - H - mean) * inv
    interior = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(b - a))
    out = torch.where(x < H, F.logsigmoid(a), torch.where(x > 1 - H, F.logsigmoid(-b), interior))
    return out.sum(-1)


def with_logit_cdf_and_a_tail_guard(x, mean, log_scale):
    """log(cdf(a) - cdf(b)) where that is safe; in the upper tail the mirror log(cdf(-b) - cdf(-a))."""
    s = torch.exp(log_scale)
    a, b = (x + H - mean) / s, (x - H - mean) / s
    upper = torch.where(x > 1 - H, torch.full_like(a, math.inf), a)
    lower = torch.where(x < H, torch.full_like(b, -math.inf), b)
    mirrored = lower > 0  # the bin lies above the mean: take 1 - cdf on both edges, accurate there
    hi = torch.where(mirrored, -lower, upper)
    lo = torch.where(mirrored, -upper, lower)
    return (F.logsigmoid(hi) + torch.log(-torch.expm1(F.logsigmoid(lo) - F.logsigmoid(hi)))).sum(-1)


def mixture_of_one(x, mean, log_scale):
    from vaelab.models.discretized_logistic import DiscretizedLogisticMixtureLikelihood

    params = torch.stack([torch.zeros_like(mean), mean, log_scale], dim=-2).flatten(-2)
    return DiscretizedLogisticMixtureLikelihood(1, log_scale_min=-20.0).log_prob(x, params)


CORRECT = [stable, with_logit_cdf_and_a_tail_guard, mixture_of_one]


def _bins(x, mean, log_scale, half, edges=True):
    s = torch.exp(log_scale)
    a, b = (x + half - mean) / s, (x - half - mean) / s
    interior = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(b - a))
    if not edges:
        return interior
    return torch.where(x < H, F.logsigmoid(a), torch.where(x > 1 - H, F.logsigmoid(-b), interior))


def naive(x, mean, log_scale):
    s = torch.exp(log_scale)
    cdf = torch.sigmoid
    p = cdf((x + H - mean) / s) - cdf((x - H - mean) / s)
    p = torch.where(x < H, cdf((x + H - mean) / s), torch.where(x > 1 - H, 1 - cdf((x - H - mean) / s), p))
    return torch.log(p).sum(-1)


def density_times_width(x, mean, log_scale):
    s = torch.exp(log_scale)
    return torch.log(torch.sigmoid((x - mean) / s) * torch.sigmoid(-(x - mean) / s) / s / 255).sum(-1)


MISTAKES = {
    "negative": (lambda x, m, s: -stable(x, m, s), "not -log P(x)"),
    "no edge bins": (lambda x, m, s: _bins(x, m, s, H, edges=False).sum(-1), "the bin (-inf, h]"),
    "bins of 1/256": (lambda x, m, s: _bins(x, m, s, 0.5 / 256).sum(-1), "h = 1/(2 * 255)"),
    "overlapping bins": (lambda x, m, s: _bins(x, m, s, 1 / 255).sum(-1), "not 1/255"),
    "density times width": (density_times_width, "not density(x) / 255"),
    "halved log-scale": (lambda x, m, s: stable(x, m, 0.5 * s), "not exp(log_scale / 2)"),
    "inverse scale": (lambda x, m, s: stable(x, m, -s), "not exp(-log_scale)"),
    "averaged": (lambda x, m, s: _bins(x, m, s, H).mean(-1), ".mean(dim=-1)"),
    "probabilities": (lambda x, m, s: _bins(x, m, s, H).exp().sum(-1), "torch.log(P).sum(dim=-1)"),
    "naive log of the difference": (naive, "F.logsigmoid(a) + F.logsigmoid(-b)"),
    "no gradient": (lambda x, m, s: stable(x, m.detach(), s.detach()), "differentiable"),
    "one number": (lambda x, m, s: stable(x, m, s).sum(), "shape"),
}


@pytest.mark.parametrize("fn", CORRECT, ids=["stable", "cdf-with-guard", "mixture-of-one"])
def test_correct_implementations_pass(fn):
    result = checks.check_discretized_logistic(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_discretized_logistic: passed (8 cases)"


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_each_mistake_fails_with_its_hint(mistake):
    fn, phrase = MISTAKES[mistake]
    result = checks.check_discretized_logistic(fn, hint="fix", allow=True)
    assert not result
    assert phrase in result.message, result.message


def test_the_naive_difference_fails_in_a_tail_with_a_hint_free_of_answer_code():
    result = checks.check_discretized_logistic(naive)
    assert not result and "infinite or NaN" in result.hint  # already on random levels: a tail bin at s = e^-5
    assert "logsigmoid" not in result.message and "expm1" not in result.message


def test_a_stub_reports_not_implemented_and_vaelab_s_own_is_refused():
    def stub(x, mean, log_scale):
        raise NotImplementedError("your code here")

    assert "not implemented yet" in checks.check_discretized_logistic(stub).message
    result = checks.check_discretized_logistic(mixture_of_one)
    assert not result and "not allowed" in result.message


def test_the_reference_sums_to_one_over_the_levels_and_matches_quadrature():
    levels = torch.arange(256, dtype=torch.float64)[:, None] / 255
    for mean, log_scale in [(0.3, -3.0), (0.95, -6.0), (-0.2, 0.5), (0.5, -9.0)]:
        m = torch.full_like(levels, mean)
        s = torch.full_like(levels, log_scale)
        p = _reference(levels, m, s).exp()
        assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
    # one interior bin against Simpson's rule on the logistic density (independent of any CDF formula)
    mean, scale, k = 0.4, 0.02, 110
    y = torch.linspace(k / 255 - H, k / 255 + H, 2001, dtype=torch.float64)
    t = (y - mean) / scale
    density = torch.exp(-t) / (scale * (1 + torch.exp(-t)) ** 2)
    w = torch.ones_like(y)
    w[1:-1:2], w[2:-1:2] = 4, 2
    mass = (w * density).sum() * (y[1] - y[0]) / 3
    got = _reference(*(torch.tensor([[v]], dtype=torch.float64) for v in (k / 255, mean, math.log(scale))))
    assert got.exp().item() == pytest.approx(mass.item(), rel=1e-9)
