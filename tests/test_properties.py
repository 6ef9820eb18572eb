"""Property-based tests (hypothesis) of vaelab's math over random shapes, latent sizes and
parameter ranges, including extreme log-variances.

Every property is checked against an independent computation (torch.distributions in float64, the
closed forms of the linear-Gaussian model, a hand-written log-mean-exp with math.fsum), never
against vaelab itself. Monte Carlo comparisons allow 5 standard errors; the tests are
derandomized, so they are reproducible.
"""

from __future__ import annotations

import math
from unittest import mock

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.distributions import MultivariateNormal, Normal, kl_divergence

import vaelab.core.objectives
from vaelab import (
    BernoulliLikelihood,
    GaussianLikelihood,
    LinearGaussianModel,
    build_vae,
    diagonal_gaussian_log_prob,
    elbo,
    iwae_bound,
    kl_per_dimension,
    reparameterize,
)
from vaelab.core.recognition import LOGVAR_MAX, LOGVAR_MIN

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SLOW_PROPERTY = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

FLOAT32_MAX = float(np.finfo(np.float32).max)
# LinearGaussianModel.vae() holds W, b and log sigma^2 exactly in float64, so vaelab's bounds with the
# exact posterior equal the exact log p(x) to float64 rounding (measured over 120 problems with offsets up to
# 1e4: at most 1e-15 relative, 3e-7 nats). The tolerance allows 1000 times that relative error, so an error
# of 1e-9 relative (one wrong digit of log 2 pi, a float32 round trip) fails.
SIGMA_ROUNDING = 1e-12

shapes = st.tuples(st.integers(1, 6), st.integers(1, 8))  # (batch, latent_dim)


def matrices(shape, lo, hi):
    return hnp.arrays(np.float32, shape, elements=st.floats(lo, hi, width=32))


# ----------------------------------------------------------------------------- KL and log-variances


@PROPERTY
@given(data=st.data(), shape=shapes)
def test_kl_is_finite_nonnegative_and_equals_torch_distributions(data, shape):
    mu = torch.from_numpy(data.draw(matrices(shape, -1e3, 1e3)))
    logvar = torch.from_numpy(data.draw(matrices(shape, LOGVAR_MIN, LOGVAR_MAX)))
    kl = kl_per_dimension(mu, logvar)
    assert kl.shape == shape and kl.dtype == torch.float32
    assert torch.isfinite(kl).all() and (kl >= 0).all()
    q = Normal(mu.double(), torch.exp(0.5 * logvar.double()))
    expected = kl_divergence(q, Normal(torch.zeros_like(q.loc), torch.ones_like(q.loc)))
    torch.testing.assert_close(kl.double(), expected, rtol=2e-6, atol=1e-6)
    # in float64 the agreement is to rounding
    torch.testing.assert_close(kl_per_dimension(mu.double(), logvar.double()), expected, rtol=1e-10, atol=1e-12)


@PROPERTY
@given(
    data=st.data(),
    shape=shapes,
    raw=st.one_of(st.floats(-FLOAT32_MAX, FLOAT32_MAX, width=32), st.sampled_from([-math.inf, math.inf])),
)
def test_encoder_log_variance_is_clamped_so_exp_never_overflows(data, shape, raw):
    """Whatever the encoder's last layer outputs (a too-large learning rate can push it to 1e30
    or inf), exp(logvar) and exp(-logvar) stay finite and positive in float32, and so do the
    sample, log q and the KL."""
    batch, latent = shape
    encoder = build_vae(latent_dim=latent, hidden_dim=4, side=4).encoder
    with torch.no_grad():
        encoder.head.weight.zero_()
        encoder.head.bias[:latent] = torch.from_numpy(data.draw(matrices((latent,), -100, 100)))
        encoder.head.bias[latent:] = raw
    mu, logvar = encoder(torch.rand(batch, 16))
    assert (logvar >= LOGVAR_MIN).all() and (logvar <= LOGVAR_MAX).all()
    for value in (torch.exp(logvar), torch.exp(-logvar), torch.exp(0.5 * logvar)):
        assert torch.isfinite(value).all() and (value > 0).all()
    z = reparameterize(mu, logvar, 3)
    assert torch.isfinite(z).all()
    assert torch.isfinite(diagonal_gaussian_log_prob(z, mu, logvar)).all()
    assert torch.isfinite(kl_per_dimension(mu, logvar)).all()


@PROPERTY
@given(raw=st.floats(-FLOAT32_MAX, FLOAT32_MAX, width=32), shape=shapes)
def test_learned_gaussian_variance_is_clamped(raw, shape):
    likelihood = GaussianLikelihood(learn_variance=True)
    with torch.no_grad():
        likelihood.raw_logvar.fill_(raw)
    x, mean = torch.rand(shape), 10 * torch.randn(shape)
    log_p = likelihood.log_prob(x, mean)
    assert torch.isfinite(log_p).all()
    expected = Normal(mean.double(), torch.exp(0.5 * likelihood.logvar.double())).log_prob(x.double()).sum(-1)
    torch.testing.assert_close(log_p.double(), expected, rtol=1e-5, atol=1e-3)
    assert torch.isfinite(likelihood.sample(mean)).all()


@PROPERTY
@given(data=st.data(), shape=shapes)
def test_bernoulli_log_prob_is_finite_nonpositive_and_exact_for_extreme_logits(data, shape):
    logits = torch.from_numpy(data.draw(matrices(shape, -1e4, 1e4)))
    x = torch.from_numpy(data.draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 1.0]))))
    log_p = BernoulliLikelihood().log_prob(x, logits)
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()
    expected = torch.distributions.Bernoulli(logits=logits.double()).log_prob(x.double()).sum(-1)
    # float32 rounding: about one unit in the last place of each term max(|logit|, 1), plus the summation
    # error of D float32 terms, (D - 1) u sum |term| with u = 2^-24 = 6e-8 (recursive summation bound)
    magnitude = logits.abs().clamp(min=1).sum(-1).double()
    bound = (2e-7 + 6e-8 * shape[1]) * magnitude + 1e-6
    assert ((log_p.double() - expected).abs() <= bound).all()


# ----------------------------------------------------------------------------- the bounds


def _random_problem(data_dim, latent_dim, sigma2, perturbation, shift, seed):
    """A linear-Gaussian model, a recognition model near its true posterior, and 3 data points."""
    lg = LinearGaussianModel.random(data_dim, latent_dim, sigma2=sigma2, seed=seed)
    encoder = lg.exact_encoder()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in (encoder.linear.weight, encoder.linear.bias):
            parameter.add_(perturbation * torch.randn(parameter.shape, generator=g, dtype=torch.float64))
        encoder.logvar.add_(shift)
    return lg, lg.vae(encoder), lg.sample(3, generator=g)


def _exact_log_px(lg, x):
    cov = lg.weight @ lg.weight.T + lg.sigma2 * torch.eye(lg.data_dim, dtype=torch.float64)
    return MultivariateNormal(lg.bias, covariance_matrix=cov).log_prob(x)


def _exact_elbo(lg, model, x):
    """E_q[log p(x|z)] - KL(q || p(z)) in closed form for q = N(m, diag(s2))."""
    m, logvar = model.encode(x)
    s2 = torch.exp(logvar)
    residual = x - m @ lg.weight.T - lg.bias
    trace = (lg.weight.pow(2) * s2[:, None, :]).sum((1, 2))  # tr(W diag(s2) W^T)
    expected_log_lik = -0.5 * (
        lg.data_dim * math.log(2 * math.pi * lg.sigma2) + (residual.pow(2).sum(-1) + trace) / lg.sigma2
    )
    q = Normal(m, torch.exp(0.5 * logvar))
    kl = kl_divergence(q, Normal(torch.zeros_like(m), torch.ones_like(m))).sum(-1)
    return expected_log_lik - kl, q


problems = st.tuples(
    st.integers(2, 6),
    st.integers(1, 3),
    st.floats(0.2, 2.0),
    st.floats(0.0, 0.3),
    st.floats(-1.0, 1.0),
    st.integers(0, 10_000),
)


@SLOW_PROPERTY
@given(problem=problems)
def test_elbo_below_importance_weighted_bound_below_exact_log_px(problem):
    data_dim, latent_dim, sigma2, perturbation, shift, seed = problem
    latent_dim = min(latent_dim, data_dim)
    lg, model, x = _random_problem(data_dim, latent_dim, sigma2, perturbation, shift, seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        log_px = _exact_log_px(lg, x)
        exact_elbo, q = _exact_elbo(lg, model, x)
        # the closed-form ELBO is right: log p(x) - ELBO = KL(q || p(z|x)) >= 0
        post_mean, post_cov = lg.posterior(x)
        gap = torch.stack(
            [
                kl_divergence(
                    MultivariateNormal(q.loc[i], torch.diag(q.scale[i] ** 2)),
                    MultivariateNormal(post_mean[i], post_cov),
                )
                for i in range(len(x))
            ]
        )
        torch.testing.assert_close(log_px - exact_elbo, gap, rtol=1e-7, atol=1e-9)
        assert (exact_elbo <= log_px + 1e-12).all()
        slack = SIGMA_ROUNDING * log_px.abs()  # float64 rounding

        # vaelab's one-sample ELBO estimates average to the exact ELBO
        n = 2000
        draws = elbo(model, x.repeat(n, 1)).elbo.view(n, len(x))
        se = draws.std(0) / math.sqrt(n)
        assert ((draws.mean(0) - exact_elbo).abs() <= 5 * se + slack).all()

        # and the importance-weighted bound lies between, in expectation, for every k
        for k in (2, 16):
            r = 400
            bounds = iwae_bound(model, x.repeat(r, 1), k).view(r, len(x))
            mean, se = bounds.mean(0), bounds.std(0) / math.sqrt(r)
            assert (mean >= exact_elbo - 5 * se - slack).all(), (k, mean, exact_elbo, se)
            assert (mean <= log_px + 5 * se + slack).all(), (k, mean, log_px, se)


@SLOW_PROPERTY
@given(problem=problems, k=st.integers(1, 64), chunk=st.integers(1, 64))
def test_with_the_exact_posterior_every_bound_equals_log_px(problem, k, chunk):
    data_dim, latent_dim, sigma2, _, _, seed = problem
    lg, model, x = _random_problem(data_dim, min(latent_dim, data_dim), sigma2, 0.0, 0.0, seed)
    with torch.no_grad():
        log_px = _exact_log_px(lg, x)
        tolerance = {"rtol": SIGMA_ROUNDING, "atol": SIGMA_ROUNDING}
        torch.testing.assert_close(iwae_bound(model, x, k, chunk_size=chunk), log_px, **tolerance)
        # one sample, Monte Carlo KL with that sample: reconstruction - KL = log w = log p(x)
        torch.testing.assert_close(elbo(model, x, kl="mc").elbo, log_px, **tolerance)


# ----------------------------------------------------------------------------- logsumexp stability


@SLOW_PROPERTY
@given(
    offset=st.floats(1e2, 1e4),
    k=st.integers(2, 40),
    chunk=st.integers(1, 40),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 1000),
)
def test_importance_weighted_bound_is_stable_for_very_negative_log_weights(offset, k, chunk, dtype, seed):
    """Far from the data every log-weight is hugely negative (exp underflows to 0, so a naive
    log-mean-exp gives -inf); the chunked logsumexp must still give log p(x)."""
    lg = LinearGaussianModel.random(4, 2, sigma2=0.3, seed=seed)
    x = (lg.bias + offset)[None]
    log_px = _exact_log_px(lg, x)  # about -offset^2 * 4 / (2 * 0.3 ... 4.3)
    model = lg.vae().to(dtype)
    with torch.no_grad():
        log_w = vaelab.core.objectives.log_importance_weights(model, x.to(dtype), k)
        assert torch.isinf(torch.log(torch.exp(log_w).mean(0))).all()  # the naive way fails
        bound = iwae_bound(model, x.to(dtype), k, chunk_size=chunk)
    assert torch.isfinite(bound).all()
    rtol = SIGMA_ROUNDING if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(bound.double(), log_px, rtol=rtol, atol=0)


@SLOW_PROPERTY
@given(
    offset=st.floats(10.0, 1e3),
    k=st.integers(2, 50),
    chunk=st.integers(1, 50),
    spread=st.floats(0.5, 3.0),
    seed=st.integers(0, 1000),
)
def test_chunked_bound_equals_a_high_precision_log_mean_exp_of_the_same_weights(offset, k, chunk, spread, seed):
    """With a poor q the log-weights are very negative *and* spread over many nats. vaelab's
    chunked logsumexp/logaddexp is compared with a hand-written log-mean-exp (math.fsum) of the
    same weights, computed independently with torch.distributions from the same noise."""
    lg = LinearGaussianModel.random(3, 2, sigma2=0.5, seed=seed)
    encoder = lg.exact_encoder()
    with torch.no_grad():
        encoder.logvar.add_(spread)  # q much wider than the posterior: weights vary over many nats
    model = lg.vae(encoder)
    x = (lg.bias + offset)[None]
    eps = torch.randn(k, 1, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    used = [0]

    def fixed_noise(mu, logvar, n_samples=None, generator=None):
        chunk_eps = eps[used[0] : used[0] + n_samples]
        used[0] += n_samples
        return mu + torch.exp(0.5 * logvar) * chunk_eps

    with torch.no_grad(), mock.patch("vaelab.core.recognition.reparameterize", fixed_noise):
        bound = iwae_bound(model, x, k, chunk_size=chunk).item()
        mu, logvar = model.encode(x)
    assert used[0] == k
    z = mu + torch.exp(0.5 * logvar) * eps  # (k, 1, 2)
    # the W, b and sigma the model holds
    weight, bias = model.decoder.linear.weight, model.decoder.linear.bias
    sigma = torch.exp(0.5 * model.likelihood.logvar.double())
    log_w = (
        (
            Normal(z @ weight.T + bias, sigma).log_prob(x).sum(-1)
            + Normal(0.0, 1.0).log_prob(z).sum(-1)
            - Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
        )
        .flatten()
        .tolist()
    )
    top = max(log_w)
    reference = top + math.log(math.fsum(math.exp(w - top) for w in log_w) / k)
    assert bound == pytest.approx(reference, rel=1e-12, abs=1e-9)
