"""check_autoencoder_loss passes correct reconstruction losses and catches the typical wrong ones.

The correct formulations are independent of the check's reference (F.binary_cross_entropy_with_logits):
softplus(l) - x l, the logsigmoid form of -[x log x_hat + (1 - x) log(1 - x_hat)], and vaelab.models.autoencoder's
training loss on a model whose decoder returns the given logits. The reference itself is compared with
math.log on single pixels.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vaelab.checks import autoencoder_loss
from vaelab.checks.autoencoder_loss import check_autoencoder_loss
from vaelab.models.autoencoder import reconstruction_loss


def loss_softplus(x, logits):
    return (F.softplus(logits) - x * logits).sum(-1)


def loss_logsigmoid(x, logits):
    return -(x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(-1)


class _FixedLogits(torch.nn.Module):
    """An 'autoencoder' whose decoder returns the given logits, for vaelab's reconstruction_loss."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def encode(self, x):
        return x

    def decode_logits(self, z):
        return self.logits


def loss_from_vaelab(x, logits):
    return reconstruction_loss(_FixedLogits(logits), x)


CORRECT = [loss_softplus, loss_logsigmoid, loss_from_vaelab]

MISTAKES = {
    "mean over everything": (lambda x, a: F.binary_cross_entropy_with_logits(a, x), "reduced over the batch"),
    "mean over pixels per image": (
        lambda x, a: F.binary_cross_entropy_with_logits(a, x, reduction="none").mean(-1),
        "you averaged over the pixels",
    ),
    "log-likelihood": (lambda x, a: -loss_logsigmoid(x, a), "the loss is its negative"),
    "x swapped": (
        lambda x, a: -((1 - x) * F.logsigmoid(a) + x * F.logsigmoid(-a)).sum(-1),
        "x and 1 - x are swapped",
    ),
    "dark pixels free": (lambda x, a: -(x * F.logsigmoid(a)).sum(-1), "term is missing"),
    "arguments swapped": (
        lambda x, a: F.binary_cross_entropy_with_logits(x, a, reduction="none").sum(-1),
        "arguments of F.binary_cross_entropy_with_logits are swapped",
    ),
    "squared error": (lambda x, a: (x - torch.sigmoid(a)).pow(2).sum(-1), "squared error"),
    "sigmoid then log": (
        lambda x, a: -(x * torch.sigmoid(a).log() + (1 - x) * (1 - torch.sigmoid(a)).log()).sum(-1),
        "inf or NaN",
    ),
    "torch's clamped BCE on probabilities": (
        lambda x, a: F.binary_cross_entropy(torch.sigmoid(a), x, reduction="none").sum(-1),
        "clamped at -100",
    ),
    "logits as probabilities": (
        lambda x, a: F.binary_cross_entropy(a.clamp(1e-12, 1 - 1e-12), x, reduction="none").sum(-1),
        "used the logits as probabilities",
    ),
    "a float": (lambda x, a: float(loss_softplus(x, a).sum()), "torch.Tensor"),
    "detached": (lambda x, a: loss_softplus(x, a).detach(), "differentiable in the logits"),
}


@pytest.mark.parametrize("fn", CORRECT, ids=["softplus", "logsigmoid", "vaelab.models.autoencoder"])
def test_autoencoder_loss_check_passes_correct_implementations(fn):
    result = check_autoencoder_loss(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_autoencoder_loss: passed (10 cases)"


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_autoencoder_loss_check_catches_mistake_with_its_hint(mistake):
    fn, hint = MISTAKES[mistake]
    result = check_autoencoder_loss(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


def test_autoencoder_loss_stub_reports_not_implemented():
    def stub(x, logits):
        raise NotImplementedError("implement me")

    result = check_autoencoder_loss(stub)
    assert not result and "not implemented yet" in result.message
    with pytest.raises(AssertionError, match="not implemented yet"):
        check_autoencoder_loss(stub, raise_on_failure=True)


@pytest.mark.parametrize(("x", "logit"), [(0.5, 0.0), (0.3, -1.0), (1.0, 2.0), (0.0, 2.0), (0.8, 4.0)])
def test_autoencoder_loss_reference_matches_the_formula(x, logit):
    x_hat = 1 / (1 + math.exp(-logit))
    expected = -(x * math.log(x_hat) + (1 - x) * math.log(1 - x_hat))
    f64 = torch.float64
    got = autoencoder_loss._reference(torch.tensor([[x]], dtype=f64), torch.tensor([[logit]], dtype=f64)).item()
    assert got == pytest.approx(expected, rel=1e-12)
