"""Reparameterized samples: right moments, gradients to mu and log-variance."""

import math

import pytest
import torch

from vaelab import reparameterize


def test_samples_have_requested_mean_and_variance():
    torch.manual_seed(0)
    mu = torch.tensor([[1.0, -2.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, 1.0, -3.0]], dtype=torch.float64)
    n = 100_000
    z = reparameterize(mu, logvar, n)[:, 0]  # (n, 3)
    var = logvar.exp()[0]
    # mean within 5 standard errors; variance within 5 standard errors of the sample variance
    assert torch.all((z.mean(0) - mu[0]).abs() < 5 * torch.sqrt(var / n))
    assert torch.all((z.var(0) - var).abs() < 5 * var * math.sqrt(2 / (n - 1)))


def test_shapes_with_and_without_sample_dimension():
    mu, logvar = torch.zeros(4, 2), torch.zeros(4, 2)
    assert reparameterize(mu, logvar).shape == (4, 2)
    assert reparameterize(mu, logvar, 7).shape == (7, 4, 2)


def test_gradients_reach_mu_and_logvar():
    mu = torch.tensor([[0.5]], requires_grad=True)
    logvar = torch.tensor([[0.2]], requires_grad=True)
    torch.manual_seed(3)
    z = reparameterize(mu, logvar, 50_000)
    z.pow(2).mean().backward()
    # E[z^2] = mu^2 + exp(logvar): d/dmu = 2 mu, d/dlogvar = exp(logvar)
    assert mu.grad.item() == pytest.approx(2 * 0.5, abs=0.03)
    assert logvar.grad.item() == pytest.approx(math.exp(0.2), abs=0.05)


def test_generator_makes_samples_reproducible():
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    a = reparameterize(mu, logvar, 4, generator=torch.Generator().manual_seed(5))
    b = reparameterize(mu, logvar, 4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_posterior_object_samples_and_log_prob_match_torch_distributions():
    """q(z|x) as DiagonalGaussian: rsample is mu + sigma * eps with the generator's eps, and log_prob is
    Independent(Normal(mu, sigma), 1).log_prob."""
    from torch.distributions import Independent, Normal

    from vaelab.core.recognition import DiagonalGaussian

    g = torch.Generator().manual_seed(2)
    mu = torch.randn(3, 4, generator=g, dtype=torch.float64)
    logvar = torch.randn(3, 4, generator=g, dtype=torch.float64)
    q = DiagonalGaussian(mu, logvar)
    z = q.rsample(5, generator=torch.Generator().manual_seed(7))
    eps = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    sigma = torch.exp(0.5 * logvar)
    torch.testing.assert_close(z, mu + sigma * eps, rtol=0, atol=0)
    reference = Independent(Normal(mu, sigma), 1)
    torch.testing.assert_close(q.log_prob(z), reference.log_prob(z), rtol=1e-12, atol=1e-12)
