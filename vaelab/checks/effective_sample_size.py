"""The check of the effective sample size of importance weights, (sum_i w_i)^2 / sum_i w_i^2,
computed from log-weights, and its catalogue of typical mistakes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._runner import DEFAULT_HINT, F64, CheckResult, Hint, Runner, as_output, compare, dtype_runs, run_check, unchanged

__all__ = ["check_effective_sample_size"]

# The ready-made functions this task refuses (allow=... permits them): none in torch or vaelab.
REFUSED: tuple[str, ...] = ()


def _reference(lw: torch.Tensor) -> torch.Tensor:
    lw = lw.double()
    return torch.exp(2 * torch.logsumexp(lw, dim=0) - torch.logsumexp(2 * lw, dim=0))


def _variants(lw: torch.Tensor) -> list[tuple[Any, str]]:
    lw = lw.double()
    k, batch = lw.shape
    lse, lse2 = torch.logsumexp(lw, dim=0), torch.logsumexp(2 * lw, dim=0)
    return [
        (
            lambda: torch.exp(lse2 - 2 * lse),
            "you returned sum w^2 / (sum w)^2, the inverse of the effective sample size: ESS = (sum_i w_i)^2 "
            "/ sum_i w_i^2 (between 1 and k).",
        ),
        (
            lambda: torch.exp(2 * lse - lse2) / k,
            Hint(
                kind=("you divided by k: that is the ESS as a fraction of k; return the number of samples itself."),
                fix=f"you divided by k = {k}: that is the ESS as a fraction of k (between 1/k and 1); return the "
                "number of samples itself, (sum_i w_i)^2 / sum_i w_i^2.",
            ),
        ),
        (
            lambda: torch.exp(lse - lse2),
            "the numerator is the square of the sum of the weights: ESS = (sum_i w_i)^2 / sum_i w_i^2, "
            "in log space exp(2 logsumexp(log_w) - logsumexp(2 log_w)).",
        ),
        (
            lambda: torch.exp(2 * lse - 2 * lse2),
            Hint(
                kind="the denominator is the sum of the squared weights, not the square of their sum.",
                fix="the denominator is the sum of the squared weights, logsumexp(2 * log_w), not the square of a sum.",
            ),
        ),
        (
            lambda: lw.sum(0) ** 2 / (lw**2).sum(0),
            "you used the log-weights as if they were the weights: exponentiate (in log space): "
            "ESS = exp(2 logsumexp(log_w, dim=0) - logsumexp(2 * log_w, dim=0)).",
        ),
        (
            lambda: torch.exp(2 * torch.logsumexp(lw, dim=1) - torch.logsumexp(2 * lw, dim=1)),
            "you reduced over the batch dimension: log_weights is (k, batch), reduce over the k samples, dim 0.",
        ),
        (
            lambda: torch.full((batch,), float(k), dtype=F64),
            Hint(
                kind=("you returned k for every example; the ESS equals k only when all weights are equal."),
                fix=f"you returned k = {k} for every example: the ESS equals k only when all weights are equal; "
                "compute (sum_i w_i)^2 / sum_i w_i^2.",
            ),
        ),
        (
            lambda: 1.0 / torch.softmax(lw, dim=0).max(0).values,
            "1 / max_i of the normalized weights is another diagnostic; the check wants (sum_i w_i)^2 / sum_i "
            "w_i^2 = 1 / sum_i wbar_i^2 with wbar_i = w_i / sum_j w_j.",
        ),
    ]


def _generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return Hint(
            kind=(
                "the weights underflow to 0 (or overflow to inf) for log-weights around"
                " -1000 or +800: stay in log space."
            ),
            fix="exp(log_w) underflows to 0 (or overflows to inf) for log-weights around -1000 or +800, so "
            "0/0 or inf/inf gives NaN: stay in log space, exp(2 * logsumexp(log_w, dim=0) - "
            "logsumexp(2 * log_w, dim=0)), or normalize first with torch.softmax(log_w, dim=0).",
        )
    return "compare with ESS = (sum_i w_i)^2 / sum_i w_i^2 = 1 / sum_i wbar_i^2, wbar = torch.softmax(log_w, dim=0)."


def check_effective_sample_size(
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(log_weights) -> ESS = (sum_i w_i)^2 / sum_i w_i^2 for each example, shape (batch,).

    log_weights: (k, batch), log w_i of k importance samples for each example (as returned by
    ``vaelab.log_importance_weights``). The ESS lies between 1 (one weight dominates) and k (equal
    weights). 11 cases: hand-computed small inputs, equal weights, k = 1, one dominant weight, a
    square input that reveals the wrong reduction dimension, log-weights around -1000 and +800
    nats (naive exp under/overflows), a zero weight, float32, and a batch of one.
    """
    g = torch.Generator().manual_seed(20251)
    inf = float("inf")
    cases: list[tuple[str, torch.Tensor]] = [
        (
            "weights [1, 2, 3, 4] and [1, 1, 1, 10]: log_weights = log of those, shape (4, 2)",
            torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 10.0]], dtype=F64).log(),
        ),
        ("equal weights: log_weights = zeros of shape (5, 3) (ESS = k = 5)", torch.zeros(5, 3, dtype=F64)),
        ("k=1: log_weights=[[-3, 0.5]] (ESS = 1)", torch.tensor([[-3.0, 0.5]], dtype=F64)),
        (
            "one dominant weight: log_weights = [[0, 0], [-50, 30], [-50, 0]]",
            torch.tensor([[0.0, 0.0], [-50.0, 30.0], [-50.0, 0.0]], dtype=F64),
        ),
        ("square input: random log_weights ~ N(0, 1) of shape (3, 3)", torch.randn(3, 3, generator=g, dtype=F64)),
        ("random log_weights ~ N(-90, 4) of shape (100, 4)", -90 + 2 * torch.randn(100, 4, generator=g, dtype=F64)),
        (
            "a zero weight: log_weights=[[-inf, 0], [1, -inf], [2, 3]]",
            torch.tensor([[-inf, 0.0], [1.0, -inf], [2.0, 3.0]], dtype=F64),
        ),
        (
            "very negative log-weights ~ N(-1000, 1), as for MNIST images, shape (50, 3)",
            -1000 + torch.randn(50, 3, generator=g, dtype=F64),
        ),
        ("very large log-weights ~ N(800, 1), shape (50, 3)", 800 + torch.randn(50, 3, generator=g, dtype=F64)),
        ("float32 log_weights ~ N(-50, 4) of shape (20, 3)", -50 + 2 * torch.randn(20, 3, generator=g)),
    ]

    def body(r: Runner) -> None:
        for desc, lw0 in cases:
            for case, (lw,), rtol32 in dtype_runs(r.case(desc), (lw0,), desc.startswith("very")):
                before = lw.clone()
                out = as_output(r.call(case, lw), case, (lw.shape[1],), "k samples (dim 0)", "batch", lw.shape[0], 0)
                unchanged(case, ("log_weights",), (before,), (lw,))
                rtol = rtol32 or (1e-5 if lw.dtype == torch.float32 else 1e-9)
                compare(case, out, _reference(lw), _variants(lw), _generic, rtol=rtol, atol=1e-9)
        case = r.case("k=4, batch=1: log_weights=log([[1], [1], [2], [4]]) must give shape (1,) and 64/22")
        lw = torch.tensor([[1.0], [1.0], [2.0], [4.0]], dtype=F64).log()
        out = as_output(r.call(case, lw), case, (1,), "k samples (dim 0)", "batch", 4, 0)
        compare(case, out, _reference(lw), _variants(lw), _generic, rtol=1e-9, atol=1e-9)

    return run_check(
        "check_effective_sample_size",
        fn,
        body,
        len(cases) + 1,
        raise_on_failure,
        hint=hint,
        forbidden=REFUSED,
        allow=allow,
    )
