"""vaelab.models.conditional: the conditional VAE by composition, checked against the networks called by hand
on [x, onehot(y)] and against torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal

import vaelab
from vaelab.models.conditional import ConditionalVAE, build_conditional_vae, one_hot_labels

D, C, LATENT = 12, 10, 3


def _model(seed: int = 0) -> ConditionalVAE:
    torch.manual_seed(seed)
    return build_conditional_vae(latent_dim=LATENT, hidden_dim=16, input_dim=D, n_classes=C)


def _data(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, D, generator=g).round(), torch.randint(0, C, (n,), generator=g)


def _eye(y: torch.Tensor) -> torch.Tensor:
    return torch.eye(C)[y]  # one-hot rows, independently of F.one_hot


def test_posterior_and_decoder_see_the_label():
    model = _model()
    x, y = _data()
    view = model.given(y)
    mu, logvar = model.encoder.net(torch.cat([x, _eye(y)], 1))
    q = view.posterior(x)
    torch.testing.assert_close(q.mu, mu)
    torch.testing.assert_close(q.logvar, logvar)
    z = torch.randn(4, len(x), LATENT)  # (S, batch, d): the label is broadcast over S
    expected = model.decoder.net(torch.cat([z, _eye(y).expand(4, -1, -1)], -1))
    torch.testing.assert_close(view.decode(z), expected)
    other = model.given((y + 1) % C).posterior(x)
    assert not torch.allclose(other.mu, mu), "a different label must change q(z|x, y)"


def test_int_label_equals_a_tensor_of_that_label():
    model = _model()
    x, _ = _data()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = vaelab.elbo(model.given(7), x, generator=g1).elbo
    b = vaelab.elbo(model.given(torch.full((len(x),), 7)), x, generator=g2).elbo
    torch.testing.assert_close(a, b)


def test_elbo_matches_torch_distributions():
    model = _model().double()
    x, y = _data()
    x = x.double()
    view = model.given(y)
    g = torch.Generator().manual_seed(3)
    terms = vaelab.elbo(view, x, n_samples=200, kl="mc", generator=g)
    # the same draws by hand: eps from the same generator, q and p(x|z, y) from torch.distributions
    g = torch.Generator().manual_seed(3)
    mu, logvar = model.encoder.net(torch.cat([x, _eye(y).double()], 1))
    eps = torch.randn((200, *mu.shape), dtype=mu.dtype, generator=g)
    z = mu + (0.5 * logvar).exp() * eps
    logits = model.decoder.net(torch.cat([z, _eye(y).double().expand(200, -1, -1)], -1))
    log_px_z = Bernoulli(logits=logits).log_prob(x).sum(-1)
    log_q = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(terms.elbo, (log_px_z + log_p - log_q).mean(0))
    analytic = vaelab.elbo(view, x, n_samples=1).kl
    kl = torch.distributions.kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(analytic, kl)


def test_importance_weighted_bound_and_log_likelihood_estimate():
    model = _model().double()
    x, y = _data()
    x = x.double()
    view = model.given(y)
    g = torch.Generator().manual_seed(4)
    log_w = vaelab.log_importance_weights(view, x, k=50, generator=g)
    g = torch.Generator().manual_seed(4)
    bound = vaelab.iwae_bound(view, x, k=50, chunk_size=50, generator=g)
    torch.testing.assert_close(bound, torch.logsumexp(log_w, 0) - math.log(50))
    g = torch.Generator().manual_seed(4)
    estimate = vaelab.log_likelihood_estimate(view, x, k=50, generator=g)
    torch.testing.assert_close(estimate, bound)  # one batch: the same draws
    with pytest.raises(ValueError, match="one label at a time, model.given\\(c\\) on x\\[y == c\\]"):
        vaelab.log_likelihood_estimate(view, x, k=5, batch_size=4)
    # with a 1-D latent, log p(x|y) by quadrature on a grid is the truth L_k approaches
    torch.manual_seed(0)
    small = build_conditional_vae(latent_dim=1, hidden_dim=8, input_dim=D, n_classes=C).double()
    grid = torch.linspace(-8, 8, 4001, dtype=torch.float64)[:, None]
    views = small.given(y)
    with torch.no_grad():
        logits = views.decode(grid[:, None, :].expand(-1, len(x), -1))  # (G, batch, D)
        log_joint = Bernoulli(logits=logits).log_prob(x).sum(-1) + Normal(0.0, 1.0).log_prob(grid)
        exact = torch.logsumexp(log_joint, 0) + math.log(grid[1, 0] - grid[0, 0])
        big = vaelab.log_likelihood_estimate(views, x, k=20000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(big, exact, atol=0.02, rtol=0)


def test_labels_change_the_model_learned():
    """Two labels, two fixed images: the conditional ELBO approaches log p(x|y) = 0 while the
    unconditional model's cannot go above log 1/2 = -0.69 nats (it must spread over both images)."""
    torch.manual_seed(0)
    images = torch.tensor([[1.0] * 6 + [0.0] * 6, [0.0] * 6 + [1.0] * 6])
    y = torch.tensor([0, 1] * 32)
    x = images[y]
    model = build_conditional_vae(latent_dim=2, hidden_dim=32, input_dim=D, n_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        loss = -vaelab.elbo(model.given(y), x).elbo.mean()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        log_p = vaelab.log_likelihood_estimate(model.given(y), x, k=500)
    assert log_p.mean() > -0.1, f"log p(x|y) should approach 0 nats, got {log_p.mean():.3f}"


def test_sample_from_a_label():
    model = _model()
    g = torch.Generator().manual_seed(0)
    images = model.given(3).sample(5, generator=g)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, LATENT, generator=g)
    expected = torch.sigmoid(model.decoder.net(torch.cat([z, _eye(torch.full((5,), 3))], 1)))
    torch.testing.assert_close(images, expected)
    assert model.given(torch.arange(10)).sample().shape == (10, D)


def test_one_hot_labels():
    torch.testing.assert_close(one_hot_labels(torch.tensor([2, 0]), 3), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    torch.testing.assert_close(one_hot_labels(1, 3), torch.tensor([0.0, 1, 0]))


@pytest.mark.parametrize(
    ("y", "error", "words"),
    [
        (torch.tensor([0, 1]), ValueError, "x has 6 rows but this view holds 2 labels"),
        (torch.tensor([0, 1, 2, 3, 4, 10]), ValueError, "y must lie in 0..9 (n_classes=10), got the label 10"),
        (-1, ValueError, "got the label -1"),
        (torch.zeros(6), TypeError, "y must hold integer labels, got dtype torch.float32"),
        (2.0, TypeError, "y must be an int or an integer torch.Tensor"),
        (True, TypeError, "y must be an int or an integer torch.Tensor"),
        (torch.zeros(6, 1, dtype=torch.long), ValueError, "y must be an int or a (batch,) tensor of labels"),
    ],
)
def test_bad_labels_are_clear_errors(y, error, words):
    model = _model()
    x, _ = _data()
    with pytest.raises(error, match=None) as info:
        vaelab.elbo(model.given(y), x)
    assert words in str(info.value)


def test_bad_networks_are_clear_errors():
    with pytest.raises(ValueError, match="the encoder must take input_dim = data size \\+ n_classes"):
        ConditionalVAE(vaelab.MLPEncoder(8, 4, 2), vaelab.MLPDecoder(12, 4, 8), vaelab.BernoulliLikelihood(), 10)
    with pytest.raises(ValueError, match="encoder's latent_dim \\(3\\) must equal"):
        ConditionalVAE(vaelab.MLPEncoder(18, 4, 3), vaelab.MLPDecoder(12, 4, 8), vaelab.BernoulliLikelihood(), 10)
    with pytest.raises(ValueError, match="n_classes must be an integer >= 1"):
        build_conditional_vae(n_classes=0)


def test_view_fails_input_checks_like_a_vae():
    model = _model()
    x, y = _data()
    with pytest.raises(ValueError, match="x has 13 features per example but the model expects input_dim=12"):
        vaelab.elbo(model.given(y), torch.zeros(6, 13))
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        vaelab.elbo(model.given(y), x * 255)
