"""The deterministic autoencoder of chapter 2, checked against hand-written formulas and baselines."""

from __future__ import annotations

import pytest
import torch

from vaelab.models.autoencoder import Autoencoder, fit_autoencoder, reconstruction_loss


def _low_rank_images(n: int, code_seed: int, side: int = 20) -> torch.Tensor:
    """Images in [0, 1] that depend only on a 2-D code: sigmoid(A z + b) with fixed A, b."""
    g = torch.Generator().manual_seed(0)
    a = 3 * torch.randn(side, 2, generator=g)
    b = torch.randn(side, generator=g)
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(code_seed))
    return torch.sigmoid(z @ a.T + b)


def test_reconstruction_loss_matches_hand_written_cross_entropy():
    torch.manual_seed(0)
    model = Autoencoder(input_dim=12, hidden_dim=7, latent_dim=3).double()
    x = torch.rand(5, 12, dtype=torch.float64)
    x_hat = model(x)
    expected = -(x * torch.log(x_hat) + (1 - x) * torch.log(1 - x_hat)).sum(-1)
    got = reconstruction_loss(model, x)
    assert got.shape == (5,)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_encode_decode_shapes_and_range():
    model = Autoencoder(input_dim=784, hidden_dim=16, latent_dim=2)
    x = torch.rand(4, 784)
    z = model.encode(x)
    assert z.shape == (4, 2)
    images = model.decode(torch.randn(3, 4, 2) * 50)  # extra leading dimension, extreme codes
    assert images.shape == (3, 4, 784)
    assert images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(model.reconstruct(x), model.decode(z).detach())


def test_fit_beats_the_mean_image_and_lowers_the_loss():
    torch.manual_seed(0)
    data = _low_rank_images(512, code_seed=1)
    model = Autoencoder(input_dim=data.shape[1], hidden_dim=32, latent_dim=2)
    losses = fit_autoencoder(model, data, epochs=60, batch_size=64, lr=3e-3, device="cpu", progress=False)
    assert len(losses) == 60 and losses[-1] < losses[0]
    test = _low_rank_images(256, code_seed=2)  # held-out images from the same 2-D family
    mse_model = (model.reconstruct(test) - test).pow(2).sum(-1).mean()
    mse_mean = (data.mean(0) - test).pow(2).sum(-1).mean()
    assert mse_model < 0.05 * mse_mean


def test_user_mistakes_raise_clear_errors():
    model = Autoencoder(input_dim=784, hidden_dim=8, latent_dim=2)
    with pytest.raises(ValueError, match="input_dim=784"):
        model.encode(torch.rand(3, 28))
    with pytest.raises(ValueError, match="latent_dim=2"):
        model.decode(torch.rand(3, 5))
    with pytest.raises(ValueError, match="divide by 255"):
        reconstruction_loss(model, 255 * torch.rand(3, 784))
    with pytest.raises(ValueError, match="lr"):
        fit_autoencoder(model, torch.rand(8, 784), epochs=1, lr=0.0, device="cpu")
    with pytest.raises(TypeError, match="latent_dim"):
        Autoencoder(latent_dim=2.0)
