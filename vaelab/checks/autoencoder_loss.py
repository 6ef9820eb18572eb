"""The check of the autoencoder's reconstruction loss (the book's chapter 2, eq. ch2-bce) and its catalogue
of typical mistakes.

The loss of one image x (grey pixels in [0, 1]) and its reconstruction x_hat = sigmoid(logits) is the binary
cross-entropy summed over the D pixels,

    l(x, x_hat) = -sum_i [x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)] = sum_i [softplus(l_i) - x_i l_i],

computed from the decoder's logits l so that it stays finite when sigmoid(l) rounds to 0 or 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

from ._runner import DEFAULT_HINT, F64, CheckResult, Hint, Runner, as_output, compare, dtype_runs, grad_check, run_check

__all__ = ["check_autoencoder_loss"]

# The ready-made functions this task asks the student to write instead of calling (allow=... permits them).
REFUSED: tuple[str, ...] = (
    "vaelab.models.autoencoder.reconstruction_loss",
    "F.binary_cross_entropy_with_logits",
    "torch.binary_cross_entropy_with_logits",
    "F.binary_cross_entropy",
)


def _reference(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum_i BCE(x_i, sigmoid(l_i)) per image, from the logits: (batch, D) -> (batch,), in float64."""
    return F.binary_cross_entropy_with_logits(logits.double(), x.double(), reduction="none").sum(-1)


def _variants(x: torch.Tensor, logits: torch.Tensor) -> list[tuple[Any, str]]:
    x, logits = x.double(), logits.double()
    ref = _reference(x, logits)
    ls, lns = F.logsigmoid(logits), F.logsigmoid(-logits)
    return [
        (
            lambda: ref / x.shape[-1],
            Hint(
                kind="you averaged over the pixels; the loss of an image is the sum over its pixels.",
                fix="you averaged over the pixels (reduction='mean'); the loss of an image is the SUM over its "
                "pixels: F.binary_cross_entropy_with_logits(logits, x, reduction='none').sum(-1). The mean "
                "divides the loss by D = 784 and, in a VAE, weights the KL term 784 times too much.",
            ),
        ),
        (
            lambda: -ref,
            "your loss is negative: you return the Bernoulli log-likelihood sum_i [x_i log x_hat_i + "
            "(1 - x_i) log(1 - x_hat_i)]; the loss is its negative.",
        ),
        (
            lambda: -(x * lns + (1 - x) * ls).sum(-1),
            "x and 1 - x are swapped: x_i goes with log x_hat_i = log sigmoid(l_i), and 1 - x_i with "
            "log(1 - x_hat_i) = log sigmoid(-l_i).",
        ),
        (
            lambda: -(x * ls).sum(-1),
            Hint(
                kind=(
                    "the term of the dark pixels (those that are 0) is missing: without it, dark pixels cost nothing."
                ),
                fix="the (1 - x_i) log(1 - x_hat_i) term is missing: without it, dark pixels cost nothing and "
                "the decoder learns to paint every pixel white.",
            ),
        ),
        (
            lambda: F.binary_cross_entropy_with_logits(x, logits, reduction="none").sum(-1),
            Hint(
                kind="the logits and the pixel values are swapped.",
                fix="the arguments of F.binary_cross_entropy_with_logits are swapped: it takes "
                "(input=logits, target=x).",
            ),
        ),
        (
            lambda: (x - logits.sigmoid()).pow(2).sum(-1),
            "that is the squared error of the reconstruction; the loss of (ch2-bce) is the binary "
            "cross-entropy -sum_i [x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)].",
        ),
        (
            lambda: F.binary_cross_entropy(logits.clamp(1e-12, 1 - 1e-12), x, reduction="none").sum(-1),
            "you used the logits as probabilities: the reconstruction is x_hat = sigmoid(logits); better, "
            "give the logits to F.binary_cross_entropy_with_logits.",
        ),
    ]


def _generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return (
            "your loss is inf or NaN: sigmoid(logits) rounds to exactly 0 or 1 for large |logits|, and "
            "log(0) = -inf. Compute it from the logits: F.binary_cross_entropy_with_logits(logits, x, "
            "reduction='none').sum(-1), or (softplus(logits) - x * logits).sum(-1)."
        )
    if (got < -1e-9).any():
        return "a cross-entropy of pixels in [0, 1] is never negative; yours is: check the sign."
    return Hint(
        kind=("for large |logits|, the log of a probability loses precision or is clamped; compute from the logits."),
        fix="for large |logits| sigmoid then log loses precision (or is clamped at -100 by "
        "F.binary_cross_entropy); compute from the logits. Otherwise compare with "
        "sum_i [softplus(l_i) - x_i l_i] = -sum_i [x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)].",
    )


def check_autoencoder_loss(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(x, logits) -> the binary cross-entropy of x and x_hat = sigmoid(logits), summed over
    pixels, shape (batch,).

    x: (batch, D) grey pixels in [0, 1] (binary ones included); logits: (batch, D), the decoder's output
    before the sigmoid. 10 cases: single pixels (x = 0.5 at logit 0 gives log 2), grey and binary
    batches, float32, a batch of one, logits of +-150 (sigmoid rounds to 0 or 1, so only a formula in the
    logits stays finite), and the gradient with respect to the logits, sigmoid(l) - x.
    """
    g = torch.Generator().manual_seed(20250)
    cases: list[tuple[str, torch.Tensor, torch.Tensor]] = [
        ("x=[[0.5]], logits=[[0]]: log 2", torch.full((1, 1), 0.5, dtype=F64), torch.zeros(1, 1, dtype=F64)),
        ("x=[[1]], logits=[[2]]", torch.ones(1, 1, dtype=F64), torch.full((1, 1), 2.0, dtype=F64)),
        ("x=[[0.3]], logits=[[-1]] (a grey pixel)", torch.full((1, 1), 0.3, dtype=F64), -torch.ones(1, 1, dtype=F64)),
        (
            "x=[[0, 0.25, 1]], logits=[[-2, 0.5, 3]]",
            torch.tensor([[0.0, 0.25, 1.0]], dtype=F64),
            torch.tensor([[-2.0, 0.5, 3.0]], dtype=F64),
        ),
        (
            "random grey x ~ U(0, 1), logits ~ N(0, 4) of shape (4, 784)",
            torch.rand(4, 784, generator=g, dtype=F64),
            2 * torch.randn(4, 784, generator=g, dtype=F64),
        ),
        (
            "random binary x, logits ~ N(0, 1) of shape (6, 5)",
            (torch.rand(6, 5, generator=g, dtype=F64) < 0.3).to(F64),
            torch.randn(6, 5, generator=g, dtype=F64),
        ),
        (
            "float32 grey x ~ U(0, 1), logits ~ N(0, 4) of shape (3, 784)",
            torch.rand(3, 784, generator=g),
            2 * torch.randn(3, 784, generator=g),
        ),
        (
            "batch of one: x=[[0.2, 0.9]], logits=[[0.3, 0.3]] must give shape (1,)",
            torch.tensor([[0.2, 0.9]], dtype=F64),
            torch.tensor([[0.3, 0.3]], dtype=F64),
        ),
        (
            "large logits: x=[[1, 0, 0.3, 0.3]], logits=[[150, -150, 150, -150]] (sigmoid is 0 or 1)",
            torch.tensor([[1.0, 0.0, 0.3, 0.3]], dtype=F64),
            torch.tensor([[150.0, -150.0, 150.0, -150.0]], dtype=F64),
        ),
    ]

    def body(r: Runner) -> None:
        for desc, x0, logits0 in cases:
            for case, (x, logits), rtol32 in dtype_runs(r.case(desc), (x0, logits0), "large logits" in desc):
                out = as_output(r.call(case, x, logits), case, (x.shape[0],), "pixels (dim -1)", "batch", x.shape[1])
                rtol = rtol32 or (1e-5 if x.dtype == torch.float32 else 1e-7)
                compare(case, out, _reference(x, logits), _variants(x, logits), _generic, rtol=rtol, atol=rtol)
        case = r.case("gradient with respect to logits: sigmoid(logits) - x, shape (2, 3)")
        x = torch.tensor([[1.0, 0.0, 0.4], [0.0, 0.7, 1.0]], dtype=F64)
        logits = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.0, -0.5]], dtype=F64, requires_grad=True)
        grad_check(
            r,
            case,
            {"logits": logits},
            lambda: r.call(case, x, logits),
            lambda _: {"logits": logits.detach().sigmoid() - x},
            "a loss",
            "the loss must be differentiable in the logits (the decoder learns from it): use torch "
            "operations only, no .item(), numpy or .detach().",
        )

    return run_check(
        "check_autoencoder_loss", fn, body, len(cases) + 1, raise_on_failure, hint=hint, forbidden=REFUSED, allow=allow
    )
