"""Bernoulli and Gaussian log-likelihoods against torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from vaelab import BernoulliLikelihood, GaussianLikelihood, bernoulli_log_prob, build_vae, elbo, gaussian_log_prob


def test_bernoulli_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 30, generator=g) * 6
    x = torch.bernoulli(torch.full((8, 30), 0.4), generator=g)
    reference = Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(bernoulli_log_prob(x, logits), reference)


def test_bernoulli_log_prob_is_stable_for_extreme_logits():
    logits = torch.tensor([[200.0, -200.0]])
    x = torch.tensor([[1.0, 0.0]])
    assert bernoulli_log_prob(x, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert bernoulli_log_prob(1 - x, logits).item() == pytest.approx(-400.0, rel=1e-6)


def test_bernoulli_probabilities_of_all_binary_images_sum_to_one():
    logits = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    images = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.float64)
    total = bernoulli_log_prob(images, logits.expand(8, 3)).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("logvar", [0.0, -2.0, 1.5])
def test_gaussian_log_prob_matches_torch_distributions(logvar):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 12, generator=g, dtype=torch.float64)
    mean = torch.randn(5, 12, generator=g, dtype=torch.float64)
    reference = Normal(mean, math.exp(0.5 * logvar)).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(x, mean, logvar), reference)
    likelihood = GaussianLikelihood(logvar=logvar).double()
    torch.testing.assert_close(likelihood.log_prob(x, mean), reference)


def test_unit_variance_gaussian_is_half_squared_error_plus_constant():
    x, mean = torch.rand(4, 784, dtype=torch.float64), torch.rand(4, 784, dtype=torch.float64)
    expected = -0.5 * ((x - mean) ** 2).sum(-1) - 784 / 2 * math.log(2 * math.pi)
    torch.testing.assert_close(GaussianLikelihood().double().log_prob(x, mean), expected)


def test_learned_variance_is_a_parameter_and_fixed_is_not():
    assert [n for n, _ in GaussianLikelihood(learn_variance=True).named_parameters()] == ["raw_logvar"]
    assert list(GaussianLikelihood().parameters()) == []


def test_likelihood_broadcasts_over_sample_dimension():
    x = torch.bernoulli(torch.full((3, 10), 0.5))
    logits = torch.randn(4, 3, 10)
    out = BernoulliLikelihood().log_prob(x, logits)
    assert out.shape == (4, 3)
    torch.testing.assert_close(out[2], Bernoulli(logits=logits[2]).log_prob(x).sum(-1))


def test_bernoulli_rejects_pixels_in_0_255_at_the_entry_point():
    model = build_vae(latent_dim=2, hidden_dim=4, side=4)
    with pytest.raises(ValueError, match="divide by 255"):
        elbo(model, torch.full((2, 16), 255.0))


@pytest.mark.parametrize(
    "x_shape,logits_shape", [((2, 3), (3,)), ((3,), (4, 3)), ((2, 3), (5, 2, 3)), ((1, 3), (4, 3))]
)
def test_bernoulli_broadcasting_is_the_same_with_and_without_gradients(x_shape, logits_shape):
    """The documented broadcasting holds on the path training uses too (it used to raise with gradients)."""
    g = torch.Generator().manual_seed(3)
    x = torch.bernoulli(torch.full(x_shape, 0.5), generator=g).double()
    logits = (3 * torch.randn(logits_shape, generator=g, dtype=torch.float64)).requires_grad_()
    x_b, logits_b = torch.broadcast_tensors(x, logits)
    reference = Bernoulli(logits=logits_b).log_prob(x_b).sum(-1)
    value = bernoulli_log_prob(x, logits)
    torch.testing.assert_close(value, reference, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(bernoulli_log_prob(x, logits), reference.detach(), rtol=1e-12, atol=1e-12)


def test_bernoulli_value_and_gradient_with_autograd_match_torch_distributions():
    """The with-gradient path (the one training uses) against torch.distributions: value and d/d logits."""
    g = torch.Generator().manual_seed(4)
    logits = (8 * torch.randn(6, 50, generator=g, dtype=torch.float64)).requires_grad_()
    x = torch.rand(6, 50, generator=g, dtype=torch.float64)  # grey pixels: the form is the same
    ours = bernoulli_log_prob(x, logits)
    (grad_ours,) = torch.autograd.grad(ours.sum(), logits)
    theirs = Bernoulli(logits=logits, validate_args=False).log_prob(x).sum(-1)
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), logits)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_ours, x - torch.sigmoid(logits.detach()), rtol=1e-12, atol=1e-12)  # by hand


@pytest.mark.parametrize("logit", [0.0, 15.0, 20.5, 25.0, 36.0, 40.0, 300.0, -20.5, -40.0])
@pytest.mark.parametrize("grad", [False, True])
def test_bernoulli_log_prob_is_exact_in_float64_beyond_the_softplus_threshold(logit, grad):
    """log(1 - sigmoid(l)) = -softplus(l) and log sigmoid(l) = l - softplus(l) are exact to float64 rounding
    (a few ulp of max(1, |l|)) for every l, with and without gradients, against 50-digit mpmath; F.softplus's
    default threshold of 20 returned l itself for l > 20, e^-20.5 = 1.25e-9 off."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    logits = torch.tensor([[logit]], dtype=torch.float64, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        zero, one = (
            bernoulli_log_prob(torch.zeros(1, 1, dtype=torch.float64), logits).item(),
            bernoulli_log_prob(torch.ones(1, 1, dtype=torch.float64), logits).item(),
        )
    exact_zero = -mpmath.log(1 + mpmath.e ** mpmath.mpf(logit))  # log(1 - sigmoid(l))
    exact_one = -mpmath.log(1 + mpmath.e ** (-mpmath.mpf(logit)))  # log sigmoid(l)
    for ours, exact in ((zero, exact_zero), (one, exact_one)):
        assert abs(ours - float(exact)) <= 4.5e-16 * max(1.0, abs(logit)), (ours, float(exact))


@pytest.mark.parametrize("logvar", [-9.5, 10.5, 50.0])
def test_gaussian_logvar_outside_its_range_is_rejected_at_construction(logvar):
    """Out-of-range values used to be clamped without a word; now the constructor and the config say so."""
    with pytest.raises(ValueError, match=r"logvar must lie in \[-9, 10\]"):
        GaussianLikelihood(logvar=logvar)
    with pytest.raises(ValueError, match=r"gaussian_logvar must be a number in \[-9, 10\]"):
        build_vae(likelihood="gaussian", gaussian_logvar=logvar)


@pytest.mark.parametrize("logvar", [-9.0, -4.0, 0.0, 10.0])
def test_gaussian_logvar_inside_its_range_is_kept_exactly(logvar):
    model = build_vae(likelihood="gaussian", gaussian_logvar=logvar)
    assert model.likelihood.logvar.item() == logvar
