"""check_free_bits_kl passes correct free-bits KL terms and catches the typical wrong ones.

The correct formulations are independent of the check's reference: torch.maximum over a hand
average, a Python loop over dimensions, and the free-bits term recovered from
``vaelab.training_loss`` (loss = -(mean reconstruction - free-bits term)). The reference itself is
compared with a brute-force double loop.
"""

from __future__ import annotations

import pytest
import torch

import vaelab
from vaelab import checks
from vaelab.checks import free_bits


def fb_maximum(kl, lam):
    return torch.maximum(kl.sum(0) / kl.shape[0], torch.tensor(lam, dtype=kl.dtype)).sum()


def fb_loop(kl, lam):
    total = kl.new_zeros(())
    for j in range(kl.shape[1]):
        total = total + torch.clamp(kl[:, j].mean(), min=lam)
    return total


def fb_from_training_loss(kl, lam):
    # training_loss = -(mean reconstruction - free-bits term); with reconstruction 0 it is the term itself.
    # free_bits=0 takes the plain-KL path, which is the same number when lambda = 0.
    terms = vaelab.ELBOTerms(kl.new_zeros(kl.shape[0]), kl.sum(1), -kl.sum(1), kl)
    return vaelab.training_loss(terms, beta=1.0, free_bits=lam)


CORRECT = [fb_maximum, fb_loop, fb_from_training_loss]

MISTAKES = {
    "max per image": (lambda kl, lam: kl.clamp(min=lam).mean(0).sum(), "applied the max to each image"),
    "min instead of max": (lambda kl, lam: kl.mean(0).clamp(max=lam).sum(), "you took min(lambda, KL_j)"),
    "hinge minus lambda": (lambda kl, lam: (kl.mean(0) - lam).clamp(min=0).sum(), "max(0, KL_j - lambda)"),
    "the added amount only": (lambda kl, lam: (lam - kl.mean(0)).clamp(min=0).sum(), "max(0, lambda - KL_j)"),
    "lambda on the total": (lambda kl, lam: kl.mean(0).sum().clamp(min=lam), "applied lambda to the total KL"),
    "lambda * dim on the total": (lambda kl, lam: kl.mean(0).sum().clamp(min=lam * kl.shape[1]), "lambda * latent_dim"),
    "mean over dimensions": (lambda kl, lam: kl.mean(0).clamp(min=lam).mean(), "averaged over the latent"),
    "sum over the batch": (lambda kl, lam: kl.sum(0).clamp(min=lam).sum(), "summed over the minibatch"),
    "lambda ignored": (lambda kl, lam: kl.mean(0).sum(), "lambda has no effect"),
    "wrong dimension": (lambda kl, lam: kl.mean(1).clamp(min=lam).sum(), "instead of over the minibatch"),
    "per-image total": (lambda kl, lam: kl.sum(1).clamp(min=lam).mean(), "each image's total KL"),
    "per-dimension vector": (lambda kl, lam: kl.mean(0).clamp(min=lam), "one value per latent dimension"),
    "per-image vector": (lambda kl, lam: kl.clamp(min=lam).sum(1), "one value per image"),
    "a float": (lambda kl, lam: float(kl.mean(0).clamp(min=lam).sum()), "return a tensor"),
    "detached": (lambda kl, lam: kl.detach().mean(0).clamp(min=lam).sum(), "pass gradients"),
    "in place": (lambda kl, lam: _in_place(kl, lam), "changed its input"),
}


def _in_place(kl, lam):
    result = kl.mean(0).clamp(min=lam).sum()
    with torch.no_grad():
        kl.mul_(2.0)
    return result


@pytest.mark.parametrize("fn", CORRECT, ids=["maximum", "loop", "training_loss"])
def test_free_bits_check_passes_correct_implementations(fn):
    result = checks.check_free_bits_kl(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_free_bits_kl: passed (11 cases)"


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_free_bits_check_catches_mistake_with_its_hint(mistake):
    fn, hint = MISTAKES[mistake]
    result = checks.check_free_bits_kl(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


def test_free_bits_stub_reports_not_implemented():
    def stub(kl, lam):
        raise NotImplementedError("implement me")

    result = checks.check_free_bits_kl(stub)
    assert not result and "not implemented yet" in result.message
    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.check_free_bits_kl(stub, raise_on_failure=True)


def test_free_bits_reference_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    kl = torch.rand(7, 5, generator=g, dtype=torch.float64)
    for lam in (0.0, 0.3, 0.5, 2.0):
        expected = 0.0
        for j in range(5):
            mean_j = sum(kl[i, j].item() for i in range(7)) / 7
            expected += max(lam, mean_j)
        assert free_bits._reference(kl, lam).item() == pytest.approx(expected, abs=1e-12)


def test_free_bits_objective_is_a_looser_lower_bound():
    # ELBO - sum_j max(0, lambda - KL_j) <= ELBO: the free-bits objective is still a lower bound
    g = torch.Generator().manual_seed(4)
    kl = torch.rand(16, 8, generator=g, dtype=torch.float64)
    rec = -100 - torch.rand(16, generator=g, dtype=torch.float64)
    elbo = (rec - kl.sum(1)).mean()
    for lam in (0.0, 0.25, 0.5, 1.0):
        objective = rec.mean() - free_bits._reference(kl, lam)
        gap = (lam - kl.mean(0)).clamp(min=0).sum()
        assert objective.item() == pytest.approx((elbo - gap).item(), abs=1e-10)
        assert objective <= elbo + 1e-12
