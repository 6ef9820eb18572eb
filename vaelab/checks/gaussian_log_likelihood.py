"""The check of the Gaussian log-likelihood sum_i log N(x_i | mean_i, exp(logvar)) and its
catalogue of typical mistakes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..models.likelihoods import gaussian_log_prob
from ._runner import DEFAULT_HINT, F64, LOG_2PI, CheckResult, Hint, Runner, as_output, compare, grad_check, run_check

__all__ = ["check_gaussian_log_likelihood"]

# The ready-made functions this task asks the student to write instead of calling (allow=... permits them).
REFUSED: tuple[str, ...] = (
    "vaelab.gaussian_log_prob",
    "torch.distributions.Normal.log_prob",
    "torch.distributions.Independent.log_prob",
    "torch.distributions.MultivariateNormal.log_prob",
    "F.gaussian_nll_loss",
)


def _gauss_variants(x: torch.Tensor, m: torch.Tensor, lv: Any) -> list[tuple[Any, str]]:
    x, m = x.double(), m.double()
    lv = torch.as_tensor(lv, dtype=F64)
    d = x.shape[-1]

    def ll(var: torch.Tensor, log_norm: torch.Tensor, half: float = 0.5, const: float = LOG_2PI) -> torch.Tensor:
        return -(half * (x - m) ** 2 / var + 0.5 * log_norm + 0.5 * const).sum(-1)

    ref = gaussian_log_prob(x, m, lv)
    return [
        (
            lambda: ref / d,
            "you averaged over the pixels; the log-likelihood of an image is the sum over its pixels "
            "(nats per image): use .sum(dim=-1).",
        ),
        (
            lambda: ll(lv.exp(), lv, const=0.0),
            Hint(
                kind=(
                    "the normalizing constant with 2 pi is missing (it does not change the "
                    "gradient, but without it the value is not a log-density)."
                ),
                fix="the normalizing constant -1/2 log(2 pi) per pixel is missing (it does not change the "
                "gradient, but the value is not a log-density without it).",
            ),
        ),
        (
            lambda: ll(lv.exp(), lv, half=1.0),
            "the factor 1/2 in front of the squared error is missing: -(x - mean)^2 / (2 exp(logvar)).",
        ),
        (
            lambda: ll(lv.expand_as(x), lv.abs().log()),
            "logvar is the log of the variance: divide by exp(logvar), not by logvar.",
        ),
        (
            lambda: ll((2 * lv).exp(), 2 * lv),
            Hint(
                kind=("you treated logvar as the log of the standard deviation; it is the log of the variance."),
                fix="you treated logvar as log(sigma): it is log(sigma^2), so the variance is exp(logvar).",
            ),
        ),
        (
            lambda: ll((0.5 * lv).exp(), lv),
            Hint(
                kind=("you divided the squared error by the standard deviation; it is divided by the variance."),
                fix="you divided by the standard deviation exp(logvar / 2); the squared error is divided by the "
                "variance exp(logvar).",
            ),
        ),
        (
            lambda: ll(lv.exp(), torch.zeros(())),
            "the -1/2 logvar term (the log of the normalizer sigma) is missing; it matters whenever the "
            "variance is not 1.",
        ),
        (lambda: -ref, "you return -log p (a loss); return the log-likelihood itself."),
        (
            lambda: ll(lv.exp(), -lv),
            "check the sign of the log-variance term: log N = -1/2 [(x - mean)^2 / exp(logvar) + logvar + log 2 pi].",
        ),
    ]


def _gauss_generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return (
            "your log-likelihood is NaN or infinite where the exact value is finite: divide by "
            "torch.exp(logvar) (not by logvar, which can be 0) and avoid log of a variance that can be 0."
        )
    return (
        "compare term by term with sum_i -1/2 [(x_i - mean_i)^2 / exp(logvar) + logvar + log(2 pi)], "
        "summed over the pixels (dim -1)."
    )


def _float_logvar_hint(error: BaseException) -> str | None:
    text = str(error)
    if isinstance(error, TypeError) and "float" in text:
        return Hint(
            kind="logvar may be a plain Python float; convert it to a tensor before using tensor operations on it.",
            fix="logvar may be a plain Python float (e.g. 0.0): convert it first with "
            "logvar = torch.as_tensor(logvar, dtype=x.dtype).",
        )
    return None


def check_gaussian_log_likelihood(
    fn: Callable[..., torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(x, mean, logvar) -> sum_i log N(x_i | mean_i, exp(logvar)), shape (batch,).

    x, mean: (batch, D); logvar: a float or a tensor broadcastable to x (0-d, per pixel (1, D) or
    per entry (batch, D)). Compared with ``vaelab.gaussian_log_prob`` on 12 cases, including the
    gradient with respect to the mean.
    """
    g = torch.Generator().manual_seed(20241)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, dtype=F64)

    cases: list[tuple[str, torch.Tensor, torch.Tensor, Any]] = [
        ("x=[[0]], mean=[[0]], logvar=0.0 (a float)", torch.zeros(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), 0.0),
        ("x=[[1]], mean=[[0]], logvar=0.0", torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), 0.0),
        ("x=[[1]], mean=[[0]], logvar=2.0", torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), 2.0),
        (
            "x=[[0.5, 1]], mean=[[0, 0.25]], logvar=-1.5",
            torch.tensor([[0.5, 1.0]], dtype=F64),
            torch.tensor([[0.0, 0.25]], dtype=F64),
            -1.5,
        ),
        ("random x, mean in [0, 1] of shape (4, 784), logvar=0.0", rnd(4, 784), rnd(4, 784), 0.0),
        (
            "random x, mean of shape (3, 10), logvar=torch.tensor(-1.0) (0-d tensor)",
            rnd(3, 10),
            rnd(3, 10),
            torch.tensor(-1.0, dtype=F64),
        ),
        ("random x, mean of shape (3, 6), per-pixel logvar of shape (1, 6)", rnd(3, 6), rnd(3, 6), 4 * rnd(1, 6) - 2),
        ("random x, mean of shape (2, 5), logvar of shape (2, 5)", rnd(2, 5), rnd(2, 5), 4 * rnd(2, 5) - 2),
        ("small variance: random x, mean of shape (2, 8), logvar=-6.0", rnd(2, 8), rnd(2, 8), -6.0),
        (
            "float32 random x, mean of shape (3, 784), logvar=torch.tensor(0.5)",
            torch.rand(3, 784, generator=g),
            torch.rand(3, 784, generator=g),
            torch.tensor(0.5),
        ),
    ]

    def body(r: Runner) -> None:
        for desc, x, m, lv in cases:
            case = r.case(desc)
            out = as_output(
                r.call(case, x, m, lv, exception_hint=_float_logvar_hint),
                case,
                (x.shape[0],),
                "pixels (dim -1)",
                "batch",
                x.shape[1],
            )
            expected = gaussian_log_prob(x.double(), m.double(), torch.as_tensor(lv, dtype=F64))
            rtol = 1e-5 if x.dtype == torch.float32 else 1e-7
            compare(case, out, expected, _gauss_variants(x, m, lv), _gauss_generic, rtol=rtol, atol=rtol)
        case = r.case("gradient with respect to mean: (x - mean) / exp(logvar), shape (2, 3), logvar=0.5")
        x = torch.tensor([[0.1, 0.9, 0.5], [1.0, 0.0, 0.3]], dtype=F64)
        m = torch.tensor([[0.4, 0.2, 0.5], [0.0, 0.6, 0.9]], dtype=F64, requires_grad=True)
        grad_check(
            r,
            case,
            {"mean": m},
            lambda: r.call(case, x, m, 0.5),
            lambda _: {"mean": (x - m.detach()) / math.exp(0.5)},
            "a log-likelihood",
            "the log-likelihood must be differentiable in the mean (the decoder learns from it): "
            "use torch operations only, no .item(), numpy or .detach().",
        )
        case = r.case("batch of one: x=[[2]], mean=[[1]], logvar=torch.tensor([[1.0]]) must give shape (1,)")
        x, m, lv = torch.tensor([[2.0]], dtype=F64), torch.tensor([[1.0]], dtype=F64), torch.tensor([[1.0]], dtype=F64)
        out = as_output(
            r.call(case, x, m, lv, exception_hint=_float_logvar_hint), case, (1,), "pixels (dim -1)", "batch", 1
        )
        compare(case, out, gaussian_log_prob(x, m, lv), _gauss_variants(x, m, lv), _gauss_generic)

    return run_check(
        "check_gaussian_log_likelihood",
        fn,
        body,
        len(cases) + 2,
        raise_on_failure,
        hint=hint,
        forbidden=REFUSED,
        allow=allow,
    )
