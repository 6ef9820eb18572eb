"""The check of the conversion to bits per dimension, and its catalogue of typical mistakes.

Chapter 14: the code length of D 8-bit pixels in bits per dimension is

    bpd = -log P(x) / (D log 2),

from log P(x) in nats (a likelihood over the 256 levels, or a bound on it such as L_k). A density p
on [0, 1]^D evaluated at the dequantized pixels y = (k + u)/256 is first moved to the scale of the
levels, log P(x) >= log p(y) - D log 256 (Theis et al. 2016): 8 bits per dimension more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..models.dequantization import bits_per_dim
from ._runner import DEFAULT_HINT, F64, CheckResult, Failure, Hint, Runner, as_output, compare, run_check, unchanged

__all__ = ["check_bits_per_dim"]

# The ready-made functions this task refuses (allow=... permits them).
REFUSED: tuple[str, ...] = (
    "vaelab.bits_per_dim",
    "vaelab.models.dequantization.dequantized_log_likelihood",
)

_FORMULA = "bpd = -log P(x) / (D log 2), with log P(x) = log p(y) - D log 256 for a density"


def _variants(log_px: torch.Tensor, d: int, density: bool) -> list[tuple[Any, Hint | str]]:
    lp = log_px.detach().double()
    shift = d * math.log(256) if density else 0.0
    right = -(lp - shift) / (d * math.log(2))
    return [
        (
            lambda: -(lp - shift) / d,
            Hint(
                kind="you gave nats per dimension: a bit is log 2 nats, so divide by log 2 as well.",
                fix="divide by D log 2, not by D: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: (lp - shift) / (d * math.log(2)),
            Hint(
                kind="your values are negative: bits per dimension are a code length, the negative log-probability.",
                fix="negate the log-probability: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: -(lp - shift) / math.log(2),
            Hint(
                kind="you gave the bits of the whole image; divide by the number of dimensions D too.",
                fix="divide by D log 2: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: -(lp - shift) * math.log(2) / d,
            Hint(
                kind="you multiplied by log 2: one nat is 1/log 2 bits, so divide by log 2.",
                fix="divide by D log 2, do not multiply: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: -(lp - shift) / (d * math.log(10)),
            Hint(
                kind="bits are base-2 units: divide by log 2, not by log 10.",
                fix="divide by D log 2: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: -(lp - shift) / (d * math.log(256)),
            Hint(
                kind="you divided by log 256 instead of log 2: that is the fraction of 8 bits, not bits.",
                fix="divide by D log 2: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: _only(density, right - 16.0),
            Hint(
                kind="the change of scale of a density goes the other way: it adds 8 bits per dimension (a bin "
                "of width 1/256 holds the density divided by 256), it does not subtract them.",
                fix="for density=True add 8 bits per dimension, log P(x) = log p(y) - D log 256: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: _only(density, right - 8.0),
            Hint(
                kind="you left out the change of scale of a density: its log-density must first lose log 256 "
                "nats per dimension, 8 bits more.",
                fix="for density=True use log P(x) = log p(y) - D log 256 before converting: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: _only(not density, right + 8.0),
            Hint(
                kind="a likelihood of the 256 levels needs no change of scale: only a density on [0, 1] "
                "gets the 8 extra bits per dimension.",
                fix="for density=False add nothing: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: _only(density, right - 8.0 + math.log2(255)),
            Hint(
                kind="the dequantized bins are 1/256 wide (the levels k are spread over [k/256, (k + 1)/256)): "
                "the change of scale is log 256 per dimension, not log 255.",
                fix="subtract D log 256, not D log 255: " + _FORMULA + ".",
            ),
        ),
    ]


def _only(applies: bool, value: torch.Tensor) -> torch.Tensor:
    """``value`` where the variant applies to this case; otherwise no variant (compare skips it)."""
    if not applies:
        raise LookupError("this mistake does not apply to the case")
    return value


def _generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return "your result is infinite or NaN for a finite log-probability: " + _FORMULA + "."
    return "compare your formula with " + _FORMULA + "."


def check_bits_per_dim(
    fn: Callable[[torch.Tensor, int, bool], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(log_px, num_dims, density) -> bits per dimension, the shape of log_px.

    log_px: (batch,) log-probabilities in nats of D = num_dims 8-bit pixels (density=False), or the log
    density of the dequantized pixels y = (k + u)/256 on [0, 1]^D (density=True). Compared with
    ``vaelab.bits_per_dim`` on 8 cases: likelihoods of the levels and densities, MNIST's D = 784 and
    CIFAR's 3072, one pixel, float32, and the gradient (an objective in bits per dimension trains too).
    """
    g = torch.Generator().manual_seed(8)
    cases: list[tuple[str, torch.Tensor, int, bool]] = [
        ("log_px=[-543.4], D=784, density=False (levels)", torch.tensor([-543.4], dtype=F64), 784, False),
        ("log_px=[-2.0], D=1, density=False", torch.tensor([-2.0], dtype=F64), 1, False),
        ("log_px=[1200.0, 950.5], D=784, density=True", torch.tensor([1200.0, 950.5], dtype=F64), 784, True),
        ("log_px=[-0.5], D=1, density=True", torch.tensor([-0.5], dtype=F64), 1, True),
        (
            "random log_px ~ -U(3000, 9000), shape (5,), D=3072, density=False",
            -3000 - 6000 * torch.rand(5, generator=g, dtype=F64),
            3072,
            False,
        ),
        (
            "random float32 log_px ~ U(-500, 3000), shape (4,), D=784, density=True",
            (3500 * torch.rand(4, generator=g) - 500).float(),
            784,
            True,
        ),
    ]  # fmt: skip

    def one(r: Runner, case: str, log_px: torch.Tensor, d: int, density: bool) -> torch.Tensor:
        before = (log_px.clone(),)
        out = as_output(r.call(case, log_px, d, density), case, tuple(log_px.shape), "nothing", "batch", 1)
        unchanged(case, ("log_px",), before, (log_px,))
        expected = bits_per_dim(log_px.double(), d, density=density)
        rtol = 1e-5 if log_px.dtype == torch.float32 else 1e-9
        compare(case, out, expected, _variants(log_px, d, density), _generic, rtol=rtol, atol=rtol)
        return out

    def body(r: Runner) -> None:
        for desc, log_px, d, density in cases:
            one(r, r.case(desc), log_px, d, density)
        case = r.case("the same model in bits: density=True gives 8 more bits per dimension than log_px - D log 256")
        log_py = torch.tensor([700.0, -10.0], dtype=F64)
        got = one(r, case, log_py, 784, True)
        shifted = one(r, case, log_py - 784 * math.log(256), 784, False)
        if not torch.allclose(got.double(), shifted.double(), rtol=1e-9, atol=1e-9):
            raise Failure(case, expected="the same bits both ways", got=f"{got.tolist()} and {shifted.tolist()}")
        case = r.case("gradient with respect to log_px, shape (3,), D=784")
        log_px = torch.tensor([-500.0, 20.0, 300.0], dtype=F64, requires_grad=True)
        out = r.call(case, log_px, 784, False)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            raise Failure(
                case,
                expected="bits per dimension that carry a gradient to log_px",
                got="no gradient",
                hint="keep the conversion differentiable (an objective in bits per dimension trains a model): "
                "use torch operations on the tensor, no .item(), float() or numpy.",
            )
        (grad,) = torch.autograd.grad(out.sum(), log_px)
        want = torch.full_like(grad, -1 / (784 * math.log(2)))
        if not torch.allclose(grad, want, rtol=1e-9, atol=0):
            raise Failure(case, expected=f"gradient {want[0].item():.6g} each", got=str(grad.tolist()))

    return run_check(
        "check_bits_per_dim",
        fn,
        body,
        len(cases) + 2,
        raise_on_failure,
        hint=hint,
        forbidden=REFUSED,
        allow=allow,
    )
