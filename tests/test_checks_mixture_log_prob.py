"""check_mixture_log_prob passes correct mixture log-densities and catches the typical wrong ones.

Correct formulations: log-softmax weights with a log-sum-exp, torch.distributions' MixtureSameFamily
(allowed explicitly here), and the densities rescaled by their maximum before exponentiating."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as D

from vaelab import checks

LOG_2PI = math.log(2 * math.pi)


def log_normal(z, means, logvars):
    d = z.unsqueeze(-2) - means
    return -0.5 * (d**2 * torch.exp(-logvars) + logvars + LOG_2PI).sum(-1)


def mixture_logsumexp(z, logits, means, logvars):
    return torch.logsumexp(torch.log_softmax(logits, 0) + log_normal(z, means, logvars), dim=-1)


def mixture_max_shift(z, logits, means, logvars):
    a = torch.log_softmax(logits, 0) + log_normal(z, means, logvars)
    top = a.max(-1, keepdim=True).values
    return top.squeeze(-1) + torch.log(torch.exp(a - top).sum(-1))


def mixture_torch(z, logits, means, logvars):
    comps = D.Independent(D.Normal(means, torch.exp(0.5 * logvars)), 1)
    return D.MixtureSameFamily(D.Categorical(logits=logits), comps).log_prob(z)


def _naive(z, logits, means, logvars):
    return torch.log((torch.softmax(logits, 0) * torch.exp(log_normal(z, means, logvars))).sum(-1))


MISTAKES = {
    "unnormalized logits": (
        lambda z, lo, m, v: torch.logsumexp(lo + log_normal(z, m, v), -1),
        "the logits are not log-weights",
    ),
    "weights not logged": (
        lambda z, lo, m, v: torch.logsumexp(torch.softmax(lo, 0) + log_normal(z, m, v), -1),
        "you added pi_k",
    ),
    "equal weights": (
        lambda z, lo, m, v: torch.logsumexp(log_normal(z, m, v), -1) - math.log(len(lo)),
        "you used equal weights 1/K",
    ),
    "no weights": (lambda z, lo, m, v: torch.logsumexp(log_normal(z, m, v), -1), "the weights are missing"),
    "jensen": (
        lambda z, lo, m, v: (torch.softmax(lo, 0) * log_normal(z, m, v)).sum(-1),
        "is a lower bound (Jensen)",
    ),
    "max component": (
        lambda z, lo, m, v: (torch.log_softmax(lo, 0) + log_normal(z, m, v)).max(-1).values,
        "max_k is only the largest term",
    ),
    "no log 2 pi": (
        lambda z, lo, m, v: (
            mixture_logsumexp(z, lo, m, v) * 0
            + torch.logsumexp(torch.log_softmax(lo, 0) + log_normal(z, m, v) + 0.5 * z.shape[-1] * LOG_2PI, -1)
        ),
        "the normalizing constant -1/2 log(2 pi)",
    ),
    "no half on the distance": (
        lambda z, lo, m, v: torch.logsumexp(
            torch.log_softmax(lo, 0) - ((z.unsqueeze(-2) - m) ** 2 * torch.exp(-v) + 0.5 * v + 0.5 * LOG_2PI).sum(-1),
            -1,
        ),
        "the 1/2 multiplies the squared distance",
    ),
    "standard deviation as variance": (
        lambda z, lo, m, v: torch.logsumexp(
            torch.log_softmax(lo, 0)
            - 0.5 * ((z.unsqueeze(-2) - m) ** 2 * torch.exp(-0.5 * v) + 0.5 * v + LOG_2PI).sum(-1),
            -1,
        ),
        "you divided by the standard deviation",
    ),
    "mean over dimensions": (
        lambda z, lo, m, v: torch.logsumexp(torch.log_softmax(lo, 0) + log_normal(z, m, v) / z.shape[-1], -1),
        "the sum over dimensions",
    ),
    "times the variance": (
        lambda z, lo, m, v: torch.logsumexp(
            torch.log_softmax(lo, 0) - 0.5 * ((z.unsqueeze(-2) - m) ** 2 * torch.exp(v) + v + LOG_2PI).sum(-1), -1
        ),
        "divided by the variance",
    ),
    "naive log of a sum": (_naive, "underflows to 0 far from every component"),
    "sum over the batch": (lambda z, lo, m, v: mixture_logsumexp(z, lo, m, v).sum(), "reduced over the batch"),
    "no reduction over components": (
        lambda z, lo, m, v: torch.log_softmax(lo, 0) + log_normal(z, m, v),
        "did not reduce over the components",
    ),
}


@pytest.mark.parametrize("fn", [mixture_logsumexp, mixture_max_shift, mixture_torch], ids=["lse", "shift", "torch"])
def test_mixture_check_passes_correct_implementations(fn):
    result = checks.check_mixture_log_prob(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_mixture_log_prob: passed (6 cases)"


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_mixture_check_catches_mistake_with_its_hint(mistake):
    fn, hint = MISTAKES[mistake]
    result = checks.check_mixture_log_prob(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


def test_naive_version_fails_in_float32_on_far_apart_components_where_float64_is_not_enough_either():
    result = checks.check_mixture_log_prob(_naive)
    assert not result and "very far-apart components" in result.case
    assert "stay in log space" in result.message


def test_the_ready_made_mixture_is_refused_unless_allowed():
    result = checks.check_mixture_log_prob(mixture_torch)
    assert not result and "not allowed in this task" in result.message and "MixtureSameFamily" in result.message
    assert checks.check_mixture_log_prob(mixture_torch, allow=["torch.distributions.MixtureSameFamily.log_prob"])


def test_hint_levels():
    fn, _ = MISTAKES["jensen"]
    where = checks.check_mixture_log_prob(fn, hint="where", allow=True)
    assert "hint:" not in where.message and "expected:" in where.message
    kind = checks.check_mixture_log_prob(fn, allow=True)
    assert "Jensen" in kind.message and "logsumexp" not in kind.message


def test_stub_reports_not_implemented():
    def stub(z, logits, means, logvars):
        raise NotImplementedError

    result = checks.check_mixture_log_prob(stub)
    assert not result and "not implemented yet" in result.message
