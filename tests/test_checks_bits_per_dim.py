"""check_bits_per_dim passes correct conversions to bits per dimension and catches the typical wrong ones.

Correct formulations: the formula in nats with a division by log 2, log2 of a probability per
dimension, and math on Python floats wrapped back into a tensor is refused (no gradient). The check's
reference is compared with a hand count: a uniform distribution over the 256 levels is 8 bits per
dimension, and a uniform density on [0, 1] dequantized is 8 too.
"""

from __future__ import annotations

import math

import pytest
import torch

from vaelab import checks
from vaelab.models.dequantization import bits_per_dim


def nats_then_bits(log_px, num_dims, density):
    if density:
        log_px = log_px - num_dims * math.log(256)
    return -log_px / (num_dims * math.log(2))


def log2_per_dimension(log_px, num_dims, density):
    bits = -log_px / math.log(2) / num_dims
    return bits + 8.0 if density else bits


CORRECT = [nats_then_bits, log2_per_dimension]


def right(lp, d, density):
    return nats_then_bits(lp, d, density)


MISTAKES = {
    "nats": (lambda lp, d, dens: -(lp - (d * math.log(256) if dens else 0)) / d, "not by D"),
    "no sign": (lambda lp, d, dens: -right(lp, d, dens), "negate"),
    "whole image": (lambda lp, d, dens: right(lp, d, dens) * d, "divide by D log 2"),
    "times log 2": (lambda lp, d, dens: right(lp, d, dens) * math.log(2) ** 2, "do not multiply"),
    "log 10": (lambda lp, d, dens: right(lp, d, dens) * math.log(2) / math.log(10), "divide by D log 2"),
    "log 256": (lambda lp, d, dens: right(lp, d, dens) / 8, "divide by D log 2"),
    "minus 8": (lambda lp, d, dens: right(lp, d, dens) - 16.0 if dens else right(lp, d, dens), "add 8 bits"),
    "density ignored": (lambda lp, d, dens: right(lp, d, False), "log P(x) = log p(y) - D log 256"),
    "always 8": (lambda lp, d, dens: right(lp, d, False) + 8.0, "add nothing"),
    "log 255": (
        lambda lp, d, dens: right(lp, d, False) + math.log2(255) if dens else right(lp, d, dens),
        "not D log 255",
    ),
    "one number": (lambda lp, d, dens: right(lp, d, dens).mean(), "shape"),
    "no gradient": (lambda lp, d, dens: right(lp.detach(), d, dens), "gradient"),
}


@pytest.mark.parametrize("fn", CORRECT, ids=["nats-then-bits", "log2-per-dimension"])
def test_correct_conversions_pass(fn):
    result = checks.check_bits_per_dim(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_bits_per_dim: passed (8 cases)"


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_each_mistake_fails_with_its_hint(mistake):
    fn, phrase = MISTAKES[mistake]
    result = checks.check_bits_per_dim(fn, hint="fix", allow=True)
    assert not result
    assert phrase in result.message, result.message


def test_a_stub_reports_not_implemented_and_vaelab_s_own_is_refused():
    def stub(log_px, num_dims, density):
        raise NotImplementedError

    assert "not implemented yet" in checks.check_bits_per_dim(stub).message
    result = checks.check_bits_per_dim(lambda lp, d, dens: bits_per_dim(lp, d, density=dens))
    assert not result and "not allowed" in result.message
    assert checks.check_bits_per_dim(lambda lp, d, dens: bits_per_dim(lp, d, density=dens), allow=True)


def test_the_reference_gives_8_bits_for_uniform_levels_and_a_uniform_density():
    d = 784
    uniform_levels = torch.tensor([d * math.log(1 / 256)], dtype=torch.float64)
    assert bits_per_dim(uniform_levels, d).item() == pytest.approx(8.0, rel=1e-12)
    uniform_density = torch.tensor([0.0], dtype=torch.float64)  # log 1 at every dequantized y
    assert bits_per_dim(uniform_density, d, density=True).item() == pytest.approx(8.0, rel=1e-12)
