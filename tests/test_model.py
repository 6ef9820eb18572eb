"""Model assembly, shapes, sampling, interpolation, bad input."""

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

import vaelab
from vaelab import build_vae, elbo, iwae_bound


def independent_elbo(model, x, eps):
    """reconstruction and KL of one-sample ELBO estimates, from torch.distributions and the given noise
    eps: (S, batch, latent_dim), using only the model's networks (encoder, decoder) and likelihood settings."""
    mu, logvar = model.encoder(x)
    q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    params = model.decoder(mu + torch.exp(0.5 * logvar) * eps)
    if isinstance(model.likelihood, vaelab.BernoulliLikelihood):
        p_x = Independent(Bernoulli(logits=params, validate_args=False), 1)
    else:
        p_x = Independent(Normal(params, torch.exp(0.5 * model.likelihood.logvar)), 1)
    prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    return p_x.log_prob(x).mean(0), kl_divergence(q, prior)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_through_each_architecture_matches_torch_distributions(architecture, likelihood):
    """Shapes through the model, and the ELBO's reconstruction and KL
    against torch.distributions on the same noise, drawn from the generator passed to elbo."""
    torch.manual_seed(0)
    model = build_vae(latent_dim=4, hidden_dim=32, architecture=architecture, likelihood=likelihood).double()
    x = torch.rand(5, 784, dtype=torch.float64)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 4)
    terms = elbo(model, x, n_samples=3, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reconstruction, kl = independent_elbo(model, x, eps)
    torch.testing.assert_close(terms.reconstruction, reconstruction, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(terms.elbo, reconstruction - kl, rtol=1e-10, atol=1e-9)
    assert model.sample(6).shape == (6, 784)
    assert model.reconstruct(x).shape == (5, 784)
    assert model.interpolate(x[0], x[1], steps=7).shape == (7, 784)
    assert iwae_bound(model, x, k=4).shape == (5,)


@pytest.mark.parametrize(
    "make",
    [
        lambda: vaelab.LinearGaussianModel.random().vae(),
        lambda: build_vae(latent_dim=3, hidden_dim=8).double(),
        lambda: build_vae(latent_dim=3, hidden_dim=8, architecture="conv").double(),
    ],
)
def test_float64_models_sample_in_float64(make):
    """The prior draws in the model's dtype (it drew float32 and every float64 model failed to sample);
    with a generator the draw is z = randn(n, d) in float64, decoded."""
    model = make()
    images = model.sample(3, generator=torch.Generator().manual_seed(2))
    assert images.dtype == torch.float64 and images.shape[0] == 3
    z = torch.randn(3, model.latent_dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(images, model.likelihood.mean(model.decoder(z)), rtol=0, atol=0)
        assert model.sample(2, mean=False).dtype == torch.float64


@pytest.mark.parametrize("hidden_dim", [64, 400])
def test_conv_model_has_the_hidden_size_its_config_says(hidden_dim):
    """build_vae(architecture="conv") used to cap the dense layers at 256 units while the config said 400."""
    model = build_vae(architecture="conv", hidden_dim=hidden_dim, latent_dim=5)
    assert model.config.hidden_dim == hidden_dim
    dense_in = model.encoder.conv[-2]
    assert dense_in.out_features == hidden_dim and model.encoder.head.in_features == hidden_dim
    assert model.decoder.dense[0].out_features == hidden_dim and model.decoder.dense[2].in_features == hidden_dim
    # parameter count by hand: convs, dense layers and the head, each weight + bias
    conv = (1 * 32 * 16 + 32) + (32 * 64 * 16 + 64)
    expected_encoder = conv + (3136 * hidden_dim + hidden_dim) + (hidden_dim * 10 + 10)
    expected_decoder = (5 * hidden_dim + hidden_dim) + (hidden_dim * 3136 + 3136) + (64 * 32 * 16 + 32) + (32 * 16 + 1)
    assert sum(p.numel() for p in model.encoder.parameters()) == expected_encoder
    assert sum(p.numel() for p in model.decoder.parameters()) == expected_decoder


def test_interpolation_starts_and_ends_at_the_reconstructions():
    torch.manual_seed(0)
    model = build_vae(latent_dim=3, hidden_dim=16)
    x = torch.rand(2, 784)
    path = model.interpolate(x[0], x[1], steps=5)
    torch.testing.assert_close(path[0], model.reconstruct(x[:1])[0])
    torch.testing.assert_close(path[-1], model.reconstruct(x[1:])[0])


def test_untrained_bernoulli_decoder_gives_about_784_log_2_nats():
    torch.manual_seed(0)
    model = build_vae()
    x = torch.bernoulli(torch.full((64, 784), 0.5))
    recon = elbo(model, x).reconstruction.mean().item()
    assert -784 * 0.75 < recon < -784 * 0.6  # log 2 = 0.693 nats per pixel at logits near 0


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.rand(4, 783), ValueError, "784"),
        (torch.rand(4, 28, 28), ValueError, "dimensions"),
        (torch.randint(0, 255, (4, 784), dtype=torch.uint8), TypeError, "floating-point"),
        (torch.rand(4, 784) * 255, ValueError, "divide by 255"),
        (torch.rand(0, 784), ValueError, "batch size 0"),
        ([[0.0] * 784], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_gives_a_clear_error(x, error, match):
    model = build_vae(latent_dim=2, hidden_dim=8)
    with pytest.raises(error, match=match):
        elbo(model, x)


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one_is_rejected(k):
    model = build_vae(latent_dim=2, hidden_dim=8)
    with pytest.raises(ValueError, match="k must be"):
        iwae_bound(model, torch.rand(2, 784), k=k)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="latent_dim"):
        build_vae(latent_dim=0)
    with pytest.raises(ValueError, match="likelihood"):
        build_vae(likelihood="poisson")
    with pytest.raises(ValueError, match="kl must be"):
        elbo(build_vae(latent_dim=2, hidden_dim=8), torch.rand(1, 784), kl="exact")


def test_manifold_codes_are_inverse_normal_cdf_of_an_even_grid():
    codes = vaelab.plots.manifold_codes(n=5, eps=0.05)
    u = torch.linspace(0.05, 0.95, 5, dtype=torch.float64)
    expected = torch.erfinv(2 * u - 1) * 2**0.5  # Phi^{-1}(u)
    torch.testing.assert_close(codes[:5, 0], expected.float())
    torch.testing.assert_close(codes[::5, 1], expected.flip(0).float())
