"""ELBO <= L_k <= log p(x) on the linear-Gaussian model, where log p(x) is known exactly."""

import math
from unittest import mock

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vaelab import AffineEncoder, LinearGaussianModel, elbo, iwae_bound, log_likelihood_estimate


@pytest.fixture
def model():
    return LinearGaussianModel.random(data_dim=6, latent_dim=2, sigma2=0.3, seed=0)


@pytest.fixture
def rough_encoder(model):
    """A recognition model that is deliberately not the true posterior."""
    torch.manual_seed(0)
    encoder = model.exact_encoder()
    with torch.no_grad():
        encoder.linear.weight.mul_(0.6)
        encoder.logvar.add_(1.0)
    return encoder


def test_log_marginal_matches_brute_force_integration():
    lg = LinearGaussianModel.random(data_dim=3, latent_dim=1, sigma2=0.5, seed=2)
    x = lg.sample(4, generator=torch.Generator().manual_seed(0))
    z = torch.linspace(-12, 12, 100_001, dtype=torch.float64)
    mean = z[:, None, None] * lg.weight[:, 0] + lg.bias  # (grid, 1, D)
    log_joint = Normal(mean, math.sqrt(lg.sigma2)).log_prob(x[None]).sum(-1) + Normal(0, 1).log_prob(z)[:, None]
    brute = torch.log(torch.trapezoid(log_joint.exp(), z, dim=0))
    torch.testing.assert_close(lg.log_marginal(x), brute, rtol=0, atol=1e-8)


def test_true_posterior_matches_bayes_rule_by_sampling_weights(model):
    x = model.sample(1, generator=torch.Generator().manual_seed(1))
    mean, cov = model.posterior(x)
    # p(z|x) ∝ p(x|z) p(z): its log density differs from log p(x, z) by the constant log p(x)
    z = torch.randn(5, model.latent_dim, dtype=torch.float64)
    log_joint = Normal(z @ model.weight.T + model.bias, math.sqrt(model.sigma2)).log_prob(x).sum(-1) + Normal(
        0, 1
    ).log_prob(z).sum(-1)
    log_post = MultivariateNormal(mean[0], cov).log_prob(z)
    torch.testing.assert_close(log_joint - log_post, model.log_marginal(x).expand(5))


def test_exact_posterior_makes_every_importance_weight_equal_to_p_x(model):
    vae = model.vae()
    x = model.sample(8, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    # with the Monte Carlo KL on the same samples, each term is log w = log p(x) exactly
    terms = elbo(vae, x, n_samples=3, kl="mc")
    torch.testing.assert_close(terms.elbo, model.log_marginal(x))
    torch.testing.assert_close(iwae_bound(vae, x, k=10), model.log_marginal(x))


def test_elbo_equals_log_px_minus_kl_to_true_posterior(model, rough_encoder):
    vae = model.vae(rough_encoder)
    x = model.sample(5, generator=torch.Generator().manual_seed(4))
    mu, logvar = rough_encoder(x)
    mean, cov = model.posterior(x)
    q = MultivariateNormal(mu, torch.diag_embed(logvar.exp()))
    gap = kl_divergence(q, MultivariateNormal(mean, cov.expand(5, -1, -1)))
    torch.manual_seed(1)
    n = 20_000
    terms = elbo(vae, x, n_samples=n)
    # the reconstruction term is a Monte Carlo mean: bound its error by 5 standard errors
    from vaelab import reparameterize

    z = reparameterize(mu, logvar, 2000)
    per_sample = vae.likelihood.log_prob(x, vae.decode(z))
    standard_error = per_sample.std(0) / math.sqrt(n)
    assert torch.all((terms.elbo - (model.log_marginal(x) - gap)).abs() < 5 * standard_error)
    assert torch.all(gap > 0.05)  # the encoder really is off, so the check is not vacuous


def test_iwae_bound_increases_with_k_toward_log_px(model, rough_encoder):
    vae = model.vae(rough_encoder)
    x = model.sample(20, generator=torch.Generator().manual_seed(5))
    log_px = model.log_marginal(x).mean()
    torch.manual_seed(2)
    repeats = 200
    bounds = []
    for k in (1, 4, 16, 64, 256):
        values = torch.stack([iwae_bound(vae, x, k).mean() for _ in range(repeats)])
        bounds.append((values.mean().item(), (values.std() / math.sqrt(repeats)).item()))
    means = [m for m, _ in bounds]
    for (m1, s1), (m2, s2) in zip(bounds, bounds[1:]):
        assert m2 > m1 - 3 * math.hypot(s1, s2)
    assert means[-1] - means[0] > 0.05
    assert means[-1] <= log_px.item() + 3 * bounds[-1][1]
    assert log_px.item() - means[-1] < 0.25 * (log_px.item() - means[0])


class FixedNoise:
    """Stands in for vaelab.core.recognition.reparameterize: serves the rows of one fixed eps tensor in order, so
    that runs with different chunk sizes use the same k samples."""

    def __init__(self, eps):
        self.eps, self.used = eps, 0

    def __call__(self, mu, logvar, n_samples=None, generator=None):
        chunk = self.eps[self.used : self.used + n_samples]
        self.used += n_samples
        return mu + torch.exp(0.5 * logvar) * chunk


@pytest.mark.parametrize("chunk", [1, 7, 64, 299])
def test_chunked_bound_equals_unchunked_on_the_same_noise(model, rough_encoder, chunk):
    """Chunking is exact: iwae_bound and log_likelihood_estimate in chunks of 1..299 samples equal one chunk of
    all k = 300 on the same noise, and the unchunked value equals a log-mean-exp computed with
    torch.distributions from that noise."""
    vae = model.vae(rough_encoder)
    x = model.sample(7, generator=torch.Generator().manual_seed(6))
    eps = torch.randn(300, 7, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    results = {}
    for name, size in (("whole", 300), ("chunked", chunk)):
        noise = FixedNoise(eps)
        with torch.no_grad(), mock.patch("vaelab.core.recognition.reparameterize", noise):
            results[name] = iwae_bound(vae, x, k=300, chunk_size=size)
        assert noise.used == 300
    torch.testing.assert_close(results["chunked"], results["whole"], rtol=1e-13, atol=1e-12)
    noise = FixedNoise(eps)
    with mock.patch("vaelab.core.recognition.reparameterize", noise):
        estimate = log_likelihood_estimate(vae, x, k=300, batch_size=7, chunk_size=chunk)
    torch.testing.assert_close(estimate, results["whole"], rtol=1e-13, atol=1e-12)
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        log_w = (
            Normal(z @ model.weight.T + model.bias, math.sqrt(model.sigma2)).log_prob(x).sum(-1)
            + Normal(0.0, 1.0).log_prob(z).sum(-1)
            - Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
        )
    torch.testing.assert_close(results["whole"], torch.logsumexp(log_w, 0) - math.log(300), rtol=1e-12, atol=1e-10)


def test_log_likelihood_estimate_with_large_k_is_close_to_log_px(model, rough_encoder):
    vae = model.vae(rough_encoder)
    x = model.sample(7, generator=torch.Generator().manual_seed(6))
    estimate = log_likelihood_estimate(
        vae, x, k=5000, batch_size=3, chunk_size=700, generator=torch.Generator().manual_seed(9)
    )
    torch.testing.assert_close(estimate, model.log_marginal(x), rtol=0, atol=0.05)


def test_affine_encoder_can_learn_the_true_posterior(model):
    """The E-step of chapter 3: maximizing the ELBO over q closes the gap to log p(x)."""
    torch.manual_seed(0)
    encoder = AffineEncoder(model.data_dim, model.latent_dim).double()
    vae = model.vae(encoder)
    x = model.sample(256, generator=torch.Generator().manual_seed(7))
    optimizer = torch.optim.Adam(encoder.parameters(), lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        (-elbo(vae, x, n_samples=8).elbo.mean()).backward()
        optimizer.step()
    with torch.no_grad():
        gap = (model.log_marginal(x) - elbo(vae, x, n_samples=2000).elbo).mean()
    assert 0 <= gap.item() + 0.01 and gap.item() < 0.02
