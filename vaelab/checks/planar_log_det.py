"""The check of the log-determinant of a planar map f(z) = z + u_hat tanh(w^T z + b) (chapter 11),
and its catalogue of typical mistakes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._runner import DEFAULT_HINT, F64, CheckResult, Hint, Runner, as_output, compare, run_check, unchanged

__all__ = ["check_planar_log_det"]

# The ready-made functions this task asks the student to write instead of calling (allow=... permits them).
REFUSED: tuple[str, ...] = ("vaelab.models.flows.planar_transform",)


def _reference(z: torch.Tensor, u_hat: torch.Tensor, w: torch.Tensor, b: float) -> torch.Tensor:
    """log |1 + tanh'(w^T z + b) w^T u_hat|, by the matrix determinant lemma."""
    z, u_hat, w = z.double(), u_hat.double(), w.double()
    h = torch.tanh(z @ w + b)
    return torch.log(torch.abs(1 + (1 - h * h) * (w @ u_hat)))


def _variants(z: torch.Tensor, u_hat: torch.Tensor, w: torch.Tensor, b: float) -> list[tuple[Any, str]]:
    z, u_hat, w = z.double(), u_hat.double(), w.double()
    a = z @ w + b
    h = torch.tanh(a)
    wu = w @ u_hat
    return [
        (
            lambda: torch.log(torch.abs(1 + h * wu)),
            Hint(
                kind="you used tanh itself where its derivative belongs.",
                fix="you used h(a) = tanh(a) where the derivative h'(a) = 1 - tanh(a)^2 belongs: the Jacobian of "
                "u_hat h(w^T z + b) is u_hat h'(w^T z + b) w^T.",
            ),
        ),
        (
            lambda: torch.log(torch.abs((1 - h * h) * wu)),
            Hint(
                kind="the identity's contribution to the Jacobian, the 1 in the determinant, is missing.",
                fix="the Jacobian is I + u_hat h'(a) w^T, so its determinant is 1 + h'(a) w^T u_hat: the 1 is missing.",
            ),
        ),
        (
            lambda: 1 + (1 - h * h) * wu,
            "that is the determinant itself: return its logarithm, log |1 + h'(a) w^T u_hat|.",
        ),
        (
            lambda: torch.log(torch.abs(1 + (1 - torch.tanh(z @ w) ** 2) * wu)),
            "the bias b is part of the argument: h'(w^T z + b), not h'(w^T z).",
        ),
        (
            lambda: torch.log(torch.abs(1 + (1 - h * h) * (u_hat @ u_hat))),
            "the determinant has w^T u_hat (matrix determinant lemma: det(I + a c^T) = 1 + c^T a), not ||u_hat||^2.",
        ),
        (
            lambda: torch.log(torch.abs(1 + (1 - h * h) * (w @ w))),
            "the determinant has w^T u_hat (matrix determinant lemma: det(I + a c^T) = 1 + c^T a), not ||w||^2.",
        ),
        (
            lambda: -torch.log(torch.abs(1 + (1 - h * h) * wu)),
            Hint(
                kind="a sign: yours is the negative of the log-determinant.",
                fix="a sign: log |det df/dz| is log |1 + h'(a) w^T u_hat|; the density of f(z) subtracts it, the "
                "log-determinant itself is not negated.",
            ),
        ),
    ]


def _generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return (
            "log of a negative number is NaN: when w^T u_hat < -1 the determinant 1 + h'(a) w^T u_hat can be "
            "negative; take the absolute value, log |1 + h'(a) w^T u_hat|."
        )
    return "compare with log |1 + (1 - tanh(w^T z + b)^2) w^T u_hat| for each row of z."


def check_planar_log_det(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(z, u_hat, w, b) -> log |det df/dz| for f(z) = z + u_hat tanh(w^T z + b), shape (batch,).

    z: (batch, d); u_hat, w: (d,); b: a float. By the matrix determinant lemma the determinant is
    1 + h'(w^T z + b) w^T u_hat with h' = 1 - tanh^2. 8 cases: a hand-computed 1-D case, random
    2-D and 5-D cases, a case with b != 0 far from the origin, a negative determinant (w^T u_hat < -1,
    which needs the absolute value), a square input that reveals transposed products, float32, and
    a batch of one. The reference is also the brute-force Jacobian's log |det| (tested).
    """
    g = torch.Generator().manual_seed(20261)
    cases: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float]] = [
        (
            "d=1: z=[[0.0], [1.0]], u_hat=[0.5], w=[2.0], b=0.0",
            torch.tensor([[0.0], [1.0]], dtype=F64),
            torch.tensor([0.5], dtype=F64),
            torch.tensor([2.0], dtype=F64),
            0.0,
        ),
        (
            "d=2, batch=4: random z ~ N(0, 1), u_hat, w ~ N(0, 1), b=0.3",
            torch.randn(4, 2, generator=g, dtype=F64),
            torch.randn(2, generator=g, dtype=F64),
            torch.randn(2, generator=g, dtype=F64),
            0.3,
        ),
        (
            "d=5, batch=6: random, b=-1.2",
            torch.randn(6, 5, generator=g, dtype=F64),
            torch.randn(5, generator=g, dtype=F64),
            torch.randn(5, generator=g, dtype=F64),
            -1.2,
        ),
        (
            "d=2: z far from the origin (~N(3, 1)), b=2.0",
            3 + torch.randn(5, 2, generator=g, dtype=F64),
            torch.tensor([0.7, -0.2], dtype=F64),
            torch.tensor([0.4, 0.9], dtype=F64),
            2.0,
        ),
        (
            "w^T u_hat = -3 < -1, so the determinant is negative near w^T z + b = 0: z=[[0, 0], [0.1, -0.1], [2, 2]]",
            torch.tensor([[0.0, 0.0], [0.1, -0.1], [2.0, 2.0]], dtype=F64),
            torch.tensor([-1.5, -1.5], dtype=F64),
            torch.tensor([1.0, 1.0], dtype=F64),
            0.0,
        ),
        (
            "square input: z of shape (3, 3), random",
            torch.randn(3, 3, generator=g, dtype=F64),
            torch.randn(3, generator=g, dtype=F64),
            torch.randn(3, generator=g, dtype=F64),
            0.5,
        ),
        (
            "float32: d=3, batch=5, random",
            torch.randn(5, 3, generator=g),
            torch.randn(3, generator=g),
            torch.randn(3, generator=g),
            -0.4,
        ),
    ]

    def body(r: Runner) -> None:
        for desc, z, u_hat, w, b in cases + [
            (
                "batch of one: z=[[0.2, -0.4]], u_hat=[1, 0.5], w=[0.3, 0.8], b=0.1",
                torch.tensor([[0.2, -0.4]], dtype=F64),
                torch.tensor([1.0, 0.5], dtype=F64),
                torch.tensor([0.3, 0.8], dtype=F64),
                0.1,
            )
        ]:
            case = r.case(desc)
            before = (z.clone(), u_hat.clone(), w.clone())
            out = as_output(r.call(case, z, u_hat, w, b), case, (z.shape[0],), "d (dim 1)", "batch", z.shape[1], 1)
            unchanged(case, ("z", "u_hat", "w"), before, (z, u_hat, w))
            rtol = 1e-5 if z.dtype == torch.float32 else 1e-9
            compare(case, out, _reference(z, u_hat, w, b), _variants(z, u_hat, w, b), _generic, rtol=rtol, atol=1e-9)

    return run_check(
        "check_planar_log_det", fn, body, len(cases) + 1, raise_on_failure, hint=hint, forbidden=REFUSED, allow=allow
    )
