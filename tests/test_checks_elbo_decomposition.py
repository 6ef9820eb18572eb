"""check_elbo_decomposition passes correct splits of the average KL (Hoffman and Johnson 2016) and catches
the typical wrong ones.

Correct formulations: a log-sum-exp over the pairwise log-densities, torch.distributions' Normal for the
pairwise log-densities with a max-shifted log of the mean, and MixtureSameFamily for the aggregate
posterior (allowed explicitly). Independent check: the two terms add up to the Monte Carlo average KL."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as D

from vaelab import checks
from vaelab.checks.elbo_decomposition import _reference

LOG_2PI = math.log(2 * math.pi)


def pairwise(z, mu, logvar):
    d = z.unsqueeze(1) - mu.unsqueeze(0)
    return -0.5 * (d**2 * torch.exp(-logvar.unsqueeze(0)) + logvar.unsqueeze(0) + LOG_2PI).sum(-1)


def log_prior(z):
    return -0.5 * (z**2 + LOG_2PI).sum(-1)


def split(own, aggregate, prior):
    return (own - aggregate).mean(), (aggregate - prior).mean()


def surgery(z, mu, logvar):
    pairs = pairwise(z, mu, logvar)
    aggregate = torch.logsumexp(pairs, dim=1) - math.log(len(z))
    return split(pairs.diagonal(), aggregate, log_prior(z))


def surgery_torch(z, mu, logvar):
    pairs = D.Normal(mu.unsqueeze(0), torch.exp(0.5 * logvar).unsqueeze(0)).log_prob(z.unsqueeze(1)).sum(-1)
    top = pairs.max(1, keepdim=True).values
    aggregate = top.squeeze(1) + torch.log(torch.exp(pairs - top).mean(1))
    return split(pairs.diagonal(), aggregate, D.Normal(0.0, 1.0).log_prob(z).sum(-1))


def surgery_mixture(z, mu, logvar):
    n = len(z)
    q = D.MixtureSameFamily(
        D.Categorical(logits=torch.zeros(n, dtype=z.dtype)), D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1)
    )
    own = D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1).log_prob(z)
    return split(own, q.log_prob(z), log_prior(z))


def _with(aggregate_fn):
    def fn(z, mu, logvar):
        pairs = pairwise(z, mu, logvar)
        return split(pairs.diagonal(), aggregate_fn(pairs, len(z)), log_prior(z))

    return fn


def _naive(z, mu, logvar):
    pairs = pairwise(z, mu, logvar)
    return split(pairs.diagonal(), torch.log(torch.exp(pairs).mean(1)), log_prior(z))


MISTAKES = {
    "no log N": (_with(lambda p, n: torch.logsumexp(p, 1)), "log q(z_n) = logsumexp_m log q(z_n|x_m) - log N"),
    "jensen": (_with(lambda p, n: p.mean(1)), "not the average of the log-densities"),
    "own posterior": (_with(lambda p, n: p.diagonal()), "not q(z_n|x_n)"),
    "swapped": (lambda z, m, v: surgery(z, m, v)[::-1], "in this order"),
    "both signs": (lambda z, m, v: tuple(-t for t in surgery(z, m, v)), "check the order of the subtractions"),
    "mutual information sign": (
        lambda z, m, v: (-surgery(z, m, v)[0], surgery(z, m, v)[1]),
        "the mutual information has the wrong sign",
    ),
    "sum over images": (lambda z, m, v: tuple(len(z) * t for t in surgery(z, m, v)), ".mean(), not .sum()"),
    "prior for the aggregate": (
        lambda z, m, v: split(pairwise(z, m, v).diagonal(), log_prior(z), log_prior(z)),
        "is the rate",
    ),
    "wrong dimension": (_with(lambda p, n: torch.logsumexp(p, 0) - math.log(n)), "torch.logsumexp(L, dim=1)"),
    "standard deviation as variance": (lambda z, m, v: surgery(z, m, 0.5 * v), "not exp(logvar / 2)"),
    "naive exp": (_naive, "underflows to 0 for far-apart ones"),
    "one tensor per image": (
        lambda z, m, v: (pairwise(z, m, v).diagonal(), log_prior(z)),
        "one scalar per term",
    ),
    "only one number": (lambda z, m, v: surgery(z, m, v)[0], "return mutual_information, marginal_kl"),
}


@pytest.mark.parametrize("fn", [surgery, surgery_torch, surgery_mixture], ids=["lse", "torch-normal", "mixture"])
def test_decomposition_check_passes_correct_implementations(fn):
    result = checks.check_elbo_decomposition(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_elbo_decomposition: passed (6 cases)"


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_decomposition_check_catches_mistake_with_its_hint(mistake):
    fn, hint = MISTAKES[mistake]
    result = checks.check_elbo_decomposition(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


def test_the_reference_terms_add_up_to_the_average_kl_and_are_its_parts():
    """I + KL(q(z) || p(z)) = mean_n [log q(z_n|x_n) - log p(z_n)] (the Monte Carlo rate); 0 <= I <= log N."""
    g = torch.Generator().manual_seed(0)
    mu, logvar = (
        torch.randn(30, 4, generator=g, dtype=torch.float64),
        -torch.rand(30, 4, generator=g, dtype=torch.float64),
    )
    z = mu + torch.exp(0.5 * logvar) * torch.randn(30, 4, generator=g, dtype=torch.float64)
    mi, kl = _reference(z, mu, logvar)
    own = D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1).log_prob(z)
    rate = (own - D.Independent(D.Normal(torch.zeros_like(z), 1.0), 1).log_prob(z)).mean()
    torch.testing.assert_close(mi + kl, rate)
    assert 0 <= mi <= math.log(30)


def test_naive_version_fails_on_far_apart_posteriors_with_the_log_space_hint():
    result = checks.check_elbo_decomposition(_naive)
    assert not result and "far-apart posteriors" in result.case
    assert "stay in log space" in result.message


def test_the_ready_made_mixture_is_refused_unless_allowed():
    result = checks.check_elbo_decomposition(surgery_mixture)
    assert not result and "not allowed in this task" in result.message
    assert checks.check_elbo_decomposition(surgery_mixture, allow=["torch.distributions.MixtureSameFamily.log_prob"])


def test_stub_reports_not_implemented():
    def stub(z, mu, logvar):
        raise NotImplementedError

    result = checks.check_elbo_decomposition(stub)
    assert not result and "not implemented yet" in result.message
