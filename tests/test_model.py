"""Model assembly, shapes, sampling, interpolation, bad input."""

import pytest
import torch

import vaelab
from vaelab import build_vae, elbo, iwae_bound


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes_through_the_model(architecture, likelihood):
    torch.manual_seed(0)
    model = build_vae(latent_dim=4, hidden_dim=32, architecture=architecture, likelihood=likelihood)
    x = torch.rand(5, 784)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 4)
    terms = elbo(model, x, n_samples=3)
    assert terms.elbo.shape == terms.kl.shape == terms.reconstruction.shape == (5,)
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)
    assert model.sample(6).shape == (6, 784)
    assert model.reconstruct(x).shape == (5, 784)
    assert model.interpolate(x[0], x[1], steps=7).shape == (7, 784)
    assert iwae_bound(model, x, k=4).shape == (5,)


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
    expected = torch.erfinv(2 * u - 1) * 2 ** 0.5  # Phi^{-1}(u)
    torch.testing.assert_close(codes[:5, 0], expected.float())
    torch.testing.assert_close(codes[::5, 1], expected.flip(0).float())
