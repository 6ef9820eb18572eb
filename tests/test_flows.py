"""vaelab.models.flows: planar flows on q(z|x), checked against brute-force Jacobians
(torch.autograd.functional.jacobian), torch.distributions and importance-sampling identities; and the
objectives with a flow posterior (a swappable q: ``rsample_with_log_prob``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, MultivariateNormal, Normal

import vaelab
from vaelab.core.recognition import DiagonalGaussian
from vaelab.models.flows import FlowPosterior, PlanarFlow, PlanarFlowEncoder, planar_transform, planar_u_hat

F64 = torch.float64


def _random_flow(batch: int, d: int, k: int, seed: int = 0, scale: float = 1.0) -> FlowPosterior:
    g = torch.Generator().manual_seed(seed)
    mu, logvar = torch.randn(2, batch, d, generator=g, dtype=F64)
    base = DiagonalGaussian(mu, logvar)
    return FlowPosterior(
        base,
        scale * torch.randn(batch, k, d, generator=g, dtype=F64),
        scale * torch.randn(batch, k, d, generator=g, dtype=F64),
        torch.randn(batch, k, generator=g, dtype=F64),
    )


@pytest.mark.parametrize("d", [1, 2, 5])
def test_log_det_equals_brute_force_jacobian(d):
    q = _random_flow(batch=3, d=d, k=4, seed=d, scale=2.0)
    z0 = torch.randn(3, d, dtype=F64, generator=torch.Generator().manual_seed(9))
    _, log_det = q.transform(z0)
    for i in range(3):

        def f(v, i=i):
            z = z0.clone()
            z[i] = v
            return q.transform(z)[0][i]

        jac = torch.autograd.functional.jacobian(f, z0[i])
        sign, logabsdet = torch.linalg.slogdet(jac)
        assert sign > 0, "every planar map keeps the orientation (det > 0)"
        torch.testing.assert_close(log_det[i], logabsdet, rtol=1e-10, atol=1e-10)


def test_u_hat_keeps_maps_invertible_for_any_u():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(200, 3, generator=g, dtype=F64)
    w = w / w.norm(dim=-1, keepdim=True)
    u = -2 * w + 0.1 * torch.randn(200, 3, generator=g, dtype=F64)  # w^T u < -1: not invertible as it is
    assert ((w * u).sum(-1) < -1).all()
    wu_hat = (w * planar_u_hat(u, w)).sum(-1)
    assert (wu_hat > -1).all()
    torch.testing.assert_close(wu_hat, torch.nn.functional.softplus((w * u).sum(-1)) - 1)
    # along w, the map is s -> s + (w^T u_hat / ||w||) tanh(||w|| s + b): strictly increasing
    s = torch.linspace(-10, 10, 2001, dtype=F64)
    z = s[:, None, None] * w / w.norm(dim=-1, keepdim=True)
    fz, _ = planar_transform(z, u, w, torch.zeros(200, dtype=F64))
    along = (fz * w).sum(-1) / w.norm(dim=-1)
    assert (along.diff(dim=0) > 0).all()
    # far beyond: w^T u = -50, det = e^-150 at w^T z + b = 0, still a finite log-determinant
    _, log_det = planar_transform(torch.zeros(200, 3, dtype=F64), -50 * w, w, torch.zeros(200, dtype=F64))
    torch.testing.assert_close(log_det, torch.nn.functional.softplus(torch.full((200,), -50.0, dtype=F64)).log())
    assert torch.isfinite(log_det).all()


def test_log_q_matches_change_of_variables_with_torch_distributions():
    q = _random_flow(batch=2, d=3, k=5, seed=2)
    g = torch.Generator().manual_seed(3)
    z, log_q = q.rsample_with_log_prob(4, g)
    g = torch.Generator().manual_seed(3)
    eps = torch.randn(4, 2, 3, generator=g, dtype=F64)
    z0 = q.base.mu + (0.5 * q.base.logvar).exp() * eps  # the same draws
    log_q0 = Normal(q.base.mu, (0.5 * q.base.logvar).exp()).log_prob(z0).sum(-1)
    for s in range(4):
        for i in range(2):

            def f(v, s=s, i=i):
                zz = z0[s].clone()
                zz[i] = v
                return q.transform(zz)[0][i]

            jac = torch.autograd.functional.jacobian(f, z0[s, i])
            expected = log_q0[s, i] - torch.linalg.slogdet(jac).logabsdet
            torch.testing.assert_close(log_q[s, i], expected)
            torch.testing.assert_close(z[s, i], f(z0[s, i]))


def test_flow_density_is_normalized():
    """E_q[p(z) / q(z)] = 1 for any normalized p: here a 2-D Gaussian (torch.distributions)."""
    q = _random_flow(batch=1, d=2, k=6, seed=4)
    q = q._replace(base=DiagonalGaussian(torch.zeros(1, 2, dtype=F64), torch.zeros(1, 2, dtype=F64)))
    z, log_q = q.rsample_with_log_prob(400_000, torch.Generator().manual_seed(5))
    p = MultivariateNormal(torch.zeros(2, dtype=F64), torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64))
    ratio = (p.log_prob(z) - log_q).exp()
    error = ratio.std() / math.sqrt(ratio.numel())
    assert abs(ratio.mean() - 1) < 5 * error, (ratio.mean(), error)


def test_free_flow_and_amortized_flow_have_the_shapes_and_gradients():
    flow = PlanarFlow(latent_dim=2, n_flows=3, generator=torch.Generator().manual_seed(0))
    z, log_q = flow.posterior(4).rsample_with_log_prob(7)
    assert z.shape == (7, 4, 2) and log_q.shape == (7, 4)
    log_q.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in flow.parameters())
    torch.manual_seed(0)
    encoder = PlanarFlowEncoder(vaelab.MLPEncoder(6, 8, 2), n_flows=3)
    x = torch.rand(5, 6)
    q = encoder.posterior(x)
    assert q.u.shape == (5, 3, 2) and q.w.shape == (5, 3, 2) and q.b.shape == (5, 3)
    torch.testing.assert_close(q.base.mu, encoder(x)[0])
    assert encoder.flow_head.out_features == 3 * (2 * 2 + 1)


def _flow_vae(seed: int = 0) -> vaelab.VAE:
    torch.manual_seed(seed)
    encoder = PlanarFlowEncoder(vaelab.MLPEncoder(10, 16, 2), n_flows=4)
    with torch.no_grad():  # flows far from the identity, so that a mistake shows
        encoder.flow_head.bias.normal_(0, 1.0)
        encoder.flow_head.weight.normal_(0, 0.3)
    return vaelab.VAE(encoder, vaelab.MLPDecoder(2, 16, 10), vaelab.BernoulliLikelihood()).double()


def test_objectives_use_the_flow_posterior():
    model = _flow_vae()
    x = torch.rand(6, 10, generator=torch.Generator().manual_seed(1)).round().double()
    q = model.posterior(x)
    assert isinstance(q, FlowPosterior)
    g = torch.Generator().manual_seed(2)
    terms = vaelab.elbo(model, x, n_samples=30, kl="mc", generator=g)
    g = torch.Generator().manual_seed(2)
    z, log_q = q.rsample_with_log_prob(30, g)
    log_px_z = Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1)
    log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(terms.elbo, (log_px_z + log_p - log_q).mean(0))
    torch.testing.assert_close(terms.kl, (log_q - log_p).mean(0))
    assert terms.kl_per_dim is None, "a flow does not factorize: one KL for the whole code, none per dimension"
    with pytest.raises(ValueError, match="free_bits needs the KL of each latent dimension"):
        vaelab.training_loss(terms, free_bits=0.5)
    g = torch.Generator().manual_seed(2)
    torch.testing.assert_close(vaelab.elbo(model, x, n_samples=30, generator=g).elbo, terms.elbo)  # auto = mc
    g = torch.Generator().manual_seed(2)
    log_w = vaelab.log_importance_weights(model, x, k=30, generator=g)
    torch.testing.assert_close(log_w, log_px_z + log_p - log_q)
    g = torch.Generator().manual_seed(2)
    torch.testing.assert_close(vaelab.iwae_bound(model, x, k=30, generator=g), torch.logsumexp(log_w, 0) - math.log(30))
    g = torch.Generator().manual_seed(2)
    estimate = vaelab.log_likelihood_estimate(model, x, k=30, generator=g)  # the MLP-Bernoulli shortcut
    torch.testing.assert_close(estimate, torch.logsumexp(log_w, 0) - math.log(30))
    # L_1 is the ELBO with a Monte Carlo KL, same noise
    g1, g2 = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    torch.testing.assert_close(
        vaelab.iwae_bound(model, x, k=1, generator=g1), vaelab.elbo(model, x, kl="mc", generator=g2).elbo
    )


def test_gaussian_objectives_are_unchanged():
    """The Gaussian q takes the same draws and arithmetic as before q became swappable."""
    torch.manual_seed(0)
    model = vaelab.build_vae(latent_dim=3, hidden_dim=8).double()
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(1)).round().double()
    mu, logvar = model.encoder(x)
    for kl in ("analytic", "mc"):
        g = torch.Generator().manual_seed(4)
        terms = vaelab.elbo(model, x, n_samples=3, kl=kl, generator=g)
        g = torch.Generator().manual_seed(4)
        z = mu + torch.exp(0.5 * logvar) * torch.randn((3, *mu.shape), dtype=F64, generator=g)
        rec = (x * model.decoder(z) - torch.logaddexp(torch.zeros((), dtype=F64), model.decoder(z))).sum(-1).mean(0)
        torch.testing.assert_close(terms.reconstruction, rec, rtol=1e-14, atol=1e-12)  # float64 rounding
        if kl == "analytic":
            assert torch.equal(terms.kl_per_dim, 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar))
        else:
            expected = (-0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar) + 0.5 * z.pow(2)).mean(0)
            torch.testing.assert_close(terms.kl_per_dim, expected, rtol=1e-12, atol=1e-12)
            assert terms.kl_per_dim.shape == (5, 3)


def test_errors_name_the_fix():
    model = _flow_vae()
    x = torch.rand(2, 10).round().double()
    with pytest.raises(
        ValueError, match="kl='analytic' needs a closed-form KL.*FlowPosterior.*StandardNormalPrior.*kl='mc'"
    ):
        vaelab.elbo(model, x, kl="analytic")
    with pytest.raises(ValueError, match="n_flows must be an integer >= 1"):
        PlanarFlowEncoder(vaelab.MLPEncoder(10, 4, 2), n_flows=0)
    with pytest.raises(TypeError, match="encoder must be a vaelab GaussianEncoder"):
        PlanarFlowEncoder(torch.nn.Linear(3, 4), n_flows=2)
    with pytest.raises(ValueError, match="latent_dim must be an integer >= 1"):
        PlanarFlow(0, 2)


def test_fit_trains_a_flow_vae_with_the_monte_carlo_kl():
    torch.manual_seed(0)
    images = (torch.rand(64, 10, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    data = vaelab.ImageData(images, torch.zeros(64, dtype=torch.long), binarization="static", image_shape=(2, 5))
    model = vaelab.VAE(
        PlanarFlowEncoder(vaelab.MLPEncoder(10, 16, 2), 3), vaelab.MLPDecoder(2, 16, 10), vaelab.BernoulliLikelihood()
    )
    before = vaelab.elbo(model, images, n_samples=200, kl="mc").elbo.mean().item()
    history = vaelab.fit(model, data, epochs=20, batch_size=16, lr=1e-2, kl="mc", progress=False)
    after = vaelab.elbo(model, images, n_samples=200, kl="mc").elbo.mean().item()
    assert len(history.train_elbo) == 20 and math.isfinite(history.train_elbo[-1])
    assert after > before + 1.0, (before, after)


def test_evaluate_elbo_of_a_flow_vae_uses_the_monte_carlo_kl_and_fit_takes_a_test_set():
    images = (torch.rand(64, 10, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    data = vaelab.ImageData(images, torch.zeros(64, dtype=torch.long), binarization="static", image_shape=(2, 5))
    model = vaelab.VAE(
        PlanarFlowEncoder(vaelab.MLPEncoder(10, 16, 2), 3), vaelab.MLPDecoder(2, 16, 10), vaelab.BernoulliLikelihood()
    )
    model.train()
    torch.manual_seed(3)
    value = vaelab.evaluate_elbo(model, data, batch_size=64)
    torch.manual_seed(3)  # the same one draw of z per image, by hand: log p(x|z) + log p(z) - log q(z|x)
    with torch.no_grad():
        z, log_q = model.posterior(images).rsample_with_log_prob(1)
        prior = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1)
        likelihood = torch.distributions.Independent(torch.distributions.Bernoulli(logits=model.decode(z)), 1)
        expected = (likelihood.log_prob(images) + prior.log_prob(z) - log_q).mean().item()
    assert value == pytest.approx(expected, rel=1e-5, abs=1e-4)
    assert model.training  # the mode is restored
    history = vaelab.fit(model, data, data, epochs=2, batch_size=16, kl="mc", progress=False)
    assert all(math.isfinite(v) for v in history.test_elbo)
