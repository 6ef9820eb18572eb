"""vaelab's learned priors (issue 25, item 1): the mixture of Gaussians and the VampPrior.

References: torch.distributions.MixtureSameFamily (also for components hundreds of standard deviations
apart, in float32 and float64), sample moments within 5 standard errors, a brute-force mixture built by
hand from the encoder at the pseudo-inputs, and fit, checkpoints, resume and the command line."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
import torch.distributions as D

import vaelab
from vaelab import ImageData, MixtureOfGaussiansPrior, VampPrior, build_vae, fit
from vaelab.core.recognition import MLPEncoder
from vaelab.train.runs import RunMismatchError

LATENT, HIDDEN, SIDE = 3, 16, 6
PIXELS = SIDE * SIDE
FIT = {"batch_size": 32, "device": "cpu", "seed": 1, "progress": False}


def torch_mixture(logits: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor) -> D.Distribution:
    components = D.Independent(D.Normal(means, torch.exp(0.5 * logvars)), 1)
    return D.MixtureSameFamily(D.Categorical(logits=logits), components)


def mixture(dtype: torch.dtype = torch.float64, seed: int = 0, spread: float = 1.5) -> MixtureOfGaussiansPrior:
    torch.manual_seed(seed)
    prior = MixtureOfGaussiansPrior(LATENT, n_components=4).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(4, generator=g))
        prior.means.copy_(spread * torch.randn(4, LATENT, generator=g))
        prior.logvars.copy_(0.5 * torch.randn(4, LATENT, generator=g))
    return prior


def synthetic_data(n: int = 200, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(4, PIXELS, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = (prototypes[labels] + 0.1 * torch.rand(n, PIXELS, generator=g)).clamp(0, 1)
    return ImageData(images, labels, binarization="dynamic", image_shape=(SIDE, SIDE))


# ----------------------------------------------------------------------------- the mixture of Gaussians


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixture_log_prob_matches_torch_mixture_same_family(dtype):
    prior = mixture(dtype)
    z = torch.randn(5, 7, LATENT, dtype=dtype, generator=torch.Generator().manual_seed(1)) * 2
    reference = torch_mixture(prior.logits, prior.means, prior.logvars).log_prob(z)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(prior.log_prob(z), reference, **tolerance)
    assert prior.log_prob(z).shape == (5, 7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixture_log_prob_is_finite_and_exact_for_far_apart_components(dtype):
    """Components 1,000 standard deviations apart: every density underflows to 0 in either dtype at the
    points between them, and the log-sum-exp still gives the exact value (float64's MixtureSameFamily)."""
    prior = mixture(dtype)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-1000.0] * LATENT, [1000.0] * LATENT, [0.0, 500, -500], [3.0, 0, 0]]))
        prior.logvars.zero_()
    z = torch.tensor([[0.0, 0, 0], [-1000, -1000, -1000], [700, -700, 700], [1e4, 0, 0]], dtype=dtype)
    got = prior.log_prob(z)
    assert torch.isfinite(got).all()
    p64 = prior.double()
    reference = torch_mixture(p64.logits, p64.means, p64.logvars).log_prob(z.double())
    torch.testing.assert_close(got.double(), reference, rtol=1e-6, atol=1e-3)
    naive = torch.log(
        torch.exp(
            torch_mixture(p64.logits, p64.means, p64.logvars)
            .component_distribution.log_prob(z.double().unsqueeze(-2))
            .to(dtype)
        ).sum(-1)
    )
    assert not torch.isfinite(naive).all()  # the case a plain log of a sum of densities gets wrong


def test_mixture_samples_have_the_mixture_mean_and_variance_within_five_standard_errors():
    prior = mixture(torch.float64)
    n = 100_000
    z = prior.sample(n, generator=torch.Generator().manual_seed(2))
    assert z.shape == (n, LATENT) and z.dtype == torch.float64
    pi = torch.softmax(prior.logits, 0).detach()
    m, var = prior.means.detach(), prior.logvars.detach().exp()
    mean = (pi[:, None] * m).sum(0)
    second = (pi[:, None] * (var + m**2)).sum(0)
    variance = second - mean**2
    assert ((z.mean(0) - mean).abs() <= 5 * (variance / n).sqrt()).all()
    fourth = torch_mixture(prior.logits, prior.means, prior.logvars).sample((200_000,)).sub(mean).pow(2)
    se_var = (fourth.var(0) / n).sqrt()  # the standard error of a sample variance
    assert ((z.var(0) - variance).abs() <= 5 * se_var).all()


def test_mixture_has_no_closed_form_kl_so_auto_is_the_monte_carlo_kl_of_the_same_draws():
    torch.manual_seed(0)
    model = vaelab.VAE(
        MLPEncoder(PIXELS, HIDDEN, LATENT),
        vaelab.MLPDecoder(LATENT, HIDDEN, PIXELS),
        vaelab.BernoulliLikelihood(),
        mixture(torch.float32),
    ).double()
    x = torch.bernoulli(torch.rand(6, PIXELS, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    terms = vaelab.elbo(model, x, n_samples=3, generator=torch.Generator().manual_seed(4))
    mu, logvar = model.encode(x)
    eps = torch.randn(3, 6, LATENT, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    z = mu + torch.exp(0.5 * logvar) * eps
    log_q = D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1).log_prob(z)
    p = model.prior
    reference = (log_q - torch_mixture(p.logits, p.means, p.logvars).log_prob(z)).mean(0)
    torch.testing.assert_close(terms.kl, reference.detach(), rtol=1e-10, atol=1e-10)
    assert terms.kl_per_dim is None
    with pytest.raises(ValueError, match="kl='mc'"):
        vaelab.elbo(model, x, kl="analytic")


# ----------------------------------------------------------------------------- the VampPrior


def vamp_model(k: int = 5) -> vaelab.VAE:
    torch.manual_seed(0)
    encoder = MLPEncoder(PIXELS, HIDDEN, LATENT)
    prior = VampPrior(encoder, n_pseudo_inputs=k)
    return vaelab.VAE(encoder, vaelab.MLPDecoder(LATENT, HIDDEN, PIXELS), vaelab.BernoulliLikelihood(), prior)


def test_vamp_log_prob_is_the_mixture_of_the_encoders_posteriors_at_the_pseudo_inputs():
    model = vamp_model().double()
    with torch.no_grad():
        model.prior.pseudo_inputs_raw.copy_(torch.linspace(-0.5, 1.5, 5 * PIXELS).reshape(5, PIXELS))
    u = model.prior.pseudo_inputs_raw.clamp(0, 1)  # hardtanh(u, 0, 1) is a clamp to [0, 1]
    components = []
    for k in range(5):  # each component by hand: the encoder's posterior at u_k
        h = torch.relu(u[k] @ model.encoder.hidden.weight.T + model.encoder.hidden.bias)
        out = h @ model.encoder.head.weight.T + model.encoder.head.bias
        components.append(D.Independent(D.Normal(out[:LATENT], torch.exp(0.5 * out[LATENT:])), 1))
    z = 2 * torch.randn(4, 6, LATENT, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    brute = torch.logsumexp(torch.stack([c.log_prob(z) for c in components]), 0) - math.log(5)
    torch.testing.assert_close(model.prior.log_prob(z), brute, rtol=1e-12, atol=1e-12)
    assert (model.prior.pseudo_inputs() >= 0).all() and (model.prior.pseudo_inputs() <= 1).all()


def test_vamp_holds_the_encoder_once_and_follows_the_model():
    model = vamp_model()
    assert [k for k in model.state_dict() if k.startswith("prior.")] == ["prior.pseudo_inputs_raw"]
    assert len(list(model.parameters())) == len({id(p) for p in model.parameters()})
    assert model.prior.encoder is model.encoder
    twin = copy.deepcopy(model)
    assert twin.prior.encoder is twin.encoder  # a copy of the model uses its own encoder
    model.double()
    assert model.prior.log_prob(torch.zeros(2, LATENT, dtype=torch.float64)).dtype == torch.float64
    pseudo = model.prior.pseudo_inputs_raw.detach()
    assert abs(pseudo.mean().item() - 0.05) < 0.01 and abs(pseudo.std().item() - 0.01) < 0.005  # N(0.05, 0.01^2)


def test_vamp_samples_have_the_mixture_mean_within_five_standard_errors():
    model = vamp_model().double()
    with torch.no_grad():
        mu, logvar = model.prior.components()
        n = 50_000
        z = model.prior.sample(n, generator=torch.Generator().manual_seed(6))
    mean = mu.mean(0)
    variance = (logvar.exp() + mu**2).mean(0) - mean**2
    assert z.shape == (n, LATENT)
    assert ((z.mean(0) - mean).abs() <= 5 * (variance / n).sqrt()).all()


# ----------------------------------------------------------------------------- fit, checkpoints, resume, CLI


@pytest.mark.parametrize("prior", ["mixture", "vamp"])
def test_fit_moves_the_learned_prior_and_a_checkpoint_restores_it(tmp_path, prior):
    ckpt = tmp_path / "run.ckpt"
    sizes = {"prior_components": 4} if prior == "mixture" else {"pseudo_inputs": 6}
    torch.manual_seed(0)
    model = build_vae(latent_dim=LATENT, hidden_dim=HIDDEN, side=SIDE, prior=prior, **sizes)
    before = {k: v.clone() for k, v in model.prior.state_dict().items()}
    fit(model, synthetic_data(), epochs=2, lr=1e-2, checkpoint=ckpt, **FIT)
    for name, value in model.prior.state_dict().items():  # the pseudo-inputs move too
        assert (value - before[name]).abs().max() > 1e-4, name
    loaded, _ = vaelab.load_model(ckpt)
    assert type(loaded.prior) is type(model.prior) and loaded.config == model.config
    if prior == "vamp":
        assert loaded.prior.encoder is loaded.encoder and loaded.prior.n_pseudo_inputs == 6
    z = torch.randn(5, LATENT)
    with torch.no_grad():
        torch.testing.assert_close(loaded.prior.log_prob(z), model.eval().prior.log_prob(z), rtol=0, atol=0)


def test_resuming_with_another_prior_is_a_mismatch_naming_model_prior(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    data = synthetic_data()
    fit(
        build_vae(latent_dim=LATENT, hidden_dim=HIDDEN, side=SIDE, prior="mixture"),
        data,
        epochs=1,
        checkpoint=ckpt,
        **FIT,
    )
    before = ckpt.read_bytes()
    other = build_vae(latent_dim=LATENT, hidden_dim=HIDDEN, side=SIDE, prior="vamp")
    with pytest.raises(RunMismatchError, match=re.escape("model.prior='mixture' in the file but")) as info:
        fit(other, data, epochs=2, checkpoint=ckpt, **FIT)
    assert "'vamp' now" in str(info.value)
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"prior": "flow"}, "prior must be one of 'standard_normal', 'gaussian', 'mixture', 'vamp'; got 'flow'."),
        ({"prior_components": 0, "prior": "mixture"}, "prior_components"),
        ({"pseudo_inputs": 20}, "pseudo_inputs=20 sizes prior='vamp', but prior='standard_normal'"),
        ({"prior_components": 3, "prior": "vamp"}, "prior_components=3 sizes prior='mixture', but prior='vamp'"),
    ],
)
def test_invalid_prior_settings_are_one_line_errors(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        build_vae(**settings)
    assert "\n" not in str(info.value)


def test_the_command_line_knows_the_learned_priors():
    from vaelab.cli import _parser

    args = _parser().parse_args(["train", "--prior", "vamp"])
    assert args.prior == "vamp" and args.layers == 1
    assert _parser().parse_args(["train", "--prior", "mixture", "--layers", "2"]).layers == 2
