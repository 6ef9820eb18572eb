"""The check of the free-bits KL term, sum_j max(lambda, mean over the minibatch of KL_j), and its
catalogue of typical mistakes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._runner import (
    DEFAULT_HINT,
    F64,
    CheckResult,
    Failure,
    Hint,
    Runner,
    compare,
    fmt,
    grad_check,
    run_check,
    unchanged,
)

__all__ = ["check_free_bits_kl"]

# The ready-made functions this task refuses (allow=... permits them): none in torch or vaelab.
REFUSED: tuple[str, ...] = ()


def _reference(kl: torch.Tensor, lam: float) -> torch.Tensor:
    return kl.double().mean(0).clamp(min=lam).sum()


def _variants(kl: torch.Tensor, lam: float) -> list[tuple[Any, str]]:
    kl = kl.double()
    batch, dim = kl.shape
    mean = kl.mean(0)
    return [
        (
            lambda: kl.clamp(min=lam).mean(0).sum(),
            "you applied the max to each image before averaging: free bits average the KL of each latent "
            "dimension over the minibatch first, then take max(lambda, mean KL_j) (Kingma et al. 2016), "
            "kl_per_dim.mean(dim=0).clamp(min=lambda).sum().",
        ),
        (
            lambda: mean.sum(),
            "lambda has no effect in your result: this is the plain KL summed over dimensions; clamp each "
            "dimension's average KL from below at lambda.",
        ),
        (
            lambda: mean.clamp(max=lam).sum(),
            Hint(
                kind="you took the minimum with lambda; free bits take the maximum.",
                fix="you took min(lambda, KL_j); free bits use max(lambda, KL_j): below lambda the KL costs a "
                "constant lambda, above it the ordinary KL.",
            ),
        ),
        (
            lambda: (mean - lam).clamp(min=0).sum(),
            Hint(
                kind=(
                    "you returned the excess of each dimension's KL over lambda, the "
                    "free-bits term minus a constant; return the term itself."
                ),
                fix=f"you returned sum_j max(0, KL_j - lambda), which is the free-bits term minus the constant "
                f"lambda * latent_dim = {lam * dim:g}: same gradient, but not the KL term the ELBO's KL is replaced "
                "by; return sum_j max(lambda, KL_j).",
            ),
        ),
        (
            lambda: (lam - mean).clamp(min=0).sum(),
            Hint(
                kind=("you returned only the amount the free-bits term adds to the KL, not the term itself."),
                fix="you returned sum_j max(0, lambda - KL_j), the amount the free-bits term adds to the KL, not the "
                "term itself: sum_j max(lambda, KL_j) = sum_j KL_j + sum_j max(0, lambda - KL_j).",
            ),
        ),
        (
            lambda: mean.sum().clamp(min=lam),
            "you applied lambda to the total KL (the rate); free bits apply it to each latent dimension: "
            "sum_j max(lambda, KL_j).",
        ),
        (
            lambda: mean.sum().clamp(min=lam * dim),
            "you compared the total KL with lambda * latent_dim; free bits apply max(lambda, KL_j) to each "
            "latent dimension separately, then sum over j.",
        ),
        (
            lambda: mean.clamp(min=lam).mean(),
            "you averaged over the latent dimensions; the KL of independent dimensions is their sum: "
            "kl_per_dim.mean(dim=0).clamp(min=lambda).sum().",
        ),
        (
            lambda: kl.sum(0).clamp(min=lam).sum(),
            Hint(
                kind=("you summed over the minibatch; free bits use the minibatch average of each dimension's KL."),
                fix=f"you summed over the minibatch (batch = {batch}); free bits use the minibatch *average* of each "
                "dimension's KL: kl_per_dim.mean(dim=0).",
            ),
        ),
        (
            lambda: kl.mean(1).clamp(min=lam).sum(),
            "you averaged over the latent dimension (dim 1) instead of over the minibatch (dim 0): "
            "kl_per_dim is (batch, latent_dim); average over dim 0, then max with lambda per dimension.",
        ),
        (
            lambda: kl.sum(1).clamp(min=lam).mean(),
            "you applied lambda to each image's total KL; free bits apply it per latent dimension, after "
            "averaging that dimension's KL over the minibatch.",
        ),
    ]


def _generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return "your result is NaN or infinite although every KL_j is finite: use torch.clamp or torch.maximum."
    return "compare with sum_j max(lambda, (1/batch) sum_i KL_ij) = kl_per_dim.mean(dim=0).clamp(min=lambda).sum()."


def _as_scalar(out: Any, case: str, kl: torch.Tensor) -> torch.Tensor:
    if isinstance(out, (float, int)) and not isinstance(out, bool):
        raise Failure(
            case,
            expected="a 0-dimensional torch.Tensor",
            got=f"{type(out).__name__} {out!r:.40}",
            hint="return a tensor (the loss is backpropagated): no .item(), float() or math.* on tensors.",
        )
    if not isinstance(out, torch.Tensor):
        raise Failure(
            case,
            expected="a 0-dimensional torch.Tensor",
            got=f"{type(out).__name__} {out!r:.60}",
            hint="return one tensor, the free-bits KL term of the whole minibatch.",
        )
    if out.dim() != 0:
        batch, dim = kl.shape
        if tuple(out.shape) == (dim,):
            hint = "you returned one value per latent dimension: sum them, .sum()."
        elif tuple(out.shape) == (batch,):
            hint = "you returned one value per image: free bits give one number per minibatch."
        else:
            hint = "return a single number (shape ()), summed over the latent dimensions."
        raise Failure(case, expected="shape () (one number)", got=f"shape {tuple(out.shape)}: {fmt(out)}", hint=hint)
    if not out.is_floating_point():
        raise Failure(
            case, expected="a floating-point tensor", got=f"dtype {out.dtype}", hint="compute in floating point."
        )
    return out


def check_free_bits_kl(
    fn: Callable[[torch.Tensor, float], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(kl_per_dim, free_bits) -> sum_j max(lambda, (1/B) sum_i KL_ij), a 0-dim tensor.

    kl_per_dim: (B, latent_dim), the KL of each latent dimension j for each image i of a minibatch;
    free_bits: lambda >= 0 in nats. This is the term that replaces the KL in the free-bits training
    loss (Kingma et al. 2016), so the loss is -(mean reconstruction - this). 11 cases: lambda below
    and above every dimension's KL, lambda between them, lambda = 0 (the plain KL), a batch of one, a
    square input that reveals the wrong reduction dimension, float32, and the gradient (1/B for a
    dimension above lambda, 0 below).
    """
    g = torch.Generator().manual_seed(20250)
    cases: list[tuple[str, torch.Tensor, float]] = [
        (
            "lambda=0.01 below every KL: kl_per_dim ~ U(1, 2) of shape (6, 3)",
            1 + torch.rand(6, 3, generator=g, dtype=F64),
            0.01,
        ),
        (
            "lambda=2 above every dimension's mean KL and their sum: kl_per_dim=[[2.0, 1.9], [0.1, 0.2], [0.3, 0.1]]",
            torch.tensor([[2.0, 1.9], [0.1, 0.2], [0.3, 0.1]], dtype=F64),
            2.0,
        ),
        (
            "lambda=0.5: kl_per_dim=[[0.1, 2.0], [0.05, 0.2], [0.15, 0.4]] (dimension 0 below lambda on average)",
            torch.tensor([[0.1, 2.0], [0.05, 0.2], [0.15, 0.4]], dtype=F64),
            0.5,
        ),
        (
            "lambda=0.5, one image above and one below: kl_per_dim=[[0.9, 0.0], [0.05, 3.0]]",
            torch.tensor([[0.9, 0.0], [0.05, 3.0]], dtype=F64),
            0.5,
        ),
        (
            "lambda=0 (the plain KL): kl_per_dim=[[0.1, 2.0], [0.3, 1.0]]",
            torch.tensor([[0.1, 2.0], [0.3, 1.0]], dtype=F64),
            0.0,
        ),
        ("batch of one: kl_per_dim=[[0.2, 0.7, 0.0]], lambda=0.25", torch.tensor([[0.2, 0.7, 0.0]], dtype=F64), 0.25),
        (
            "square input: kl_per_dim ~ Exp(1) of shape (4, 4), lambda=0.6",
            -torch.rand(4, 4, generator=g, dtype=F64).log(),
            0.6,
        ),
        (
            "random kl_per_dim ~ Exp(0.5) of shape (32, 20), lambda=0.5",
            -0.5 * torch.rand(32, 20, generator=g, dtype=F64).log(),
            0.5,
        ),
        ("float32 kl_per_dim ~ U(0, 2) of shape (8, 6), lambda=1", 2 * torch.rand(8, 6, generator=g), 1.0),
    ]

    def body(r: Runner) -> None:
        for desc, kl, lam in cases:
            case = r.case(desc)
            before = kl.clone()
            out = _as_scalar(r.call(case, kl, lam), case, kl)
            unchanged(case, ("kl_per_dim",), (before,), (kl,))
            rtol = 1e-5 if kl.dtype == torch.float32 else 1e-9
            compare(case, out, _reference(kl, lam), _variants(kl, lam), _generic, rtol=rtol, atol=1e-7)
        case = r.case("gradient: d/d KL_ij = 1/batch where the mean KL_j > lambda, else 0; shape (2, 3), lambda=0.5")
        kl = torch.tensor([[0.1, 2.0, 0.4], [0.3, 1.0, 0.8]], dtype=F64, requires_grad=True)
        above = (kl.detach().mean(0) > 0.5).double()
        grad_check(
            r,
            case,
            {"kl_per_dim": kl},
            lambda: r.call(case, kl, 0.5),
            lambda _: {"kl_per_dim": above.expand(2, 3) / 2},
            "a loss term",
            "the free-bits term must pass gradients to the KL of the dimensions above lambda: use torch "
            "operations (torch.clamp, torch.maximum), no .item(), numpy or .detach().",
        )
        case = r.case("lambda=0.5 is a Python float and kl_per_dim=[[1.5]] must give tensor(1.5)")
        kl = torch.tensor([[1.5]], dtype=F64)
        out = _as_scalar(r.call(case, kl, 0.5), case, kl)
        compare(case, out, _reference(kl, 0.5), _variants(kl, 0.5), _generic, rtol=1e-9, atol=1e-9)

    return run_check(
        "check_free_bits_kl", fn, body, len(cases) + 2, raise_on_failure, hint=hint, forbidden=REFUSED, allow=allow
    )
