"""Likelihoods for grey pixels (chapter 14) against independent references: torch.distributions, mpmath in
50-digit arithmetic (normalizers, integrals, bin probabilities in the far tails), and brute force over the 256
levels."""

from __future__ import annotations

import math

import mpmath as mp
import pytest
import torch
from torch.distributions import ContinuousBernoulli, TransformedDistribution, Uniform
from torch.distributions.transforms import AffineTransform, SigmoidTransform

from vaelab.models.continuous_bernoulli import (
    ContinuousBernoulliLikelihood,
    continuous_bernoulli_cdf,
    continuous_bernoulli_log_normalizer,
    continuous_bernoulli_mean,
)
from vaelab.models.dequantization import Dequantized, bits_per_dim, dequantize, dequantized_log_likelihood
from vaelab.models.discretized_logistic import (
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixtureLikelihood,
    discretized_logistic_log_prob,
)
from vaelab.models.likelihoods import GaussianLikelihood

mp.mp.dps = 50
LEVELS = torch.arange(256, dtype=torch.float64) / 255
# rho near 0, 1/2 (both sides of the Taylor switch at |logit| = 0.1) and 1
LOGITS = [-300.0, -60.0, -20.0, -3.0, -0.1001, -0.1, -0.0999, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 0.05, 0.1, 0.7, 8.0, 45.0]
TOL = {torch.float32: 2e-6, torch.float64: 5e-14}


def mp_sigmoid(t):
    return 1 / (1 + mp.exp(-t))


def mp_log_c(logit: float):
    logit = mp.mpf(logit)
    return mp.log(2) if logit == 0 else mp.log(logit / mp.tanh(logit / 2))


def mp_cb_density(logit: float):
    c = mp.exp(mp_log_c(logit))
    return lambda x: c * mp.exp(logit * x - mp.log1p(mp.exp(logit)))


def mp_integral(f, logit: float):
    """Integral over [0, 1], split where a steep density concentrates its mass."""
    points = sorted(
        {
            0.0,
            1.0,
            0.5,
            *[min(max(p, 0.0), 1.0) for p in (5 / abs(logit) if logit else 0.5, 1 - 5 / abs(logit) if logit else 0.5)],
        }
    )
    return mp.quad(f, points)


# ----------------------------------------------------------------------------------------------------------
# continuous Bernoulli


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_continuous_bernoulli_normalizer_matches_mpmath(dtype):
    logits = torch.tensor(LOGITS, dtype=dtype)
    got = continuous_bernoulli_log_normalizer(logits)
    want = torch.tensor([float(mp_log_c(logit)) for logit in logits.double().tolist()], dtype=torch.float64)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=TOL[dtype], atol=TOL[dtype])


def test_continuous_bernoulli_log_prob_and_mean_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, 30, generator=g, dtype=torch.float64) * 4  # |logit| > 0.01: torch's exact branch
    logits = torch.where(logits.abs() < 0.02, torch.full_like(logits, 0.5), logits)
    x = torch.rand(50, 30, generator=g, dtype=torch.float64)
    reference = ContinuousBernoulli(logits=logits)
    got = ContinuousBernoulliLikelihood().log_prob(x, logits)
    assert got.shape == (6, 50)
    torch.testing.assert_close(got, reference.log_prob(x).sum(-1), rtol=1e-12, atol=1e-11)
    torch.testing.assert_close(ContinuousBernoulliLikelihood().mean(logits), reference.mean, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(continuous_bernoulli_cdf(x, logits), reference.cdf(x), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("logit", [-300.0, -20.0, -0.1, -1e-4, 0.0, 0.0999, 3.0, 45.0])
def test_continuous_bernoulli_integrates_to_one_and_has_its_mean(dtype, logit):
    """Numerical integration (mpmath) of vaelab's own density: integral 1, integral of x p(x) = mean()."""
    likelihood = ContinuousBernoulliLikelihood()
    logit_t = torch.tensor([[logit]], dtype=dtype)

    def density(x):
        return mp.exp(likelihood.log_prob(torch.tensor([[float(x)]], dtype=dtype), logit_t).double().item())

    with mp.workdps(20):  # vaelab's own density is float64 at best; fewer quadrature points
        total = mp_integral(density, logit)
        mean = mp_integral(lambda x: x * density(x), logit)
    assert abs(total - 1) < 50 * TOL[dtype]
    assert abs(float(mean) - likelihood.mean(logit_t).item()) < 50 * TOL[dtype]
    # and the exact mean from the 50-digit density
    exact = mp_integral(lambda x: x * mp_cb_density(logit)(x), logit)
    assert abs(float(exact) - likelihood.mean(logit_t).item()) < 5 * TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_continuous_bernoulli_gradients_are_finite_and_match_mpmath_near_rho_0_half_1(dtype):
    logits = torch.tensor(LOGITS, dtype=dtype, requires_grad=True)
    x = torch.linspace(0, 1, len(LOGITS), dtype=dtype)
    log_p = ContinuousBernoulliLikelihood().log_prob(x.unsqueeze(0), logits.unsqueeze(0))
    (grad,) = torch.autograd.grad(log_p.sum(), logits)
    assert torch.isfinite(grad).all()
    # d/dl [x logit - softplus(logit) + log C(logit)] = x - sigmoid(logit) + d log C / dl
    want = [
        float(xi - mp_sigmoid(logit) + (mp.diff(mp_log_c, logit) if logit else 0))
        for xi, logit in zip(x.tolist(), LOGITS)
    ]
    torch.testing.assert_close(
        grad.double(), torch.tensor(want, dtype=torch.float64), rtol=20 * TOL[dtype], atol=20 * TOL[dtype]
    )
    (mean_grad,) = torch.autograd.grad(continuous_bernoulli_mean(logits).sum(), logits)
    assert torch.isfinite(mean_grad).all()


@pytest.mark.parametrize("logit", [-40.0, -2.0, -1e-8, 0.0, 0.3, 15.0])
def test_continuous_bernoulli_samples_lie_in_the_unit_interval_with_the_right_mean_and_cdf(logit):
    n = 20_000
    logits = torch.full((n, 1), logit, dtype=torch.float64)
    draws = ContinuousBernoulliLikelihood().sample(logits, torch.Generator().manual_seed(1))
    assert draws.shape == (n, 1) and 0 <= draws.min() and draws.max() <= 1
    exact_mean = float(mp_integral(lambda x: x * mp_cb_density(logit)(x), logit))
    assert abs(draws.mean().item() - exact_mean) < 4 * draws.std().item() / math.sqrt(n) + 1e-12
    # Kolmogorov-Smirnov distance to the mpmath CDF at a few points (0.0136 = the 1% critical value for n = 20k)
    density = mp_cb_density(logit)
    for q in (0.1, 0.5, 0.9):
        cdf = mp.quad(density, [0, q])
        assert abs((draws <= q).double().mean().item() - float(cdf)) < 0.0136


def test_continuous_bernoulli_rejects_pixels_outside_the_unit_interval():
    likelihood = ContinuousBernoulliLikelihood()
    likelihood.check_support("x", torch.rand(3, 4))
    with pytest.raises(ValueError, match=r"continuous Bernoulli.*x / 255"):
        likelihood.check_support("x", torch.full((2, 2), 128.0))
    with pytest.raises(ValueError, match="NaN"):
        likelihood.check_support("x", torch.tensor([[float("nan")]]))


# ----------------------------------------------------------------------------------------------------------
# discretized logistic and its mixture


def mp_bin_probability(k: int, mean: float, scale: float):
    """sigmoid(upper) - sigmoid(lower) for level k in 50 digits, edge bins to -inf and +inf."""
    upper = mp.inf if k == 255 else ((mp.mpf(k) + mp.mpf(0.5)) / 255 - mp.mpf(mean)) / scale
    lower = -mp.inf if k == 0 else ((mp.mpf(k) - mp.mpf(0.5)) / 255 - mp.mpf(mean)) / scale
    if lower > 0:  # right tail: the survival functions, each accurate to 50 digits however small
        return mp_sigmoid(-lower) - mp_sigmoid(-upper)
    return mp_sigmoid(upper) - mp_sigmoid(lower)


@pytest.mark.parametrize(
    "mean, log_scale", [(0.5, -3.0), (0.0, -8.0), (1.0, -8.0), (0.3, 0.0), (-4.0, -5.0), (6.0, -6.0), (0.5, 5.0)]
)
def test_discretized_logistic_matches_mpmath_bin_probabilities_also_in_the_far_tails(mean, log_scale):
    got = discretized_logistic_log_prob(
        LEVELS, torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64)
    )
    want = torch.tensor(
        [float(mp.log(mp_bin_probability(k, mean, math.exp(log_scale)))) for k in range(256)], dtype=torch.float64
    )
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want.double(), rtol=1e-10, atol=1e-10)


def logistic(mean: torch.Tensor, scale: torch.Tensor) -> TransformedDistribution:
    return TransformedDistribution(
        Uniform(torch.zeros_like(mean), torch.ones_like(mean)), [SigmoidTransform().inv, AffineTransform(mean, scale)]
    )


def test_mixture_matches_torch_logistic_cdf_differences():
    g = torch.Generator().manual_seed(2)
    m, d = 3, 5
    params = torch.randn(2, 4, 3 * m * d, generator=g, dtype=torch.float64)
    params[..., m * d : 2 * m * d] = torch.rand(2, 4, m * d, generator=g, dtype=torch.float64)  # means in [0, 1]
    x = torch.randint(0, 256, (4, d), generator=g).double() / 255
    likelihood = DiscretizedLogisticMixtureLikelihood(m)
    got = likelihood.log_prob(x, params)
    weights, means, log_scales = params.unflatten(-1, (3, m, d)).unbind(-3)
    dist = logistic(means, log_scales.exp())
    xm = x.unsqueeze(-2).expand_as(means)
    upper = torch.where(xm > 254.5 / 255, 1.0, dist.cdf((xm + 0.5 / 255).clamp(max=1)))
    lower = torch.where(xm < 0.5 / 255, 0.0, dist.cdf((xm - 0.5 / 255).clamp(min=0)))
    want = ((weights.softmax(-2) * (upper - lower)).sum(-2)).log().sum(-1)
    assert got.shape == (2, 4)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    # one component: the single discretized logistic
    single = DiscretizedLogisticMixtureLikelihood(1).log_prob(x, params[..., : 3 * d])
    torch.testing.assert_close(single, DiscretizedLogisticLikelihood().log_prob(x, params[..., d : 3 * d]))


def level_grid_params(likelihood, params: torch.Tensor) -> torch.Tensor:
    """log p of every level: (256, ..., 1) for params (..., 1, P): one pixel, the levels as a batch dimension."""
    x = LEVELS.to(params.dtype).view(256, *([1] * params.dim()))
    return likelihood.log_prob(x, params.unsqueeze(0))


FAR = [(0.5, -3.0), (0.0, -20.0), (1.0, -8.0), (-30.0, 0.0), (40.0, -1.0), (0.2, 20.0), (0.5, 5.0), (0.9, -7.5)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discretized_logistics_sum_to_one_over_256_levels_and_mean_is_the_brute_force_mean(dtype):
    single = DiscretizedLogisticLikelihood()
    params = torch.tensor([[m, s] for m, s in FAR], dtype=dtype).unsqueeze(1)  # (cases, 1 pixel, 2)
    mixture = DiscretizedLogisticMixtureLikelihood(2)
    g = torch.Generator().manual_seed(3)
    mix_params = (torch.randn(len(FAR), 1, 6, generator=g, dtype=torch.float64) * 15).to(dtype)  # far from zero
    for likelihood, p in ((single, params), (mixture, mix_params)):
        log_p = level_grid_params(likelihood, p).squeeze(-1)  # (256, cases)
        assert log_p.dtype == dtype and torch.isfinite(log_p).all()
        total = log_p.double().exp().sum(0)
        torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=300 * TOL[dtype])
        brute_mean = (LEVELS.unsqueeze(-1) * log_p.double().exp()).sum(0)
        torch.testing.assert_close(likelihood.mean(p).double().view(-1), brute_mean, rtol=0, atol=300 * TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discretized_logistic_gradients_are_finite_at_pixels_0_and_255(dtype):
    for likelihood, per_pixel in ((DiscretizedLogisticLikelihood(), 2), (DiscretizedLogisticMixtureLikelihood(3), 9)):
        for mean, log_scale in FAR:
            x = torch.tensor([[0.0, 1.0, 1 / 255, 254 / 255]], dtype=dtype)
            params = torch.randn(1, 4 * per_pixel, dtype=dtype)
            if per_pixel == 2:
                params = torch.tensor([[mean] * 4 + [log_scale] * 4], dtype=dtype)
            params.requires_grad_(True)
            (grad,) = torch.autograd.grad(likelihood.log_prob(x, params * (1 if per_pixel == 2 else 20)).sum(), params)
            assert torch.isfinite(grad).all(), (likelihood, mean, log_scale)


@pytest.mark.parametrize(
    "likelihood, params",
    [
        (DiscretizedLogisticLikelihood(), [0.5, -3.0]),
        # three components at the dark edge, the middle and the bright edge: weights, means, log-scales
        (DiscretizedLogisticMixtureLikelihood(3), [0.3, -1.0, 0.5, 0.01, 0.5, 0.98, -3.0, -4.0, -3.5]),
    ],
)
def test_discretized_logistic_samples_are_levels_with_the_right_frequencies(likelihood, params):
    g = torch.Generator().manual_seed(4)
    params = torch.tensor([params], dtype=torch.float64)
    n = 40_000
    draws = likelihood.sample(params.expand(n, -1), g)
    assert draws.shape == (n, 1)
    likelihood.check_support("draws", draws)  # on the 1/255 grid, in [0, 1]
    probs = level_grid_params(likelihood, params).exp().view(-1)
    counts = torch.bincount(torch.round(draws.view(-1) * 255).long(), minlength=256).double()
    # chi-square over the levels with expected count >= 5 (the rest pooled into one cell)
    expected = probs * n
    keep = expected >= 5
    observed = torch.cat([counts[keep], counts[~keep].sum().view(1)])
    expected = torch.cat([expected[keep], expected[~keep].sum().view(1)])
    chi2 = ((observed - expected) ** 2 / expected.clamp(min=1e-9)).sum().item()
    dof = int(keep.sum())
    assert chi2 < dof + 4 * math.sqrt(2 * dof)  # about the 99.9% quantile of chi-square with dof degrees of freedom


def test_discretized_logistic_layout_and_shapes():
    g = torch.Generator().manual_seed(5)
    d = 7
    x = torch.randint(0, 256, (4, d), generator=g) / 255.0
    for likelihood in (DiscretizedLogisticLikelihood(), DiscretizedLogisticMixtureLikelihood(2)):
        params = torch.randn(3, 4, likelihood.params_per_pixel * d, generator=g)
        assert likelihood.log_prob(x, params).shape == (3, 4)
        assert likelihood.mean(params).shape == likelihood.sample(params, g).shape == (3, 4, d)
    # the single logistic reads (means, log-scales): pixel 0 and pixel 1 of one image
    params = torch.tensor([[0.2, 0.8, -4.0, -2.0]], dtype=torch.float64)
    got = DiscretizedLogisticLikelihood().log_prob(torch.tensor([[0.2, 0.8]], dtype=torch.float64), params)
    want = sum(
        float(mp.log(mp_bin_probability(k, mu, math.exp(s)))) for k, mu, s in ((51, 0.2, -4.0), (204, 0.8, -2.0))
    )
    assert abs(got.item() - want) < 1e-10
    with pytest.raises(ValueError, match="output_dim = 6 \\* D"):
        DiscretizedLogisticMixtureLikelihood(2).log_prob(x, torch.zeros(4, 5 * d))


def test_discrete_likelihoods_reject_pixels_between_levels_with_the_fix():
    likelihood = DiscretizedLogisticMixtureLikelihood(2)
    likelihood.check_support("x", LEVELS.float().view(16, 16))
    with pytest.raises(ValueError, match=r"1 of 4 values lie between levels.*torch.round\(x \* 255\) / 255"):
        likelihood.check_support("x", torch.tensor([[0.0, 0.5, 1.0, 2 / 255]]))
    with pytest.raises(ValueError, match="x / 255"):
        DiscretizedLogisticLikelihood().check_support("x", torch.tensor([[0.0, 255.0]]))


# ----------------------------------------------------------------------------------------------------------
# dequantization and bits per dimension


def test_bits_per_dim_of_uniform_pixels_is_8_on_both_scales():
    d = 784
    uniform_levels = -d * math.log(256)  # P(k) = 1/256 for every pixel
    assert bits_per_dim(uniform_levels, d) == pytest.approx(8.0)
    assert bits_per_dim(0.0, d, density=True) == pytest.approx(8.0)  # the uniform density on [0, 1]^D
    assert dequantized_log_likelihood(0.0, d) == pytest.approx(uniform_levels)
    # the dequantized continuous Bernoulli with logit = 0 is that uniform density: exactly 8 bits, for any u
    x = LEVELS.view(1, 256).float()
    log_p = Dequantized(ContinuousBernoulliLikelihood()).log_prob(x, torch.zeros(5, 1, 256))
    torch.testing.assert_close(bits_per_dim(log_p, 256), torch.full((5, 1), 8.0))


def test_dequantize_spreads_each_level_over_its_bin():
    x = LEVELS.repeat(3, 1)
    y = dequantize(x, torch.Generator().manual_seed(6))
    k = torch.arange(256, dtype=torch.float64)
    assert ((y >= k / 256) & (y < (k + 1) / 256)).all()
    assert dequantize(x[:1], shape=(4, 1, 256)).shape == (4, 1, 256)


def mp_dequantized_level_probabilities(base: str, param: float, logvar: float = 0.0) -> list:
    """P(k) = integral of the density over [k/256, (k+1)/256), the first and last bin extended to -inf, +inf."""
    if base == "cb":
        f = mp_cb_density(param)
        cdf = [mp.mpf(0)] + [mp.quad(f, [j / 256 - 1 / 256, j / 256]) for j in range(1, 256)]
        cumulative = [mp.fsum(cdf[: j + 1]) for j in range(256)]
    else:
        sigma = mp.exp(mp.mpf(logvar) / 2)
        cumulative = [mp.mpf(0)] + [mp.ncdf((mp.mpf(j) / 256 - param) / sigma) for j in range(1, 256)]
    cumulative.append(mp.mpf(1))
    return [cumulative[k + 1] - cumulative[k] for k in range(256)]


@pytest.mark.parametrize(
    "base, param, logvar", [("cb", 2.5, 0.0), ("cb", -40.0, 0.0), ("gauss", 0.4, -4.0), ("gauss", 0.02, -6.0)]
)
def test_dequantized_mean_is_the_level_mean_and_log_prob_bounds_log_p_of_the_level(base, param, logvar):
    likelihood = Dequantized(ContinuousBernoulliLikelihood() if base == "cb" else GaussianLikelihood(logvar=logvar))
    probs = mp_dequantized_level_probabilities(base, param, logvar)
    assert abs(mp.fsum(probs) - 1) < 1e-12
    params = torch.full((1, 1), param, dtype=torch.float64)
    brute_mean = float(mp.fsum(k / 255 * p for k, p in enumerate(probs)))
    assert abs(likelihood.mean(params).item() - brute_mean) < 1e-10
    # E_u[log_prob] <= log P(k): the Monte Carlo mean is below the exact log-probability (4 standard errors)
    g = torch.Generator().manual_seed(7)
    for k in sorted({0, 5, 128, 250, 255, int(round(brute_mean * 255))}):
        if probs[k] < 1e-30:
            continue
        x = torch.full((1, 1), k / 255, dtype=torch.float64)
        draws = likelihood.log_prob(x, params.expand(4000, 1, 1), g).view(-1)
        assert draws.mean().item() - 4 * draws.std().item() / math.sqrt(4000) <= float(mp.log(probs[k]))
    draws = likelihood.sample(params.expand(20_000, 1), g)
    likelihood.check_support("draws", draws)
    assert abs(draws.mean().item() - brute_mean) < 4 * draws.std().item() / math.sqrt(20_000) + 1e-9


def test_dequantized_log_prob_is_the_base_density_minus_log_256_per_pixel():
    g = torch.Generator().manual_seed(8)
    x = torch.randint(0, 256, (3, 10), generator=g) / 255.0
    params = torch.randn(2, 3, 10, generator=g)
    base = GaussianLikelihood(logvar=-2.0)
    got = Dequantized(base).log_prob(x, params, torch.Generator().manual_seed(9))
    y = dequantize(x, torch.Generator().manual_seed(9), (2, 3, 10))
    want = torch.distributions.Normal(params, math.exp(-1.0)).log_prob(y).sum(-1) - 10 * math.log(256)
    torch.testing.assert_close(got, want)
    assert Dequantized(base).mean(params).shape == Dequantized(base).sample(params).shape == (2, 3, 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dequantized_gradients_are_finite_at_pixels_0_and_255(dtype):
    x = torch.tensor([[0.0, 1.0, 0.0, 1.0]], dtype=dtype)
    for base, params in (
        (ContinuousBernoulliLikelihood(), [[-200.0, -200.0, 1e-7, 300.0]]),  # rho near 0, 1/2 and 1
        (GaussianLikelihood(logvar=-9.0, learn_variance=True), [[40.0, -40.0, 0.0, 1.0]]),
    ):
        likelihood = Dequantized(base).to(dtype)
        p = torch.tensor(params, dtype=dtype, requires_grad=True)
        log_p = likelihood.log_prob(x, p, torch.Generator().manual_seed(0))
        grads = torch.autograd.grad(log_p.sum(), [p, *likelihood.parameters()])
        assert torch.isfinite(log_p).all() and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_continuous_bernoulli_sampling_at_the_ends_of_the_uniform_range_matches_mpmath(dtype, monkeypatch):
    """The ends of torch.rand's range [0, 1): F^-1(0) = 0 and F^-1(1 - eps) as mpmath solves it, for every rho."""
    logits = torch.tensor([-300.0, -5.0, -1e-7, 0.0, 1e-7, 5.0, 300.0], dtype=dtype)
    likelihood = ContinuousBernoulliLikelihood()
    for u in (0.0, 1.0 - torch.finfo(dtype).eps):
        monkeypatch.setattr(torch, "rand", lambda shape, u=u, **kw: torch.full(shape, u, dtype=kw["dtype"]))
        draws = likelihood.sample(logits)
        assert torch.isfinite(draws).all()
        # the exact quantile in 50 digits: F(x) = expm1(l x)/expm1(l) solved for x
        exact = [float(mp.log1p(u * mp.expm1(lg)) / lg) if lg else u for lg in logits.double().tolist()]
        torch.testing.assert_close(draws.double(), torch.tensor(exact, dtype=torch.float64), rtol=0, atol=1e-5)


def test_discretized_logistic_rejects_an_empty_log_scale_range():
    with pytest.raises(ValueError, match="log_scale_min must be below log_scale_max.*-8 and 5"):
        DiscretizedLogisticMixtureLikelihood(2, log_scale_min=1.0, log_scale_max=0.0)
