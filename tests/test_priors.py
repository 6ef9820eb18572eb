"""Every bound uses the model's own prior (issue 23, item 1): a learnable Gaussian prior and a test-local
mixture of Gaussians (no closed-form KL registered), in ``elbo`` (closed form and Monte Carlo KL),
``iwae_bound``, ``log_importance_weights``, ``log_likelihood_estimate`` (the MLP-Bernoulli shortcut and
the general path), the IWAE estimators, ``fit``, checkpoints and resume.

References: torch.distributions (kl_divergence, Normal, Bernoulli, MixtureSameFamily) evaluated by hand
on the same reparameterization noise (the same generator seed), Monte Carlo with a tolerance of 5
standard errors, and autograd through the hand-written bound."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.distributions as D
from torch import nn

import vaelab
from vaelab import GaussianPrior, ImageData, build_vae, fit
from vaelab.core.generative import BernoulliLikelihood, MLPDecoder
from vaelab.core.recognition import MLPEncoder
from vaelab.estimators import ESTIMATORS, IWAEObjective, bernoulli_mlp, iwae_loss
from vaelab.models.likelihoods import GaussianLikelihood
from vaelab.train.runs import RunMismatchError

LATENT, HIDDEN, SIDE = 3, 16, 6
PIXELS = SIDE * SIDE
PIXEL_LOGVAR = -1.0  # the Gaussian likelihood's fixed log sigma^2 in these tests
FIT = {"batch_size": 32, "device": "cpu", "seed": 1, "progress": False}


# ----------------------------------------------------------------------------- helpers


class MixturePrior(nn.Module):
    """p(z) = sum_c pi_c N(z | m_c, diag(exp(v_c))), all learnable; no closed-form KL is registered for it.

    Written out by hand (log-softmax weights, logsumexp over components), independent of vaelab."""

    def __init__(self, latent_dim: int = LATENT, components: int = 4, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.latent_dim = latent_dim
        self.logits = nn.Parameter(torch.randn(components, generator=g))
        self.means = nn.Parameter(1.5 * torch.randn(components, latent_dim, generator=g))
        self.logvars = nn.Parameter(0.5 * torch.randn(components, latent_dim, generator=g))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """z: (..., latent_dim) -> (...)."""
        d = z.unsqueeze(-2) - self.means  # (..., C, latent_dim)
        log_normal = -0.5 * (d.pow(2) * torch.exp(-self.logvars) + self.logvars + math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + log_normal, dim=-1)

    def sample(self, n: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        c = torch.multinomial(torch.softmax(self.logits.detach(), -1), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, dtype=self.means.dtype, generator=generator)
        return self.means[c] + torch.exp(0.5 * self.logvars[c]) * eps


def torch_prior(prior: nn.Module) -> D.Distribution:
    """The same p(z) as a torch.distributions object (differentiable in the prior's parameters)."""
    if isinstance(prior, MixturePrior):
        components = D.Independent(D.Normal(prior.means, torch.exp(0.5 * prior.logvars)), 1)
        return D.MixtureSameFamily(D.Categorical(logits=prior.logits), components)
    return D.Independent(D.Normal(prior.mean, torch.exp(0.5 * prior.logvar)), 1)


def set_gaussian_prior(model: vaelab.VAE) -> None:
    """A non-trivial N(m, diag(s^2)), far from N(0, I)."""
    with torch.no_grad():
        model.prior.mean.copy_(torch.tensor([0.8, -1.3, 2.0]))
        model.prior.logvar.copy_(torch.tensor([0.6, -0.9, 1.4]))


def make_model(prior: str, likelihood: str = "bernoulli", seed: int = 0, double: bool = True) -> vaelab.VAE:
    """A 36-3 VAE (MLP, hidden 16) with prior "gaussian" (learnable, set by hand) or "mixture"."""
    torch.manual_seed(seed)
    if prior == "gaussian":
        extra = {"likelihood": "gaussian", "gaussian_logvar": PIXEL_LOGVAR} if likelihood == "gaussian" else {}
        model = build_vae(latent_dim=LATENT, hidden_dim=HIDDEN, side=SIDE, prior="gaussian", **extra)
        assert isinstance(model.prior, GaussianPrior)
        set_gaussian_prior(model)
    else:
        lik = BernoulliLikelihood() if likelihood == "bernoulli" else GaussianLikelihood(PIXEL_LOGVAR)
        model = vaelab.VAE(
            MLPEncoder(PIXELS, HIDDEN, LATENT), MLPDecoder(LATENT, HIDDEN, PIXELS), lik, prior=MixturePrior()
        )
    return model.double() if double else model


def synthetic_data(n: int = 200, d: int = PIXELS, seed: int = 0, binarization: str = "dynamic") -> ImageData:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(4, d, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = (prototypes[labels] + 0.1 * torch.rand(n, d, generator=g)).clamp(0, 1)
    return ImageData(images, labels, binarization=binarization, image_shape=(SIDE, SIDE))


def batch(n: int = 6, likelihood: str = "bernoulli", seed: int = 3) -> torch.Tensor:
    """float64 images: binary for the Bernoulli likelihood, grey for the Gaussian one."""
    g = torch.Generator().manual_seed(seed)
    grey = torch.rand(n, PIXELS, generator=g, dtype=torch.float64)
    return torch.bernoulli(grey, generator=g) if likelihood == "bernoulli" else grey


def hand_log_parts(model: vaelab.VAE, x: torch.Tensor, eps: torch.Tensor, likelihood: str = "bernoulli"):
    """(log p(x|z), log p(z), log q(z|x)), each (k, batch), for z = mu + sigma * eps, with torch.distributions."""
    mu, logvar = model.encode(x)
    sigma = torch.exp(0.5 * logvar)
    z = mu + sigma * eps
    log_q = D.Independent(D.Normal(mu, sigma), 1).log_prob(z)
    log_p = torch_prior(model.prior).log_prob(z)
    params = model.decoder(z)
    if likelihood == "bernoulli":
        pixels = D.Bernoulli(logits=params, validate_args=False)
    else:
        pixels = D.Normal(params, math.exp(0.5 * PIXEL_LOGVAR))
    log_px = D.Independent(pixels, 1).log_prob(x.expand_as(params))
    return log_px, log_p, log_q


def noise(k: int, n: int, seed: int) -> torch.Tensor:
    """The draws q.rsample(k, generator) makes: eps ~ N(0, I), (k, batch, latent_dim), float64."""
    return torch.randn(k, n, LATENT, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- 1. a learnable Gaussian prior


@pytest.mark.parametrize("kl", ["analytic", "auto"])
def test_closed_form_kl_to_a_learnable_gaussian_prior_matches_torch_distributions(kl):
    model, x = make_model("gaussian"), batch()
    mu, logvar = model.encode(x)
    q = D.Normal(mu, torch.exp(0.5 * logvar))
    p = D.Normal(model.prior.mean, torch.exp(0.5 * model.prior.logvar))
    reference = D.kl_divergence(q, p)  # (batch, latent_dim)
    terms = vaelab.elbo(model, x, n_samples=1, kl=kl, generator=gen(7))
    torch.testing.assert_close(terms.kl, reference.sum(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.kl_per_dim, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.kl_per_dim.sum(-1), terms.kl, rtol=1e-12, atol=1e-12)
    # the bug this fixes: the KL to N(0, I) is far from it (the issue saw 6.7 nats per image)
    to_standard_normal = D.kl_divergence(q, D.Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    assert ((terms.kl - to_standard_normal).abs() > 1.0).all()
    # the reconstruction term on the same noise, and the ELBO that combines them
    log_px, _, _ = hand_log_parts(model, x, noise(1, len(x), 7))
    torch.testing.assert_close(terms.reconstruction, log_px.mean(0), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(terms.elbo, log_px.mean(0) - reference.sum(-1), rtol=1e-12, atol=1e-10)
    # the prior's parameters get the gradient of the closed form
    grads = torch.autograd.grad(terms.kl.sum(), [model.prior.mean, model.prior.logvar])
    expected = torch.autograd.grad(reference.sum(), [model.prior.mean, model.prior.logvar])
    for got, want in zip(grads, expected, strict=True):
        assert want.abs().min() > 1e-3
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_monte_carlo_kl_to_a_learnable_gaussian_prior_agrees_within_five_standard_errors():
    model, x, samples = make_model("gaussian"), batch(), 20_000
    with torch.no_grad():
        terms = vaelab.elbo(model, x, n_samples=samples, kl="mc", generator=gen(11))
        mu, logvar = model.encode(x)
        q = D.Normal(mu, torch.exp(0.5 * logvar))  # per dimension, (batch, latent_dim)
        p = D.Normal(model.prior.mean, torch.exp(0.5 * model.prior.logvar))
        z = mu + torch.exp(0.5 * logvar) * noise(samples, len(x), 11)  # the same draws, by hand
        per_dim_samples = q.log_prob(z) - p.log_prob(z)  # (samples, batch, latent_dim)
    reference = D.kl_divergence(q, p)
    # the same noise gives the same estimate, to float rounding
    torch.testing.assert_close(terms.kl, per_dim_samples.sum(-1).mean(0), rtol=1e-10, atol=1e-10)
    # and the estimate agrees with the closed form within 5 standard errors, in total and per dimension
    standard_error = per_dim_samples.sum(-1).std(0) / math.sqrt(samples)
    assert ((terms.kl - reference.sum(-1)).abs() < 5 * standard_error).all(), (terms.kl, reference, standard_error)
    assert terms.kl_per_dim is not None and terms.kl_per_dim.shape == (len(x), LATENT)
    torch.testing.assert_close(terms.kl_per_dim.sum(-1), terms.kl, rtol=1e-10, atol=1e-10)
    per_dim_error = per_dim_samples.std(0) / math.sqrt(samples)
    assert ((terms.kl_per_dim - reference).abs() < 5 * per_dim_error).all()
    # the bug this fixes: the KL to N(0, I) is many standard errors away
    to_standard_normal = D.kl_divergence(q, D.Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    assert ((terms.kl - to_standard_normal).abs() > 50 * standard_error).all()


# ----------------------------------------------------------------------------- 2. a mixture prior (no closed form)


def test_the_test_mixture_prior_is_the_torch_distributions_mixture():
    prior = MixturePrior().double()
    z = torch.randn(50, 4, LATENT, dtype=torch.float64, generator=gen(0))
    torch.testing.assert_close(prior.log_prob(z), torch_prior(prior).log_prob(z), rtol=1e-12, atol=1e-12)


def test_analytic_kl_without_a_closed_form_is_a_clear_error_naming_monte_carlo():
    model, x = make_model("mixture"), batch()
    with pytest.raises(ValueError, match=r"kl='mc'.*") as info:
        vaelab.elbo(model, x, kl="analytic")
    assert "MixturePrior" in str(info.value) and "\n" not in str(info.value)


def test_auto_kl_with_a_mixture_prior_is_the_monte_carlo_kl_of_torch_distributions():
    model, x, samples = make_model("mixture"), batch(), 64
    auto = vaelab.elbo(model, x, n_samples=samples, kl="auto", generator=gen(5))
    mc = vaelab.elbo(model, x, n_samples=samples, kl="mc", generator=gen(5))
    for a, b in zip(auto, mc, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    assert auto.kl_per_dim is None and mc.kl_per_dim is None
    log_px, log_p, log_q = hand_log_parts(model, x, noise(samples, len(x), 5))
    torch.testing.assert_close(mc.kl, (log_q - log_p).mean(0), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(mc.reconstruction, log_px.mean(0), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(mc.elbo, (log_px + log_p - log_q).mean(0), rtol=1e-12, atol=1e-10)
    # and it is not the KL to N(0, I) of the same draws
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * noise(samples, len(x), 5)
    to_standard_normal = (log_q - D.Independent(D.Normal(torch.zeros_like(z), 1.0), 1).log_prob(z)).mean(0)
    assert ((mc.kl - to_standard_normal).abs() > 0.5).all()


def test_monte_carlo_kl_to_a_mixture_prior_converges_within_five_standard_errors():
    """An independent large-sample estimate, drawn with torch.distributions' own sampler."""
    model, x = make_model("mixture"), batch()
    with torch.no_grad():
        terms = vaelab.elbo(model, x, n_samples=20_000, kl="mc", generator=gen(1))
        mu, logvar = model.encode(x)
        q = D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1)
        torch.manual_seed(123)
        z = q.sample((20_000,))
        per_sample = q.log_prob(z) - torch_prior(model.prior).log_prob(z)
    standard_error = math.sqrt(2) * per_sample.std(0) / math.sqrt(20_000)  # two independent estimates
    assert ((terms.kl - per_sample.mean(0)).abs() < 5 * standard_error).all()


def test_free_bits_and_latent_summary_with_a_mixture_prior_are_clear_errors():
    model, x = make_model("mixture"), batch()
    terms = vaelab.elbo(model, x)
    with pytest.raises(ValueError, match="free_bits") as info:
        vaelab.training_loss(terms, free_bits=0.5)
    assert "\n" not in str(info.value)
    vaelab.training_loss(terms)  # without free bits it trains
    data = synthetic_data(n=20, binarization="static")
    data = ImageData(data.images.double(), data.labels, data.binarization, data.image_shape)
    with pytest.raises(ValueError, match="closed form") as info:
        vaelab.latent_summary(model, data)
    assert "MixturePrior" in str(info.value)


def test_latent_summary_with_a_gaussian_prior_is_the_kl_of_each_dimension_to_that_prior():
    model = make_model("gaussian")
    data = synthetic_data(n=20, binarization="static")
    data = ImageData(data.images.double(), data.labels, data.binarization, data.image_shape)
    summary = vaelab.latent_summary(model, data)
    with torch.no_grad():
        mu, logvar = model.encode(data.images)
        reference = D.kl_divergence(
            D.Normal(mu, torch.exp(0.5 * logvar)), D.Normal(model.prior.mean, torch.exp(0.5 * model.prior.logvar))
        ).mean(0)
    torch.testing.assert_close(summary.kl_per_dim, reference, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- 3. the importance-weighted bounds


@pytest.mark.parametrize("prior", ["gaussian", "mixture"])
def test_log_importance_weights_and_iwae_bound_use_the_model_prior(prior):
    model, x, k = make_model(prior), batch(), 10
    with torch.no_grad():
        log_px, log_p, log_q = hand_log_parts(model, x, noise(k, len(x), 21))
        by_hand = log_px + log_p - log_q
        torch.testing.assert_close(
            vaelab.log_importance_weights(model, x, k, generator=gen(21)), by_hand, rtol=1e-12, atol=1e-10
        )
        bound = vaelab.iwae_bound(model, x, k, generator=gen(21))
        torch.testing.assert_close(bound, torch.logsumexp(by_hand, 0) - math.log(k), rtol=1e-12, atol=1e-10)
        # in chunks of 3: the chunks' draws one after another from the same generator
        g = gen(22)
        chunks = [torch.randn(n, len(x), LATENT, dtype=torch.float64, generator=g) for n in (3, 3, 3, 1)]
        log_px, log_p, log_q = hand_log_parts(model, x, torch.cat(chunks))
        chunked = vaelab.iwae_bound(model, x, k, chunk_size=3, generator=gen(22))
        torch.testing.assert_close(
            chunked, torch.logsumexp(log_px + log_p - log_q, 0) - math.log(k), rtol=1e-12, atol=1e-10
        )


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("prior", ["gaussian", "mixture"])
def test_log_likelihood_estimate_uses_the_model_prior(prior, likelihood):
    model, k, batch_size = make_model(prior, likelihood), 40, 5
    x = batch(10, likelihood)
    assert bernoulli_mlp.applies_to(model) == (likelihood == "bernoulli")  # the shortcut and the general path
    estimate = vaelab.log_likelihood_estimate(model, x, k=k, batch_size=batch_size, generator=gen(31))
    g, expected = gen(31), []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            rows = x[start : start + batch_size]
            eps = torch.randn(k, len(rows), LATENT, dtype=torch.float64, generator=g)
            log_px, log_p, log_q = hand_log_parts(model, rows, eps, likelihood)
            expected.append(torch.logsumexp(log_px + log_p - log_q, 0) - math.log(k))
    torch.testing.assert_close(estimate, torch.cat(expected), rtol=1e-10, atol=1e-9)


# ----------------------------------------------------------------------------- 4. the IWAE estimators


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("prior", ["mixture", "gaussian"])
def test_iwae_loss_is_minus_the_hand_written_bound_and_trains_the_prior(prior, estimator):
    model, x, k = make_model(prior), batch(), 5
    loss, terms = iwae_loss(model, x, k, estimator, generator=gen(41))
    log_px, log_p, log_q = hand_log_parts(model, x, noise(k, len(x), 41))
    log_w = log_px + log_p - log_q
    bound = torch.logsumexp(log_w, 0) - math.log(k)
    torch.testing.assert_close(loss, -bound.mean(), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(terms.bound, bound.detach(), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(terms.kl, (log_q - log_p).mean(0).detach(), rtol=1e-12, atol=1e-10)
    # the prior enters L_k only through log p(z_i): every estimator gives it the gradient of L_k
    prior_params = list(model.prior.parameters())
    got = torch.autograd.grad(loss, prior_params, retain_graph=True)
    want = torch.autograd.grad(-bound.mean(), prior_params, retain_graph=True)
    for g_got, g_want in zip(got, want, strict=True):
        assert g_got.abs().sum() > 1e-6
        torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-12)
    if estimator == "reparam":  # autograd through L_k as written: every parameter's gradient
        params = list(model.parameters())
        got = torch.autograd.grad(loss, params, retain_graph=True)
        want = torch.autograd.grad(-bound.mean(), params)
        for g_got, g_want in zip(got, want, strict=True):
            torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- 5. fit, checkpoints, resume


def _prior_state(model: vaelab.VAE) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.prior.named_parameters()}


@pytest.mark.parametrize(
    "options",
    [
        {"kl": "auto"},
        {"kl": "analytic"},
        {"kl": "mc"},
        {"objective": IWAEObjective(3, "reparam")},
        {"objective": IWAEObjective(3, "dreg")},
        {"objective": IWAEObjective(3, "stl")},
    ],
    ids=["elbo-auto", "elbo-analytic", "elbo-mc", "iwae-reparam", "iwae-dreg", "iwae-stl"],
)
def test_fit_moves_a_learnable_gaussian_prior(options):
    torch.manual_seed(0)
    model = build_vae(latent_dim=LATENT, hidden_dim=HIDDEN, side=SIDE, prior="gaussian")
    before = _prior_state(model)
    assert all(torch.equal(v, torch.zeros_like(v)) for v in before.values())  # it starts as N(0, I)
    fit(model, synthetic_data(), epochs=2, lr=1e-2, **options, **FIT)
    for name, value in _prior_state(model).items():
        assert (value - before[name]).abs().max() > 1e-3, name  # Adam moves each by about lr per step


def test_fit_with_an_iwae_objective_moves_a_mixture_prior():
    model = make_model("mixture", double=False)
    before = _prior_state(model)
    fit(model, synthetic_data(), epochs=1, lr=1e-2, objective=IWAEObjective(4, "dreg"), **FIT)
    for name, value in _prior_state(model).items():
        assert (value - before[name]).abs().max() > 1e-3, name


def test_a_checkpoint_saves_restores_and_resumes_a_learnable_prior(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    data, test = synthetic_data(), synthetic_data(n=40, seed=5)
    torch.manual_seed(0)
    model = build_vae(latent_dim=LATENT, hidden_dim=HIDDEN, side=SIDE, prior="gaussian")
    fit(model, data, test, epochs=2, lr=1e-2, checkpoint=ckpt, **FIT)
    loaded, _ = vaelab.load_model(ckpt)
    assert isinstance(loaded.prior, GaussianPrior) and loaded.prior.learnable
    trained = _prior_state(model)
    assert all(v.abs().max() > 1e-3 for v in trained.values())  # it did move
    for name, value in _prior_state(loaded).items():
        assert torch.equal(value, trained[name]), name
    # the restored prior is the one the bounds use: its closed-form KL is torch.distributions' to N(m, s^2)
    x = data.fixed_binarization(0).images[:4]
    with torch.no_grad():
        mu, logvar = loaded.encode(x)
        reference = D.kl_divergence(
            D.Normal(mu, torch.exp(0.5 * logvar)), D.Normal(trained["mean"], torch.exp(0.5 * trained["logvar"]))
        ).sum(-1)
        torch.testing.assert_close(vaelab.elbo(loaded, x, kl="analytic").kl, reference, rtol=1e-5, atol=1e-5)
    # resuming to 3 epochs continues the prior (and its Adam state) where 3 epochs straight would be
    fit(model, data, test, epochs=3, lr=1e-2, checkpoint=ckpt, **FIT)
    torch.manual_seed(0)
    straight = build_vae(latent_dim=LATENT, hidden_dim=HIDDEN, side=SIDE, prior="gaussian")
    fit(straight, data, test, epochs=3, lr=1e-2, **FIT)
    resumed, _ = vaelab.load_model(ckpt)
    for name, value in _prior_state(resumed).items():
        assert torch.equal(value, _prior_state(straight)[name]), name


def test_resuming_a_learnable_prior_run_with_the_standard_normal_prior_is_a_mismatch(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    data = synthetic_data()
    fit(
        build_vae(latent_dim=LATENT, hidden_dim=HIDDEN, side=SIDE, prior="gaussian"),
        data,
        epochs=1,
        checkpoint=ckpt,
        **FIT,
    )
    before = ckpt.read_bytes()
    other = build_vae(latent_dim=LATENT, hidden_dim=HIDDEN, side=SIDE, prior="standard_normal")
    with pytest.raises(RunMismatchError, match=re.escape("model.prior='gaussian' in the file but")) as info:
        fit(other, data, epochs=2, checkpoint=ckpt, **FIT)
    assert "standard_normal" in str(info.value)
    assert ckpt.read_bytes() == before


# ----------------------------------------------------------------------------- 6. fit with a mixture prior


def test_fit_with_a_mixture_prior_needs_no_flag_and_the_elbo_rises():
    model = make_model("mixture", double=False)
    before = _prior_state(model)
    full = synthetic_data(n=448)
    data, test = full.take(320), ImageData(full.images[320:], full.labels[320:], "dynamic", (SIDE, SIDE))
    x = test.fixed_binarization(0).images  # 128 held-out images of the same distribution, binarized once

    def per_image_elbo() -> torch.Tensor:  # the mean of 64 ELBO draws per image (kl="auto": Monte Carlo)
        with torch.no_grad():
            return vaelab.elbo(model, x, n_samples=64, generator=gen(0)).elbo

    untrained = per_image_elbo()
    history = fit(model, data, test, epochs=5, lr=1e-2, **FIT)  # no kl flag: "auto" picks Monte Carlo
    gain = per_image_elbo() - untrained
    # the mean gain on the same images must exceed 5 standard errors of the paired differences, and a nat
    assert gain.mean() > max(1.0, 5 * float(gain.std()) / math.sqrt(len(gain))), (gain.mean(), gain.std())
    assert history.train_elbo[-1] > history.train_elbo[0], history.train_elbo
    assert all(math.isfinite(v) for v in history.train_kl)
    for name, value in _prior_state(model).items():
        assert (value - before[name]).abs().max() > 1e-3, name
    with pytest.raises(ValueError, match="kl='mc'"):
        fit(make_model("mixture", double=False), data, epochs=1, kl="analytic", **FIT)
