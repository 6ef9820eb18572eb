"""The check of the discretized logistic's log-probability of 8-bit grey levels, and its catalogue of
typical mistakes.

Chapter 14: a grey level k in {0, ..., 255}, stored as x = k/255, owns the bin [x - h, x + h] with
h = 1/(2 * 255), half the distance to its neighbours; the first bin extends to -inf and the last to
+inf, so the 256 probabilities sum to 1. With the logistic's CDF sigmoid((y - mu)/s), s = exp(log_scale),

    P(x) = sigmoid((x + h - mu)/s) - sigmoid((x - h - mu)/s)     (interior levels),
    P(0) = sigmoid((h - mu)/s),   P(1) = 1 - sigmoid((1 - h - mu)/s),

and log p(x) = sum_i log P(x_i) over the pixels (PixelCNN++, Salimans et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

from ..models.discretized_logistic import discretized_logistic_log_prob
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

__all__ = ["check_discretized_logistic"]

# The ready-made functions this task refuses (allow=... permits them).
REFUSED: tuple[str, ...] = (
    "vaelab.models.discretized_logistic.discretized_logistic_log_prob",
    "vaelab.DiscretizedLogisticLikelihood.log_prob",
    "vaelab.DiscretizedLogisticMixtureLikelihood.log_prob",
)

_HALF = 0.5 / 255  # half a level: the bins' half-width
_FORMULA = (
    "log P(x) = log(sigmoid((x + h - mu)/s) - sigmoid((x - h - mu)/s)) with h = 1/(2 * 255) and s = exp(log_scale), "
    "the first bin open to -inf and the last to +inf"
)


def _reference(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    return discretized_logistic_log_prob(x.double(), mean.double(), log_scale.double()).sum(-1)


def _log_bins(x: torch.Tensor, mu: torch.Tensor, s: torch.Tensor, half: float, edges: bool) -> torch.Tensor:
    """log of the logistic's mass over [x - half, x + half] per pixel, the edge bins open when ``edges``
    (written stably so that the variants are finite where the reference is)."""
    a, b = (x + half - mu) / s, (x - half - mu) / s
    interior = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(b - a))
    if not edges:
        return interior
    bottom, top = x < _HALF, x > 1 - _HALF
    return torch.where(bottom, F.logsigmoid(a), torch.where(top, F.logsigmoid(-b), interior))


def _variants(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> list[tuple[Any, Hint | str]]:
    x, mu, ls = x.detach().double(), mean.detach().double(), log_scale.detach().double()
    s = ls.exp()
    right = _log_bins(x, mu, s, _HALF, True)

    def density_times_width() -> torch.Tensor:
        t = (x - mu) / s
        return (-t - 2 * F.softplus(-t) - ls + math.log(1 / 255)).sum(-1)

    return [
        (
            lambda: -right.sum(-1),
            Hint(
                kind="your values are positive: you returned the negative log-probability (a code length), but "
                "the log-probability of a level is at most 0.",
                fix="return log P(x), not -log P(x): " + _FORMULA + ".",
            ),
        ),
        (
            lambda: _log_bins(x, mu, s, _HALF, False).sum(-1),
            Hint(
                kind="the edge levels 0 and 255 need the logistic's tails: the first bin extends to minus "
                "infinity and the last to plus infinity, so that the 256 probabilities sum to 1.",
                fix="for x = 0 use log sigmoid((h - mu)/s) (the bin (-inf, h]) and for x = 1 use "
                "log(1 - sigmoid((1 - h - mu)/s)) (the bin [1 - h, +inf)); " + _FORMULA + ".",
            ),
        ),
        (
            lambda: _log_bins(x, mu, s, 0.5 / 256, True).sum(-1),
            Hint(
                kind="the bins have the wrong width: the levels are 1/255 apart (x is k/255), so each bin is "
                "1/255 wide, half a level on each side, not 1/256.",
                fix="use h = 1/(2 * 255): the levels k/255 are 1/255 apart. " + _FORMULA + ".",
            ),
        ),
        (
            lambda: _log_bins(x, mu, s, 1 / 255, True).sum(-1),
            Hint(
                kind="your bins reach a whole level to each side, so neighbouring bins overlap and the "
                "probabilities sum to more than 1; a bin reaches half the distance to each neighbour.",
                fix="use the half-width h = 1/(2 * 255), not 1/255: " + _FORMULA + ".",
            ),
        ),
        (
            density_times_width,
            Hint(
                kind="you used the logistic's density at the level times the bin width, an approximation that "
                "fails when the scale is smaller than a bin (it can exceed 1); use the difference of the "
                "logistic's CDF at the two edges of the bin.",
                fix="P(x) is the CDF's difference over the bin, not density(x) / 255: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: _log_bins(x, mu, (0.5 * ls).exp(), _HALF, True).sum(-1),
            Hint(
                kind="log_scale is the log of the scale s itself, not of a variance: do not halve it.",
                fix="s = exp(log_scale), not exp(log_scale / 2): " + _FORMULA + ".",
            ),
        ),
        (
            lambda: _log_bins(x, mu, (-ls).exp(), _HALF, True).sum(-1),
            Hint(
                kind="log_scale is the log of the scale s, not of its inverse: a larger log_scale is a wider logistic.",
                fix="s = exp(log_scale), not exp(-log_scale): " + _FORMULA + ".",
            ),
        ),
        (
            lambda: right.mean(-1),
            Hint(
                kind="you averaged over the pixels; the log-probability of independent pixels is their sum.",
                fix="sum over the pixels with .sum(dim=-1), not .mean(dim=-1).",
            ),
        ),
        (
            lambda: right.exp().sum(-1),
            Hint(
                kind="you summed the probabilities themselves; return the sum of their logarithms.",
                fix="return log P summed over the pixels, torch.log(P).sum(dim=-1) (computed stably).",
            ),
        ),
    ]


def _generic(got: torch.Tensor, expected: torch.Tensor) -> str | Hint:
    if not torch.isfinite(got).all():
        return Hint(
            kind="your log-probability is infinite or NaN far in the logistic's tail, where both CDF values "
            "round to the same number and their difference to 0; write the log of the difference with the "
            "log of the sigmoid and the log of one minus an exponential, which stay finite.",
            fix="far in a tail sigmoid(a) - sigmoid(b) rounds to 0 and its log is -inf. Use "
            "sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-(a - b))): "
            "F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-(a - b))).",
        )
    if (got > 1e-9).any():
        return "a log-probability of a discrete level is at most 0; some of yours are positive. " + _FORMULA + "."
    return "compare your formula term by term with " + _FORMULA + "."


def check_discretized_logistic(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(x, mean, log_scale) -> sum_i log P(x_i), the discretized logistic's log-probability of the
    8-bit levels x = k/255, shape (batch,).

    x, mean, log_scale: (batch, D); level k owns the bin [x - 1/510, x + 1/510], the first bin open to -inf
    and the last to +inf. Compared with vaelab's discretized logistic on 8 cases: interior and edge levels,
    random batches, a scale narrower than a bin, a wide one, a level far in the tail (which stays finite,
    also in float32), and the gradient with respect to mean and log_scale.
    """
    g = torch.Generator().manual_seed(1414)
    cases: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, bool]] = []

    def t(values: list[list[float]]) -> torch.Tensor:
        return torch.tensor(values, dtype=F64)

    cases.append(("x=[[128/255]], mean=[[0.5]], log_scale=[[-3]]", t([[128 / 255]]), t([[0.5]]), t([[-3.0]]), False))
    cases.append(
        (
            "the edge levels x=[[0, 1]], mean=[[0.1, 0.9]], log_scale=[[-2, -2]]",
            t([[0.0, 1.0]]),
            t([[0.1, 0.9]]),
            t([[-2.0, -2.0]]),
            False,
        )
    )
    for batch, dim in [(3, 5), (6, 20)]:
        k = torch.randint(0, 256, (batch, dim), generator=g)
        k[0, :2] = torch.tensor([0, 255])  # each random batch holds both edge levels
        cases.append(
            (
                f"random levels, mean ~ U(0, 1), log_scale ~ U(-5, 0), shape ({batch}, {dim})",
                k.to(F64) / 255,
                torch.rand(batch, dim, generator=g, dtype=F64),
                -5 * torch.rand(batch, dim, generator=g, dtype=F64),
                False,
            )
        )
    cases.append(
        (
            "a scale narrower than a bin: x=[[100/255, 101/255]], mean=[[100/255, 100/255]], log_scale=[[-7, -7]]",
            t([[100 / 255, 101 / 255]]),
            t([[100 / 255, 100 / 255]]),
            t([[-7.0, -7.0]]),
            False,
        )
    )
    cases.append(
        (
            "a wide scale: x=[[0, 0.2, 1]], mean=[[0.5, 0.5, 0.5]], log_scale=[[1, 1, 1]]",
            t([[0.0, 51 / 255, 1.0]]),
            t([[0.5, 0.5, 0.5]]),
            t([[1.0, 1.0, 1.0]]),
            False,
        )
    )
    cases.append(
        (
            "far in the tail (stays finite): x=[[200/255, 10/255]], mean=[[0.1, 0.9]], log_scale=[[-6, -6]]",
            t([[200 / 255, 10 / 255]]),
            t([[0.1, 0.9]]),
            t([[-6.0, -6.0]]),
            True,
        )
    )

    def one(r: Runner, case: str, x: torch.Tensor, mean: torch.Tensor, ls: torch.Tensor, rtol32: float | None) -> None:
        before = (x.clone(), mean.clone(), ls.clone())
        out = as_output(r.call(case, x, mean, ls), case, (x.shape[0],), "pixels (dim -1)", "batch", x.shape[1])
        unchanged(case, ("x", "mean", "log_scale"), before, (x, mean, ls))
        rtol = rtol32 or 1e-7
        compare(case, out, _reference(x, mean, ls), _variants(x, mean, ls), _generic, rtol=rtol, atol=rtol)

    def body(r: Runner) -> None:
        for desc, x0, m0, s0, finite in cases:
            for case, (x, mean, ls), rtol32 in dtype_runs(r.case(desc), (x0, m0, s0), finite):
                one(r, case, x, mean, ls, rtol32)
        case = r.case("gradient of the sum with respect to mean and log_scale, shape (2, 3)")
        x = t([[0.0, 60 / 255, 1.0], [128 / 255, 250 / 255, 3 / 255]])
        mean = t([[0.2, 0.3, 0.7], [0.5, 0.9, 0.1]]).requires_grad_()
        ls = t([[-2.0, -4.0, -1.0], [-3.0, -5.0, -2.5]]).requires_grad_()

        def expected(_: torch.Tensor) -> dict[str, torch.Tensor]:
            m, s = mean.detach().clone().requires_grad_(), ls.detach().clone().requires_grad_()
            gm, gs = torch.autograd.grad(_reference(x, m, s).sum(), (m, s))
            return {"mean": gm, "log_scale": gs}

        grad_check(
            r,
            case,
            {"mean": mean, "log_scale": ls},
            lambda: r.call(case, x, mean, ls),
            expected,
            "a log-probability",
            "the log-probability must be differentiable in mean and log_scale (the decoder learns from it): use "
            "torch operations only, no .item(), numpy, math.* or .detach().",
        )

    return run_check(
        "check_discretized_logistic",
        fn,
        body,
        len(cases) + 1,
        raise_on_failure,
        hint=hint,
        forbidden=REFUSED,
        allow=allow,
    )
