"""check_gradient_snr passes correct SNR implementations and catches the typical wrong ones.

Correct formulations: torch's mean and std, the two-pass formula written out, and NumPy (via float64
arrays). The reference is compared with Python's statistics module on a hand-made case.
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch

from vaelab import checks
from vaelab.checks import gradient_snr


def snr_torch(g):
    return g.mean(0).abs() / g.std(0)


def snr_two_pass(g):
    m = g.shape[0]
    mean = g.sum(0) / m
    var = ((g - mean) ** 2).sum(0) / (m - 1)
    return mean.abs() / var.sqrt()


def snr_numpy(g):
    a = g.detach().double().numpy()
    return torch.from_numpy(np.abs(a.mean(0)) / a.std(0, ddof=1)).to(g.dtype)


CORRECT = [snr_torch, snr_two_pass, snr_numpy]

MISTAKES = {
    "no absolute value": (lambda g: g.mean(0) / g.std(0), "absolute value of the mean"),
    "noise-to-signal": (lambda g: g.std(0) / g.mean(0).abs(), "noise-to-signal"),
    "variance": (lambda g: g.mean(0).abs() / g.var(0), "not the variance"),
    "biased std": (lambda g: g.mean(0).abs() / g.std(0, unbiased=False), "M - 1"),
    "wrong dimension": (lambda g: g.mean(1).abs() / g.std(1), "instead of over the draws"),
    "mean of absolute values": (lambda g: g.abs().mean(0) / g.std(0), "not the mean of the absolute values"),
    "standard error": (lambda g: g.mean(0).abs() / (g.std(0) / g.shape[0] ** 0.5), "standard error"),
    "one number": (lambda g: (g.mean(0).abs() / g.std(0)).mean(), "shape"),
    "in place": (lambda g: snr_torch(g.mul_(1.0).add_(1.0)), "changed its input"),
}


@pytest.mark.parametrize("fn", CORRECT, ids=["torch", "two-pass", "numpy"])
def test_snr_check_passes_correct_implementations(fn):
    result = checks.check_gradient_snr(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_gradient_snr: passed (8 cases)"


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_snr_check_catches_mistake_with_its_hint(mistake):
    fn, hint = MISTAKES[mistake]
    result = checks.check_gradient_snr(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


def test_snr_stub_reports_not_implemented():
    def stub(g):
        raise NotImplementedError("implement me")

    result = checks.check_gradient_snr(stub)
    assert not result and "not implemented yet" in result.message


def test_snr_reference_matches_the_statistics_module():
    draws = [[1.0, -2.0], [3.0, -2.5], [2.0, -1.5], [0.5, -4.0]]
    expected = [abs(statistics.mean(c)) / statistics.stdev(c) for c in zip(*draws)]
    got = gradient_snr._reference(torch.tensor(draws, dtype=torch.float64))
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
