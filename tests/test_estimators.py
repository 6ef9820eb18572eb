"""vaelab.estimators: the IWAE loss and its three gradient estimators, and the SNR helper.

Independent references: torch.distributions for log w, central finite differences for the gradient,
vaelab.elbo with a Monte Carlo KL on the same noise at k = 1, Monte Carlo means with tolerances from
their standard errors for unbiasedness, and the closed-form posterior of the linear-Gaussian model.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Normal

import vaelab
from vaelab.estimators import ESTIMATORS, GradientSNR, IWAEObjective, gradient_snr, iwae_loss

F64 = torch.float64


def small_vae(seed: int = 0) -> vaelab.VAE:
    torch.manual_seed(seed)
    return vaelab.build_vae(latent_dim=3, hidden_dim=8, side=4).double()


def binary_images(n: int = 5, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 16), 0.4, dtype=F64), generator=g)


def grads(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


def test_bound_matches_torch_distributions_on_the_same_noise():
    model, x, k = small_vae(), binary_images(), 7
    _, terms = iwae_loss(model, x, k, generator=torch.Generator().manual_seed(3))
    mu, logvar = model.encoder(x)
    eps = torch.randn((k, *mu.shape), generator=torch.Generator().manual_seed(3), dtype=F64)
    z = mu + (0.5 * logvar).exp() * eps
    q = Normal(mu, (0.5 * logvar).exp())
    log_w = (
        Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1)
        + Normal(0.0, 1.0).log_prob(z).sum(-1)
        - q.log_prob(z).sum(-1)
    )
    expected = torch.logsumexp(log_w, 0) - math.log(k)
    torch.testing.assert_close(terms.bound, expected.detach())
    torch.testing.assert_close(terms.elbo, log_w.mean(0).detach())
    assert (terms.elbo <= terms.bound + 1e-12).all()  # Jensen on the same draws


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_k1_equals_the_elbo_with_a_monte_carlo_kl_on_the_same_noise(estimator):
    model, x = small_vae(), binary_images()
    loss, terms = iwae_loss(model, x, 1, estimator, generator=torch.Generator().manual_seed(5))
    reference = vaelab.elbo(model, x, kl="mc", generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(terms.bound, reference.elbo.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.kl, reference.kl.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss, -reference.elbo.mean(), rtol=1e-12, atol=1e-12)
    if estimator == "reparam":  # the same function of the parameters, so the same gradient
        for a, b in zip(grads(model, loss), grads(model, -reference.elbo.mean())):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_reparam_gradient_matches_central_finite_differences():
    model, x, k = small_vae(2), binary_images(4), 6

    def loss_at() -> torch.Tensor:  # the same noise at every evaluation
        return iwae_loss(model, x, k, generator=torch.Generator().manual_seed(11))[0]

    analytic = grads(model, loss_at())
    g = torch.Generator().manual_seed(0)
    params = list(model.parameters())
    h = 1e-6
    for _ in range(6):  # random directions through all parameters, encoder and decoder
        direction = [torch.randn(p.shape, generator=g, dtype=F64) for p in params]
        with torch.no_grad():
            for p, d in zip(params, direction):
                p += h * d
            up = loss_at().item()
            for p, d in zip(params, direction):
                p -= 2 * h * d
            down = loss_at().item()
            for p, d in zip(params, direction):
                p += h * d
        numeric = (up - down) / (2 * h)
        exact = sum((a * d).sum() for a, d in zip(analytic, direction)).item()
        assert abs(numeric - exact) < 1e-6 * max(1.0, abs(exact)), (numeric, exact)


@pytest.mark.parametrize("estimator", ["dreg", "stl"])
def test_the_decoder_gradient_is_the_same_for_every_estimator(estimator):
    model, x, k = small_vae(4), binary_images(), 5
    reference, _ = iwae_loss(model, x, k, "reparam", generator=torch.Generator().manual_seed(8))
    other, _ = iwae_loss(model, x, k, estimator, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(other, reference)  # the value is L_k for every estimator
    decoder = list(model.decoder.parameters())
    for a, b in zip(torch.autograd.grad(other, decoder), torch.autograd.grad(reference, decoder)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


class RowPosterior(nn.Module):
    """q(z|x_n) = N(mu_n, diag(exp(logvar_n))) with one free (mu_n, logvar_n) per row: the gradient of a
    batch loss w.r.t. row n is the single-draw estimate of row n, so a batch of N copies of one x gives
    N independent draws of the estimator."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        super().__init__()
        self.latent_dim = mu.shape[-1]
        self.mu, self.logvar = nn.Parameter(mu.clone()), nn.Parameter(logvar.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu, self.logvar


def per_draw_gradients(estimator: str, k: int, draws: int, offset: float, seed: int) -> torch.Tensor:
    """(draws, 4): single-draw estimates of grad_(mu, logvar) L_k for one x of a 2-D linear-Gaussian
    model, with q = the exact posterior shifted by ``offset`` in the mean and widened in variance."""
    linear = vaelab.LinearGaussianModel.random(data_dim=4, latent_dim=2, sigma2=0.5, seed=0)
    x = linear.sample(1, generator=torch.Generator().manual_seed(1))
    mean, cov = linear.posterior(x)
    mu = (mean + offset).expand(draws, -1)
    logvar = (torch.diagonal(cov).log() + 0.7).expand(draws, -1)
    model = linear.vae(RowPosterior(mu, logvar))
    loss, _ = iwae_loss(model, x.expand(draws, -1), k, estimator, generator=torch.Generator().manual_seed(seed))
    g_mu, g_logvar = torch.autograd.grad(loss * draws, (model.encoder.mu, model.encoder.logvar))
    return -torch.cat([g_mu, g_logvar], dim=1)  # gradients of L_k itself


@pytest.mark.slow
def test_dreg_is_unbiased_for_the_iwae_encoder_gradient():
    draws = 40_000
    reparam = per_draw_gradients("reparam", 5, draws, 0.8, seed=1)
    dreg = per_draw_gradients("dreg", 5, draws, 0.8, seed=2)
    difference = dreg.mean(0) - reparam.mean(0)
    standard_error = (dreg.var(0) / draws + reparam.var(0) / draws).sqrt()
    assert (difference.abs() < 5 * standard_error).all(), (difference, standard_error)
    assert (reparam.mean(0).abs() > 10 * standard_error).all()  # a gradient worth checking
    assert (dreg.var(0) < reparam.var(0)).all()  # and a less noisy one


@pytest.mark.slow
def test_sticking_the_landing_is_biased_for_k_above_1_but_not_for_k_1():
    draws = 40_000
    for k, biased in ((1, False), (5, True)):
        reparam = per_draw_gradients("reparam", k, draws, 0.8, seed=3)
        stl = per_draw_gradients("stl", k, draws, 0.8, seed=4)
        difference = stl.mean(0) - reparam.mean(0)
        z = (difference.abs() / (stl.var(0) / draws + reparam.var(0) / draws).sqrt()).max().item()
        assert (z > 8) if biased else (z < 5), (k, difference, z)


def test_dreg_has_zero_variance_at_the_exact_posterior():
    linear = vaelab.LinearGaussianModel.random(data_dim=5, latent_dim=2, sigma2=0.5, seed=0)
    model = linear.vae()  # q = p(z|x) exactly: log w_i = log p(x) for every z_i
    x = linear.sample(3, generator=torch.Generator().manual_seed(2))
    encoder = list(model.encoder.parameters())
    for estimator, zero in (("dreg", True), ("stl", True), ("reparam", False)):
        loss, terms = iwae_loss(model, x, 10, estimator, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(terms.bound, linear.log_marginal(x))
        largest = max(g.abs().max().item() for g in torch.autograd.grad(loss, encoder))
        assert (largest < 1e-9) if zero else (largest > 1e-3), (estimator, largest)


def test_iwae_objective_calls_the_loss_with_the_global_generator():
    model, x = small_vae(), binary_images()
    objective = IWAEObjective(k=4, estimator="dreg")
    torch.manual_seed(9)
    loss, terms = objective(model, x)
    torch.manual_seed(9)
    expected, expected_terms = iwae_loss(model, x, 4, "dreg")
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(terms.bound, expected_terms.bound)
    assert objective.describe() == "iwae(k=4, estimator=dreg)"


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: IWAEObjective(k=0), ValueError, "k"),
        (lambda: IWAEObjective(k=2.5), TypeError, "k"),
        (lambda: IWAEObjective(estimator="score"), ValueError, "'reparam'"),
        (lambda: iwae_loss(small_vae(), binary_images(), 2, "DReG"), ValueError, "estimator"),
        (lambda: iwae_loss(small_vae(), binary_images() * 3, 2), ValueError, "[0, 1]"),
    ],
)
def test_bad_arguments_are_clear_errors(call, error, words):
    with pytest.raises(error, match=None) as info:
        call()
    assert words in str(info.value)


def test_dreg_refuses_a_posterior_it_cannot_detach():
    class Opaque:
        def rsample(self, n, generator=None):
            return torch.zeros(n, 5, 3, dtype=F64, requires_grad=True)

        def log_prob(self, z):
            return z.sum(-1)

    model = small_vae()
    model.posterior = lambda x: Opaque()  # type: ignore[method-assign]
    with pytest.raises(TypeError, match="estimator='reparam'"):
        iwae_loss(model, binary_images(), 2, "dreg")


def test_gradient_snr_matches_the_known_signal_to_noise_ratio():
    # g_j = a_j + s_j * noise: SNR_j = |a_j| / s_j exactly
    a = torch.tensor([2.0, -1.0, 0.5, 0.0], dtype=F64)
    s = torch.tensor([1.0, 4.0, 0.25, 1.0], dtype=F64)
    p = nn.Parameter(torch.zeros(4, dtype=F64))
    dead = nn.Parameter(torch.zeros(2, dtype=F64))  # never gets a gradient: left out
    gen = torch.Generator().manual_seed(0)

    def loss_fn() -> torch.Tensor:
        noise = torch.randn(4, generator=gen, dtype=F64)
        return (p * (a + s * noise)).sum() + 0.0 * dead.sum()

    draws = 5_000
    result = gradient_snr(loss_fn, {"p": [p], "dead": [dead]}, draws=draws)
    assert isinstance(result, GradientSNR) and result.draws == draws
    expected = a.abs() / s
    # the SNR estimate's standard error is about sqrt((1 + SNR^2 / 2) / draws)
    tolerance = 5 * ((1 + expected**2 / 2) / draws).sqrt()
    assert ((result.snr["p"] - expected).abs() < tolerance).all(), result.snr["p"]
    assert len(result.snr["dead"]) == 0 and math.isnan(result.mean["dead"])
    assert abs(result.mean["p"] - result.snr["p"].mean().item()) < 1e-12
    assert p.grad is None  # the parameters' .grad is left alone


def test_gradient_snr_of_iwae_runs_on_a_vae():
    model, x = small_vae(), binary_images(8)
    result = gradient_snr(
        lambda: iwae_loss(model, x, 3, "dreg")[0],
        {"encoder": model.encoder.parameters(), "decoder": model.decoder.parameters()},
        draws=20,
    )
    assert set(result.mean) == {"encoder", "decoder"}
    assert all(v > 0 and math.isfinite(v) for v in result.mean.values())


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"draws": 1}, "at least 2"),
        ({"groups": {"a": []}}, "no parameters"),
        ({"loss_fn": lambda: torch.zeros(3, requires_grad=True)}, "scalar"),
    ],
)
def test_gradient_snr_errors(kwargs, words):
    p = nn.Parameter(torch.zeros(3))
    arguments = {"loss_fn": lambda: (p * torch.randn(3)).sum(), "groups": {"p": [p]}, "draws": 5, **kwargs}
    with pytest.raises(ValueError, match=words):
        gradient_snr(**arguments)
    with pytest.raises(ValueError, match="two groups"):
        gradient_snr(arguments["loss_fn"], {"a": [p], "b": [p]})


def test_reparam_works_with_a_flow_posterior_and_dreg_refuses_it():
    from vaelab.models.flows import PlanarFlowEncoder

    torch.manual_seed(0)
    encoder = PlanarFlowEncoder(vaelab.MLPEncoder(16, 8, 2), n_flows=3)
    model = vaelab.VAE(encoder, vaelab.MLPDecoder(2, 8, 16), vaelab.BernoulliLikelihood())
    x = binary_images().float()
    _, terms = iwae_loss(model, x, 4, generator=torch.Generator().manual_seed(1))
    expected = vaelab.iwae_bound(model, x, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(terms.bound, expected.detach())
    with pytest.raises(TypeError, match="estimator='reparam'"):
        iwae_loss(model, x, 4, "dreg")
