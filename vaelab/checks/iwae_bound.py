"""The check of the log-mean-exp of importance weights, log (1/k) sum_i w_i, and its catalogue of
typical mistakes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._runner import (
    DEFAULT_HINT,
    F64,
    CheckResult,
    Hint,
    Runner,
    as_output,
    compare,
    dtype_runs,
    grad_check,
    run_check,
    unchanged,
)

__all__ = ["check_iwae_bound"]

# The ready-made functions this task asks the student to write instead of calling (allow=... permits them).
REFUSED: tuple[str, ...] = ("vaelab.iwae_bound",)


def _iwae_reference(lw: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(lw.double(), dim=0) - math.log(lw.shape[0])


def _iwae_variants(lw: torch.Tensor) -> list[tuple[Any, str]]:
    lw = lw.double()
    k, batch = lw.shape
    lse = torch.logsumexp(lw, dim=0)
    return [
        (
            lambda: lse,
            f"the -log k is missing: L_k = log (1/k) sum_i w_i = logsumexp(log_w, dim=0) - log k (here k={k}).",
        ),
        (lambda: lse + math.log(k), "check the sign of log k: L_k = logsumexp(log_w, dim=0) - log k."),
        (
            lambda: lw.mean(0),
            "you averaged the log-weights, which gives the ELBO (L_1 on average), not L_k: average the "
            "weights inside the log, logsumexp(log_w, dim=0) - log k.",
        ),
        (lambda: lse / k, "you divided the log by k; the 1/k belongs inside the log: logsumexp(log_w, dim=0) - log k."),
        (
            lambda: lw.max(0).values,
            "the largest log-weight alone is not the bound: L_k = logsumexp(log_w, dim=0) - log k.",
        ),
        (
            lambda: lse - math.log(batch),
            Hint(
                kind=(
                    "you subtracted the log of the batch size; subtract the log of k, the number of samples (dim 0)."
                ),
                fix=f"you subtracted log(batch size) = log {batch}; subtract log k = log {k}, the number of "
                "samples (dim 0).",
            ),
        ),
        (
            lambda: torch.logsumexp(lw, dim=1) - math.log(batch),
            "you reduced over the batch dimension: log_weights is (k, batch), reduce over dim 0.",
        ),
        (
            lambda: torch.logsumexp(lw, dim=1) - math.log(k),
            "you reduced over the batch dimension: log_weights is (k, batch), reduce over dim 0.",
        ),
    ]


def _iwae_generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return Hint(
            kind=(
                "exponentiating the log-weights underflows to 0 (or overflows) when "
                "they are large in magnitude, as for images (-1000 nats): stay in the "
                "log domain."
            ),
            fix="log(mean(exp(log_w))) underflows to log(0) = -inf (or overflows to inf) when the log-weights "
            "are large in magnitude, e.g. -1000 nats for an image: use torch.logsumexp(log_w, dim=0) - "
            "log k, which subtracts the maximum before exponentiating.",
        )
    return "compare with L_k = log (1/k) sum_i exp(log_w_i) = torch.logsumexp(log_w, dim=0) - log k."


def check_iwae_bound(
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(log_weights) -> L_k = log (1/k) sum_{i=1}^k exp(log_w_i), shape (batch,).

    log_weights: (k, batch), one column per example. 12 cases: k = 1 (L_1 is the ELBO), equal
    weights, a square (k = batch) input that reveals the wrong reduction dimension, log-weights
    around -1000 and +800 nats (naive exp under/overflows), a zero weight (log w = -inf), k = 1000,
    float32, and the gradient (the normalized weights).
    """
    g = torch.Generator().manual_seed(20243)
    inf = float("inf")
    cases: list[tuple[str, torch.Tensor]] = [
        ("k=1: log_weights=[[-3, 0.5]]", torch.tensor([[-3.0, 0.5]], dtype=F64)),
        ("equal weights: log_weights = zeros of shape (5, 3) (k=5, batch=3)", torch.zeros(5, 3, dtype=F64)),
        ("log_weights = log([[1, 2], [3, 4]]) (k=2, batch=2)", torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64).log()),
        ("random log_weights ~ N(-90, 9) of shape (10, 4)", -90 + 3 * torch.randn(10, 4, generator=g, dtype=F64)),
        ("square input: random log_weights ~ N(0, 4) of shape (3, 3)", 2 * torch.randn(3, 3, generator=g, dtype=F64)),
        (
            "k=1000 samples: log_weights ~ N(-100, 100) of shape (1000, 2)",
            -100 + 10 * torch.randn(1000, 2, generator=g, dtype=F64),
        ),
        (
            "a zero weight: log_weights=[[-inf, 0], [1, -inf], [2, 3]]",
            torch.tensor([[-inf, 0.0], [1.0, -inf], [2.0, 3.0]], dtype=F64),
        ),
        ("float32 log_weights ~ N(-50, 25) of shape (8, 3)", -50 + 5 * torch.randn(8, 3, generator=g)),
        (
            "very negative log-weights ~ N(-1000, 25), as for MNIST images, shape (20, 3)",
            -1000 + 5 * torch.randn(20, 3, generator=g, dtype=F64),
        ),
        ("very large log-weights ~ N(800, 25), shape (20, 3)", 800 + 5 * torch.randn(20, 3, generator=g, dtype=F64)),
    ]

    def body(r: Runner) -> None:
        for desc, lw0 in cases:
            for case, (lw,), rtol32 in dtype_runs(r.case(desc), (lw0,), desc.startswith("very")):
                before = lw.clone()
                out = as_output(r.call(case, lw), case, (lw.shape[1],), "k samples (dim 0)", "batch", lw.shape[0], 0)
                unchanged(case, ("log_weights",), (before,), (lw,))
                rtol = rtol32 or (1e-6 if lw.dtype == torch.float32 else 1e-9)
                compare(case, out, _iwae_reference(lw), _iwae_variants(lw), _iwae_generic, rtol=rtol, atol=1e-7)
        case = r.case("gradient: d L_k / d log_w_i = w_i / sum_j w_j, shape (4, 2)")
        lw = torch.tensor([[0.0, -5.0], [1.0, -4.0], [-2.0, -6.0], [0.5, -4.5]], dtype=F64, requires_grad=True)
        grad_check(
            r,
            case,
            {"log_weights": lw},
            lambda: r.call(case, lw),
            lambda _: {"log_weights": torch.softmax(lw.detach(), dim=0)},
            "a bound",
            "the bound must be differentiable in the log-weights (IWAE trains with it): use torch "
            "operations only, no .item(), numpy or .detach().",
        )
        case = r.case("k=4, batch=1: log_weights of shape (4, 1) must give shape (1,)")
        lw = torch.tensor([[-1.0], [-2.0], [-3.0], [-4.0]], dtype=F64)
        out = as_output(r.call(case, lw), case, (1,), "k samples (dim 0)", "batch", 4, 0)
        compare(case, out, _iwae_reference(lw), _iwae_variants(lw), _iwae_generic, rtol=1e-9, atol=1e-9)

    return run_check(
        "check_iwae_bound", fn, body, len(cases) + 2, raise_on_failure, hint=hint, forbidden=REFUSED, allow=allow
    )
