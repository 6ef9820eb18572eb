"""The objectives' bugs fixed in issue 13, each against an independent computation: generator= on every
sampling entry point, training_loss with free bits after a Monte Carlo KL, and the train/eval mode."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

import vaelab
from vaelab import (
    ImageData,
    build_vae,
    elbo,
    encode_dataset,
    iwae_bound,
    latent_summary,
    log_importance_weights,
    log_likelihood_estimate,
    rate_distortion,
    training_loss,
)

F64 = torch.float64


def small_model(**overrides):
    torch.manual_seed(0)
    return build_vae(**{"latent_dim": 3, "hidden_dim": 8, "side": 4, **overrides}).double()


def images(n=5, seed=0):
    return torch.bernoulli(torch.full((n, 16), 0.4, dtype=F64), generator=torch.Generator().manual_seed(seed))


def reference_log_weights(model, x, eps):
    """log p(x|z) + log p(z) - log q(z|x) with torch.distributions, for z = mu + sigma * eps."""
    mu, logvar = model.encoder(x)
    sigma = torch.exp(0.5 * logvar)
    z = mu + sigma * eps
    log_px_z = Independent(Bernoulli(logits=model.decoder(z), validate_args=False), 1).log_prob(x)
    return log_px_z + Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(mu, sigma).log_prob(z).sum(-1)


def test_log_importance_weights_draws_from_the_generator():
    model, x = small_model(), images()
    with torch.no_grad():
        log_w = log_importance_weights(model, x, 7, generator=torch.Generator().manual_seed(3))
        eps = torch.randn(7, 5, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
        torch.testing.assert_close(log_w, reference_log_weights(model, x, eps), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("shortcut", [True, False])
def test_iwae_bound_and_log_likelihood_estimate_draw_from_the_generator(shortcut):
    """Same seed, same value (without touching the global RNG); against log-mean-exp of reference weights
    for one chunk (the MLP/Bernoulli shortcut and the general path alike)."""
    model, x = small_model(), images()
    if not shortcut:
        model = vaelab.VAE(model.encoder, torch.nn.Sequential(model.decoder), model.likelihood)  # not the exact type
    k = 40
    eps = torch.randn(k, 5, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    with torch.no_grad():
        expected = torch.logsumexp(reference_log_weights(model, x, eps), 0) - math.log(k)
        torch.manual_seed(123)
        state = torch.get_rng_state()
        bound = iwae_bound(model, x, k, chunk_size=k, generator=torch.Generator().manual_seed(4))
    estimate = log_likelihood_estimate(model, x, k=k, chunk_size=k, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)  # the global stream was not used
    torch.testing.assert_close(bound, expected, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(estimate, expected, rtol=1e-12, atol=1e-10)


def test_elbo_draws_from_the_generator():
    model, x = small_model(), images()
    first = elbo(model, x, n_samples=2, generator=torch.Generator().manual_seed(5))
    again = elbo(model, x, n_samples=2, generator=torch.Generator().manual_seed(5))
    other = elbo(model, x, n_samples=2, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first.elbo, again.elbo) and not torch.equal(first.elbo, other.elbo)


def test_monte_carlo_kl_per_dimension_comes_from_the_same_samples():
    """elbo(kl="mc") gives kl_per_dim = mean_s [log q(z_sj|x) - log N(z_sj|0,1)], computed here with
    torch.distributions on the generator's noise, and kl = its sum."""
    model, x = small_model(), images()
    terms = elbo(model, x, n_samples=4, kl="mc", generator=torch.Generator().manual_seed(7))
    eps = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(7), dtype=F64)
    mu, logvar = model.encoder(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    per_dim = (Normal(mu, torch.exp(0.5 * logvar)).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).mean(0)
    torch.testing.assert_close(terms.kl_per_dim, per_dim, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.kl, per_dim.sum(-1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_free_bits_use_the_kl_estimate_that_elbo_made(kl):
    """training_loss with free bits clamps the per-dimension KL that elbo computed (it used the closed form
    even after elbo(kl="mc")); the expected value is built here from torch.distributions."""
    model, x = small_model(), images()
    terms = elbo(model, x, n_samples=2, kl=kl, generator=torch.Generator().manual_seed(8))
    eps = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(8), dtype=F64)
    mu, logvar = model.encoder(x)
    q = Normal(mu, torch.exp(0.5 * logvar))
    if kl == "analytic":
        per_dim = torch.distributions.kl_divergence(q, Normal(0.0, 1.0))
    else:
        z = mu + q.scale * eps
        per_dim = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).mean(0)
    z = mu + q.scale * eps
    reconstruction = Independent(Bernoulli(logits=model.decoder(z), validate_args=False), 1).log_prob(x).mean(0)
    free_bits, beta = 0.3, 0.7
    expected = -(reconstruction.mean() - beta * per_dim.mean(0).clamp(min=free_bits).sum())
    torch.testing.assert_close(training_loss(terms, beta, free_bits), expected, rtol=1e-12, atol=1e-12)


def data_of(x):
    return ImageData(x.float(), torch.zeros(len(x), dtype=torch.long), image_shape=(4, 4))


@pytest.mark.parametrize("mode", [True, False])
def test_evaluation_helpers_restore_the_train_or_eval_mode(mode):
    """rate_distortion, encode_dataset, latent_summary and log_likelihood_estimate evaluate in eval mode and
    leave the model in the mode they found it (rate_distortion left it in eval mode)."""
    torch.manual_seed(0)
    model = build_vae(latent_dim=3, hidden_dim=8, side=4)
    seen = []
    model.encoder.register_forward_hook(lambda module, *_: seen.append(module.training))
    data = data_of(images(6))
    for call in (
        lambda: rate_distortion(model, data),
        lambda: encode_dataset(model, data),
        lambda: latent_summary(model, data),
        lambda: log_likelihood_estimate(model, data.images, k=3),
    ):
        model.train(mode)
        seen.clear()
        call()
        assert seen and not any(seen)  # evaluated in eval mode
        assert model.training is mode and all(m.training is mode for m in model.modules())


def test_evaluating_restores_the_mode_even_after_an_error():
    from vaelab.estimators.evaluation import evaluating

    model = build_vae(latent_dim=2, hidden_dim=4, side=4).train()
    with pytest.raises(RuntimeError), evaluating(model):
        assert not model.training
        raise RuntimeError("boom")
    assert model.training
