"""Bernoulli and Gaussian log-likelihoods against torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from vaelab import BernoulliLikelihood, GaussianLikelihood, bernoulli_log_prob, gaussian_log_prob


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


def test_bernoulli_rejects_pixels_in_0_255():
    with pytest.raises(ValueError, match="divide by 255"):
        BernoulliLikelihood().log_prob(torch.full((2, 4), 255.0), torch.zeros(2, 4))


def test_likelihood_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        GaussianLikelihood().log_prob(torch.zeros(2, 4), torch.zeros(2, 5))
