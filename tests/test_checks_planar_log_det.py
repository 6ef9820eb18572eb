"""check_planar_log_det passes correct log-determinants of a planar map and catches the typical wrong ones.

Correct formulations: the matrix determinant lemma written three ways; the check's reference is
compared with the brute-force Jacobian (torch.autograd.functional.jacobian) and torch.linalg.slogdet.
"""

from __future__ import annotations

import pytest
import torch

from vaelab import checks
from vaelab.checks import planar_log_det


def lemma(z, u_hat, w, b):
    h = torch.tanh(z @ w + b)
    return torch.log(torch.abs(1 + (1 - h**2) * (w @ u_hat)))


def with_cosh(z, u_hat, w, b):
    return torch.log(torch.abs(1 + (w * u_hat).sum() / torch.cosh(z @ w + b) ** 2))


def brute_force(z, u_hat, w, b):
    out = []
    for row in z:
        jac = torch.autograd.functional.jacobian(lambda v: v + u_hat * torch.tanh(v @ w + b), row)
        out.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


CORRECT = [lemma, with_cosh, brute_force]


def _h(z, w, b):
    return torch.tanh(z @ w + b)


MISTAKES = {
    "tanh for its derivative": (lambda z, u, w, b: torch.log(torch.abs(1 + _h(z, w, b) * (w @ u))), "the derivative"),
    "no 1": (lambda z, u, w, b: torch.log(torch.abs((1 - _h(z, w, b) ** 2) * (w @ u))), "the 1 is missing"),
    "no log": (lambda z, u, w, b: 1 + (1 - _h(z, w, b) ** 2) * (w @ u), "return its logarithm"),
    "no bias": (lambda z, u, w, b: torch.log(torch.abs(1 + (1 - torch.tanh(z @ w) ** 2) * (w @ u))), "the bias b"),
    "u_hat squared": (lambda z, u, w, b: torch.log(torch.abs(1 + (1 - _h(z, w, b) ** 2) * (u @ u))), "not ||u_hat||^2"),
    "w squared": (lambda z, u, w, b: torch.log(torch.abs(1 + (1 - _h(z, w, b) ** 2) * (w @ w))), "not ||w||^2"),
    "negated": (lambda z, u, w, b: -lemma(z, u, w, b), "a sign"),
    "no abs": (lambda z, u, w, b: torch.log(1 + (1 - _h(z, w, b) ** 2) * (w @ u)), "take the absolute value"),
    "summed over the batch": (lambda z, u, w, b: lemma(z, u, w, b).sum(), "shape"),
    "numpy": (lambda z, u, w, b: lemma(z, u, w, b).numpy(), "return a torch.Tensor"),
    "in place": (lambda z, u, w, b: lemma(z.mul_(1.0).add_(0.5), u, w, b), "changed its input"),
}


@pytest.mark.parametrize("fn", CORRECT, ids=["lemma", "cosh", "brute-force"])
def test_planar_check_passes_correct_implementations(fn):
    result = checks.check_planar_log_det(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_planar_log_det: passed (8 cases)"


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_planar_check_catches_mistake_with_its_hint(mistake):
    fn, hint = MISTAKES[mistake]
    result = checks.check_planar_log_det(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


def test_planar_stub_reports_not_implemented():
    def stub(z, u_hat, w, b):
        raise NotImplementedError("implement me")

    result = checks.check_planar_log_det(stub)
    assert not result and "not implemented yet" in result.message


def test_planar_reference_matches_brute_force_jacobian():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(7, 4, generator=g, dtype=torch.float64)
    u_hat, w = torch.randn(2, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(planar_log_det._reference(z, u_hat, w, 0.7), brute_force(z, u_hat, w, 0.7))
