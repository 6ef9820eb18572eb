"""Closed-form KL against torch.distributions, a Monte Carlo estimate and 1-D quadrature."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vaelab import kl_monte_carlo, kl_per_dimension, kl_standard_normal


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(64, 7, generator=g, dtype=torch.float64) * 2
    logvar = torch.randn(64, 7, generator=g, dtype=torch.float64) * 3
    reference = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_standard_normal(mu, logvar), reference)


def test_kl_matches_quadrature_in_one_dimension():
    mu, logvar = 0.7, -0.4
    sigma = math.exp(0.5 * logvar)
    z = torch.linspace(mu - 12 * sigma, mu + 12 * sigma, 200_001, dtype=torch.float64)
    q = Normal(mu, sigma)
    integrand = q.log_prob(z).exp() * (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z))
    quadrature = torch.trapezoid(integrand, z)
    as_tensor = lambda v: torch.tensor([[v]], dtype=torch.float64)  # noqa: E731
    closed = kl_standard_normal(as_tensor(mu), as_tensor(logvar))
    assert abs(closed.item() - quadrature.item()) < 1e-8


def test_kl_closed_form_agrees_with_monte_carlo_within_standard_error():
    """The closed form against a Monte Carlo average built only from torch.distributions (samples and
    log-densities), and vaelab's kl_monte_carlo against the same independent average on the same samples."""
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.3, -1.2, 0.8]], dtype=torch.float64)
    n = 200_000
    q, p = Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(n, *mu.shape, generator=g, dtype=torch.float64)
    samples = (q.log_prob(z) - p.log_prob(z)).sum(-1)  # (n, 1)
    standard_error = samples.std() / math.sqrt(n)
    assert abs(samples.mean().item() - kl_standard_normal(mu, logvar).item()) < 5 * standard_error.item()
    torch.testing.assert_close(kl_monte_carlo(mu, logvar, z=z), samples.mean(0), rtol=1e-12, atol=1e-12)


def test_kl_monte_carlo_draws_from_the_generator():
    mu, logvar = torch.full((2, 3), 0.5), torch.full((2, 3), -0.3)  # q != p: the estimate depends on z
    first = kl_monte_carlo(mu, logvar, n_samples=4, generator=torch.Generator().manual_seed(5))
    again = kl_monte_carlo(mu, logvar, n_samples=4, generator=torch.Generator().manual_seed(5))
    other = kl_monte_carlo(mu, logvar, n_samples=4, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_kl_is_zero_only_at_the_prior_and_nonnegative():
    zero = torch.zeros(3, 4)
    assert torch.all(kl_standard_normal(zero, zero) == 0)
    mu = torch.randn(100, 4)
    logvar = torch.randn(100, 4) * 5
    assert torch.all(kl_per_dimension(mu, logvar) >= 0)


def test_kl_is_accurate_for_tiny_log_variance():
    # exp(l) - 1 - l ~ l^2 / 2: naive float32 evaluation loses it entirely, expm1 keeps it
    logvar = torch.tensor([[1e-4]])
    value = kl_per_dimension(torch.zeros(1, 1), logvar).item()
    assert value == pytest.approx(0.5 * (1e-4) ** 2 / 2, rel=1e-3)
