"""The check of the Bernoulli log-likelihood sum_i log Bernoulli(x_i | sigmoid(logits_i)) and its
catalogue of typical mistakes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..models.likelihoods import bernoulli_log_prob
from ._runner import DEFAULT_HINT, F64, CheckResult, Hint, Runner, as_output, compare, dtype_runs, grad_check, run_check

__all__ = ["check_bernoulli_log_likelihood"]

# The ready-made functions this task asks the student to write instead of calling (allow=... permits them).
REFUSED: tuple[str, ...] = (
    "vaelab.bernoulli_log_prob",
    "F.binary_cross_entropy_with_logits",
    "torch.binary_cross_entropy_with_logits",
    "F.binary_cross_entropy",
    "torch.distributions.Bernoulli.log_prob",
    "torch.distributions.Independent.log_prob",
)


def _bern_variants(x: torch.Tensor, logits: torch.Tensor) -> list[tuple[Any, str]]:
    x, logits = x.double(), logits.double()
    ls, lns = torch.nn.functional.logsigmoid(logits), torch.nn.functional.logsigmoid(-logits)
    ref = bernoulli_log_prob(x, logits)
    return [
        (
            lambda: -ref,
            Hint(
                kind=("you return the binary cross-entropy, a loss; the log-likelihood is its negative."),
                fix="you return the binary cross-entropy (a loss, >= 0); the log-likelihood is its negative.",
            ),
        ),
        (
            lambda: ref / x.shape[-1],
            "you averaged over the pixels; the log-likelihood of an image is the sum over its pixels: "
            "use .sum(dim=-1) (F.binary_cross_entropy_with_logits(..., reduction='none').sum(-1)).",
        ),
        (
            lambda: (x * lns + (1 - x) * ls).sum(-1),
            "x and 1 - x are swapped: the pixel is 1 with probability sigmoid(logits), so "
            "log p = x log sigmoid(logits) + (1 - x) log(1 - sigmoid(logits)).",
        ),
        (
            lambda: (x * ls).sum(-1),
            Hint(
                kind="the term of the pixels that are 0 is missing.",
                fix="the (1 - x) log(1 - sigmoid(logits)) term is missing: pixels that are 0 have probability "
                "1 - sigmoid(logits).",
            ),
        ),
        (
            lambda: (x * logits.log() + (1 - x) * (1 - logits).log()).sum(-1),
            "logits are not probabilities: the probability is sigmoid(logits).",
        ),
        (
            lambda: -torch.nn.functional.binary_cross_entropy_with_logits(x, logits, reduction="none").sum(-1),
            Hint(
                kind="the logits and the pixel values are swapped.",
                fix="the arguments of F.binary_cross_entropy_with_logits are swapped: it takes "
                "(input=logits, target=x).",
            ),
        ),
        (
            lambda: (x * logits.sigmoid().log() + (1 - x) * (-logits).log()).sum(-1),
            "log(1 - sigmoid(logits)) = log sigmoid(-logits), not log(-logits).",
        ),
    ]


def _bern_generic_for(logits: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], str]:
    moderate = bool(logits.abs().max() < 20)

    def generic(got: torch.Tensor, expected: torch.Tensor) -> str:
        if not torch.isfinite(got).all() and moderate:
            return (
                "NaN or -inf for moderate logits: logits are not probabilities (they can be 0 or "
                "negative); the probability is sigmoid(logits), or better, compute from the logits with "
                "F.logsigmoid or F.binary_cross_entropy_with_logits."
            )
        return _bern_generic(got, expected)

    return generic


def _bern_generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return (
            "your log-likelihood is -inf or NaN for large |logits|: sigmoid(logits) rounds to exactly "
            "0 or 1, and log(0) = -inf. Compute it stably from the logits: "
            "-F.binary_cross_entropy_with_logits(logits, x, reduction='none').sum(-1), or "
            "x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)."
        )
    if (got > 1e-9).any():
        return "a log-probability of binary pixels is <= 0; yours is positive: check the sign."
    return (
        "for large |logits| sigmoid then log loses precision (or is clamped); compute from the logits "
        "with F.logsigmoid or F.binary_cross_entropy_with_logits. Otherwise compare with "
        "sum_i [x_i log sigmoid(l_i) + (1 - x_i) log(1 - sigmoid(l_i))]."
    )


def check_bernoulli_log_likelihood(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(x, logits) -> sum_i log Bernoulli(x_i | sigmoid(logits_i)), shape (batch,).

    x: (batch, D) binary; logits: (batch, D). Compared with ``vaelab.bernoulli_log_prob`` on 11
    cases; the last ones use logits of +-100 and +-150, where sigmoid rounds to 0 or 1 and only a stable
    formula (logsigmoid, binary_cross_entropy_with_logits) gives the right, finite answer.
    """
    g = torch.Generator().manual_seed(20242)

    def binary(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=g, dtype=F64) < 0.3).to(F64)

    cases: list[tuple[str, torch.Tensor, torch.Tensor]] = [
        ("x=[[1]], logits=[[0]]", torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64)),
        ("x=[[1]], logits=[[2]]", torch.ones(1, 1, dtype=F64), torch.full((1, 1), 2.0, dtype=F64)),
        ("x=[[0]], logits=[[2]]", torch.zeros(1, 1, dtype=F64), torch.full((1, 1), 2.0, dtype=F64)),
        (
            "x=[[0, 1, 1]], logits=[[-1, 0.5, -3]]",
            torch.tensor([[0.0, 1, 1]], dtype=F64),
            torch.tensor([[-1.0, 0.5, -3.0]], dtype=F64),
        ),
        (
            "random binary x, logits ~ N(0, 4) of shape (4, 784)",
            binary(4, 784),
            2 * torch.randn(4, 784, generator=g, dtype=F64),
        ),
        ("random binary x, logits ~ N(0, 1) of shape (6, 5)", binary(6, 5), torch.randn(6, 5, generator=g, dtype=F64)),
        (
            "float32 random binary x, logits ~ N(0, 4) of shape (3, 784)",
            binary(3, 784).float(),
            2 * torch.randn(3, 784, generator=g),
        ),
        (
            "batch of one: x=[[1, 0]], logits=[[0.3, 0.3]] must give shape (1,)",
            torch.tensor([[1.0, 0.0]], dtype=F64),
            torch.tensor([[0.3, 0.3]], dtype=F64),
        ),
        (
            "large logits: x=[[1, 0, 1, 0]], logits=[[100, -100, 30, -30]] (confident and right)",
            torch.tensor([[1.0, 0, 1, 0]], dtype=F64),
            torch.tensor([[100.0, -100, 30, -30]], dtype=F64),
        ),
        (
            "large logits: x=[[0, 1]], logits=[[150, -150]] (confident and wrong, log p = -300)",
            torch.tensor([[0.0, 1.0]], dtype=F64),
            torch.tensor([[150.0, -150.0]], dtype=F64),
        ),
    ]

    def body(r: Runner) -> None:
        for desc, x0, logits0 in cases:
            for case, (x, logits), rtol32 in dtype_runs(r.case(desc), (x0, logits0), "large logits" in desc):
                out = as_output(r.call(case, x, logits), case, (x.shape[0],), "pixels (dim -1)", "batch", x.shape[1])
                expected = bernoulli_log_prob(x.double(), logits.double())
                rtol = rtol32 or (1e-5 if x.dtype == torch.float32 else 1e-7)
                compare(case, out, expected, _bern_variants(x, logits), _bern_generic_for(logits), rtol=rtol, atol=rtol)
        case = r.case("gradient with respect to logits: x - sigmoid(logits), shape (2, 3)")
        x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=F64)
        logits = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.0, -0.5]], dtype=F64, requires_grad=True)
        grad_check(
            r,
            case,
            {"logits": logits},
            lambda: r.call(case, x, logits),
            lambda _: {"logits": x - logits.detach().sigmoid()},
            "a log-likelihood",
            "the log-likelihood must be differentiable in the logits (the decoder learns from it): "
            "use torch operations only, no .item(), numpy or .detach().",
        )

    return run_check(
        "check_bernoulli_log_likelihood",
        fn,
        body,
        len(cases) + 1,
        raise_on_failure,
        hint=hint,
        forbidden=REFUSED,
        allow=allow,
    )
