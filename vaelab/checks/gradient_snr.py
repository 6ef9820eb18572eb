"""The check of the signal-to-noise ratio of repeated gradient estimates, SNR_j = |mean_m g_mj| / std_m g_mj
(Rainforth et al. 2018), and its catalogue of typical mistakes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._runner import DEFAULT_HINT, F64, CheckResult, Hint, Runner, as_output, compare, run_check, unchanged

__all__ = ["check_gradient_snr"]

# The ready-made functions this task asks the student to write instead of calling (allow=... permits them).
REFUSED: tuple[str, ...] = ("vaelab.estimators.iwae.gradient_snr",)


def _reference(g: torch.Tensor) -> torch.Tensor:
    g = g.double()
    return g.mean(0).abs() / g.std(0)


def _variants(g: torch.Tensor) -> list[tuple[Any, str]]:
    g = g.double()
    mean, std = g.mean(0), g.std(0)
    return [
        (
            lambda: mean / std,
            "the SNR is a size, |E[g]| / std[g]: take the absolute value of the mean (a negative gradient is "
            "as much signal as a positive one).",
        ),
        (
            lambda: std / mean.abs(),
            "you returned std / |mean|, the noise-to-signal ratio: SNR = |mean| / std.",
        ),
        (
            lambda: mean.abs() / g.var(0),
            "divide by the standard deviation, not the variance: SNR = |mean| / std (both in the units of g).",
        ),
        (
            lambda: mean.abs() / g.std(0, unbiased=False),
            Hint(
                kind="use the sample standard deviation over the draws, which divides by M - 1.",
                fix="use the sample standard deviation over the draws (torch.std with its default, dividing by M - 1), "
                "as Rainforth et al. estimate std[g] from M draws.",
            ),
        ),
        (
            lambda: g.mean(1).abs() / g.std(1),
            "you reduced over the parameters (dim 1): the draws are dim 0, one SNR per parameter.",
        ),
        (
            lambda: g.abs().mean(0) / std,
            "take the absolute value of the mean, not the mean of the absolute values: |E[g]| measures the "
            "signal that survives averaging; E|g| does not shrink when the signs disagree.",
        ),
        (
            lambda: mean.abs() / (std / g.shape[0] ** 0.5),
            Hint(
                kind=(
                    "you divided by the standard error of the mean; the SNR uses the "
                    "standard deviation of the draws themselves."
                ),
                fix="you divided by the standard error of the mean (std / sqrt(M)); the SNR of one gradient estimate "
                "uses the standard deviation of the draws themselves.",
            ),
        ),
    ]


def _generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    return "compare with SNR_j = |mean over draws of g_j| / std over draws of g_j: g.mean(0).abs() / g.std(0)."


def check_gradient_snr(
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(grads) -> SNR_j = |mean_m g_mj| / std_m g_mj, shape (n_params,).

    grads: (M, n_params), M independent draws of a gradient estimate (rows), one column per scalar
    parameter; std is the sample standard deviation (divisor M - 1). 8 cases: hand-computed draws,
    negative means, a square input that reveals the wrong reduction dimension, means much smaller than
    the noise, M = 2, float32, large and small scales.
    """
    g = torch.Generator().manual_seed(20260)
    cases: list[tuple[str, torch.Tensor]] = [
        (
            "grads = [[1, -2], [3, -2.5], [2, -1.5]] (M=3 draws, 2 parameters): SNR = [2, 4]",
            torch.tensor([[1.0, -2.0], [3.0, -2.5], [2.0, -1.5]], dtype=F64),
        ),
        (
            "negative means: grads ~ N(-3, 1) of shape (50, 4)",
            -3 + torch.randn(50, 4, generator=g, dtype=F64),
        ),
        (
            "square input: grads ~ N(1, 4) of shape (4, 4)",
            1 + 2 * torch.randn(4, 4, generator=g, dtype=F64),
        ),
        (
            "weak signal: grads ~ N(0.05, 1) of shape (200, 3)",
            0.05 + torch.randn(200, 3, generator=g, dtype=F64),
        ),
        ("M=2 draws: grads = [[0, 1, 5], [2, 2, 4]]", torch.tensor([[0.0, 1.0, 5.0], [2.0, 2.0, 4.0]], dtype=F64)),
        ("float32 grads ~ N(2, 1) of shape (30, 5)", 2 + torch.randn(30, 5, generator=g)),
        (
            "large scale: grads ~ N(1e4, 1e6) of shape (40, 3)",
            1e4 + 1e3 * torch.randn(40, 3, generator=g, dtype=F64),
        ),
        (
            "small scale: grads ~ N(-1e-6, 1e-12) of shape (40, 3)",
            -1e-6 + 1e-6 * torch.randn(40, 3, generator=g, dtype=F64),
        ),
    ]

    def body(r: Runner) -> None:
        for desc, grads in cases:
            case = r.case(desc)
            before = grads.clone()
            out = as_output(
                r.call(case, grads), case, (grads.shape[1],), "draws (dim 0)", "parameters", grads.shape[0], 0
            )
            unchanged(case, ("grads",), (before,), (grads,))
            rtol = 1e-5 if grads.dtype == torch.float32 else 1e-9
            compare(case, out, _reference(grads), _variants(grads), _generic, rtol=rtol, atol=0.0)

    return run_check(
        "check_gradient_snr", fn, body, len(cases), raise_on_failure, hint=hint, forbidden=REFUSED, allow=allow
    )
