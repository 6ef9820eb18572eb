"""check_effective_sample_size passes correct ESS implementations and catches the typical wrong ones.

Correct formulations: the ratio in log space, 1 / sum of squared normalized weights (softmax), and
the weights rescaled by their maximum before exponentiating. The check's reference is compared with
high-precision arithmetic (mpmath) on log-weights around -1000 nats, where float64 exp underflows.
"""

from __future__ import annotations

import pytest
import torch

from vaelab import checks
from vaelab.checks import effective_sample_size


def ess_log_space(lw):
    return torch.exp(2 * torch.logsumexp(lw, dim=0) - torch.logsumexp(2 * lw, dim=0))


def ess_softmax(lw):
    wbar = torch.softmax(lw, dim=0)
    return 1.0 / (wbar**2).sum(dim=0)


def ess_max_shift(lw):
    w = torch.exp(lw - lw.max(dim=0, keepdim=True).values)
    return w.sum(0) ** 2 / (w**2).sum(0)


CORRECT = [ess_log_space, ess_softmax, ess_max_shift]

MISTAKES = {
    "inverse": (lambda lw: 1 / ess_log_space(lw), "the inverse of the effective sample size"),
    "fraction of k": (lambda lw: ess_log_space(lw) / lw.shape[0], "you divided by k"),
    "numerator not squared": (
        lambda lw: torch.exp(torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)),
        "the numerator is the square",
    ),
    "denominator squared sum": (
        lambda lw: torch.exp(2 * torch.logsumexp(lw, 0) - 2 * torch.logsumexp(2 * lw, 0)),
        "sum of the squared weights",
    ),
    "log-weights as weights": (lambda lw: lw.sum(0) ** 2 / (lw**2).sum(0), "used the log-weights as if"),
    "wrong dimension": (
        lambda lw: torch.exp(2 * torch.logsumexp(lw, 1) - torch.logsumexp(2 * lw, 1)),
        "instead of over the k samples",
    ),
    "always k": (
        lambda lw: torch.full((lw.shape[1],), float(lw.shape[0]), dtype=lw.dtype),
        "only when all weights are equal",
    ),
    "one over max weight": (lambda lw: 1 / torch.softmax(lw, 0).max(0).values, "another diagnostic"),
    "naive exp": (lambda lw: lw.exp().sum(0) ** 2 / (lw.exp() ** 2).sum(0), "underflows to 0"),
    "mean over the batch": (lambda lw: ess_log_space(lw).mean(), "reduced over the batch too"),
    "no reduction": (lambda lw: torch.softmax(lw, 0), "did not reduce over the k samples"),
    "numpy": (lambda lw: ess_log_space(lw).numpy(), "return a torch.Tensor"),
    "in place": (lambda lw: ess_log_space(lw.sub_(0.0).mul_(1.0).add_(1.0)), "changed its input"),
}


@pytest.mark.parametrize("fn", CORRECT, ids=["log-space", "softmax", "max-shift"])
def test_ess_check_passes_correct_implementations(fn):
    result = checks.check_effective_sample_size(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_effective_sample_size: passed (11 cases)"


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_ess_check_catches_mistake_with_its_hint(mistake):
    fn, hint = MISTAKES[mistake]
    result = checks.check_effective_sample_size(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


def test_ess_stub_reports_not_implemented():
    def stub(lw):
        raise NotImplementedError("implement me")

    result = checks.check_effective_sample_size(stub)
    assert not result and "not implemented yet" in result.message


def test_ess_reference_matches_high_precision():
    import mpmath

    g = torch.Generator().manual_seed(1)
    lw = -1000 + 2 * torch.randn(30, 3, generator=g, dtype=torch.float64)
    for b in range(3):
        w = [mpmath.exp(mpmath.mpf(v)) for v in lw[:, b].tolist()]
        exact = mpmath.fsum(w) ** 2 / mpmath.fsum(x**2 for x in w)
        assert effective_sample_size._reference(lw)[b].item() == pytest.approx(float(exact), rel=1e-10)


def test_ess_lies_between_one_and_k():
    g = torch.Generator().manual_seed(2)
    lw = 5 * torch.randn(50, 8, generator=g, dtype=torch.float64)
    ess = effective_sample_size._reference(lw)
    assert ((ess >= 1 - 1e-12) & (ess <= 50 + 1e-9)).all()
