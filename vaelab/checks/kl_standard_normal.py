"""The check of KL(N(mu, diag(exp(logvar))) || N(0, I)) and its catalogue of typical mistakes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..core.kl import kl_standard_normal
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

__all__ = ["check_kl_standard_normal"]

# The ready-made functions this task asks the student to write instead of calling (allow=... permits them).
REFUSED: tuple[str, ...] = (
    "vaelab.kl_standard_normal",
    "vaelab.kl_per_dimension",
    "torch.distributions.kl_divergence",
)


def _kl_variants(mu: torch.Tensor, lv: torch.Tensor, desc: str) -> list[tuple[Any, str]]:
    mu, lv = mu.detach().double(), lv.detach().double()
    return [
        (
            lambda: -kl_standard_normal(mu, lv),
            Hint(
                kind=(
                    "your KL is negative, but a KL is never negative: you return the "
                    "negative KL (Kingma and Welling's formula is the negative KL)."
                ),
                fix=f"your KL is negative for {desc} (a KL is never negative): you return -KL. Kingma and "
                "Welling's 1/2 sum(1 + logvar - mu^2 - exp(logvar)) is the *negative* KL; "
                "KL = 1/2 sum(mu^2 + exp(logvar) - logvar - 1).",
            ),
        ),
        (
            lambda: 0.5 * (mu**2 + lv.exp() + lv - 1).sum(-1),
            "check the sign of the log-variance term: KL = 1/2 sum(mu^2 + exp(logvar) - logvar - 1).",
        ),
        (
            lambda: (mu**2 + lv.exp() - lv - 1).sum(-1),
            "the factor 1/2 is missing: KL = 1/2 sum(mu^2 + exp(logvar) - logvar - 1).",
        ),
        (
            lambda: 0.5 * (mu**2 + lv.exp() - lv - 1).mean(-1),
            "you averaged over the latent dimensions; the KL of independent dimensions is their sum: use .sum(dim=-1).",
        ),
        (
            lambda: 0.5 * (mu**2 + (0.5 * lv).exp() - lv - 1).sum(-1),
            Hint(
                kind="you used the standard deviation where the variance belongs.",
                fix="you used the standard deviation exp(logvar / 2) where the variance exp(logvar) belongs.",
            ),
        ),
        (
            lambda: 0.5 * (mu**2 + (2 * lv).exp() - 2 * lv - 1).sum(-1),
            Hint(
                kind=("you treated logvar as the log of the standard deviation; it is the log of the variance."),
                fix="you treated logvar as log(sigma): it is log(sigma^2), so the variance is exp(logvar) "
                "and log(sigma^2) is logvar itself.",
            ),
        ),
        (
            lambda: 0.5 * (mu**2 + lv.exp() - lv).sum(-1),
            "the -1 is missing: for mu=0, logvar=0, q equals p and the KL must be 0.",
        ),
        (
            lambda: 0.5 * (lv.exp() - lv - 1).sum(-1),
            "the mu^2 term is missing: moving the mean away from 0 must cost KL.",
        ),
        (lambda: 0.5 * (mu + lv.exp() - lv - 1).sum(-1), "square the mean: the term is mu^2, not mu."),
        (
            lambda: 0.5 * ((-lv).exp() * (1 + mu**2) + lv - 1).sum(-1),
            Hint(
                kind=("you computed the KL in the reverse direction, of p from q; the ELBO needs the KL of q from p."),
                fix="you computed KL(p || q), the reverse direction; the ELBO needs KL(q || p) = "
                "1/2 sum(mu^2 + exp(logvar) - logvar - 1).",
            ),
        ),
    ]


def _kl_generic(mu: torch.Tensor, lv: torch.Tensor, desc: str) -> Callable[[torch.Tensor, torch.Tensor], str]:
    def generic(got: torch.Tensor, expected: torch.Tensor) -> str:
        if not torch.isfinite(got).all():
            return (
                "your KL is NaN or infinite where the exact value is finite: compute the variance "
                "as torch.exp(logvar) (not from a log of a possibly negative number)."
            )
        if (got < -1e-9).any():
            return (
                f"your KL is negative for {desc}, but a KL divergence is never negative: check the "
                "sign of the log-variance term and the overall sign."
            )
        return "compare your formula term by term with KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - logvar_j - 1)."

    return generic


def check_kl_standard_normal(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(mu, logvar) -> KL(N(mu, diag(exp(logvar))) || N(0, I)), shape (batch,).

    mu, logvar: (batch, latent_dim). Compared with ``vaelab.kl_standard_normal`` on 12 cases:
    single numbers (including the zero of the KL), batches of random inputs, extreme
    log-variances, float32 input, and the gradient with respect to mu and logvar.
    """
    g = torch.Generator().manual_seed(20240)
    cases: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    for m, v in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.0, -1.0), (-2.0, 0.5)]:
        cases.append((f"mu={m:g}, logvar={v:g}", torch.tensor([[m]], dtype=F64), torch.tensor([[v]], dtype=F64)))
    cases.append(
        (
            "mu=[[0, 0, 0], [1, -1, 2]], logvar=[[0, 0, 0], [0.5, -0.5, 1]]",
            torch.tensor([[0.0, 0, 0], [1, -1, 2]], dtype=F64),
            torch.tensor([[0.0, 0, 0], [0.5, -0.5, 1]], dtype=F64),
        )
    )
    for batch, dim in [(4, 3), (7, 20)]:
        cases.append(
            (
                f"random mu ~ N(0, 1), logvar ~ U(-2, 2), shape ({batch}, {dim})",
                torch.randn(batch, dim, generator=g, dtype=F64),
                4 * torch.rand(batch, dim, generator=g, dtype=F64) - 2,
            )
        )
    cases.append(
        (
            "extreme log-variances mu=[[0, 3, -1]], logvar=[[-30, 10, 1e-6]]",
            torch.tensor([[0.0, 3.0, -1.0]], dtype=F64),
            torch.tensor([[-30.0, 10.0, 1e-6]], dtype=F64),
        )
    )
    mu32 = torch.randn(5, 4, generator=g)
    lv32 = 2 * torch.rand(5, 4, generator=g) - 1
    cases.append(("float32 mu ~ N(0, 1), logvar ~ U(-1, 1), shape (5, 4)", mu32, lv32))

    def _kl_case(r: Runner, case: str, mu: torch.Tensor, lv: torch.Tensor, desc: str, rtol32: float | None) -> None:
        before = (mu.clone(), lv.clone())
        out = as_output(r.call(case, mu, lv), case, (mu.shape[0],), "latent dimensions (dim -1)", "batch", mu.shape[1])
        unchanged(case, ("mu", "logvar"), before, (mu, lv))
        expected = kl_standard_normal(mu.double(), lv.double())
        rtol = rtol32 or (1e-5 if mu.dtype == torch.float32 else 1e-7)
        compare(case, out, expected, _kl_variants(mu, lv, desc), _kl_generic(mu, lv, desc), rtol=rtol, atol=rtol)

    def body(r: Runner) -> None:
        for desc, mu0, lv0 in cases:
            for case, (mu, lv), rtol32 in dtype_runs(r.case(desc), (mu0, lv0), desc.startswith("extreme")):
                _kl_case(r, case, mu, lv, desc, rtol32)
        # Gradient: d KL / d mu = mu, d KL / d logvar = (exp(logvar) - 1) / 2.
        case = r.case("gradient of sum(KL) with respect to mu and logvar, shape (3, 2)")
        mu = torch.tensor([[0.5, -1.0], [2.0, 0.0], [0.0, 0.3]], dtype=F64, requires_grad=True)
        lv = torch.tensor([[0.0, 1.0], [-1.0, 0.5], [2.0, -0.2]], dtype=F64, requires_grad=True)
        grad_check(
            r,
            case,
            {"mu": mu, "logvar": lv},
            lambda: r.call(case, mu, lv),
            lambda _: {"mu": mu.detach(), "logvar": 0.5 * torch.expm1(lv.detach())},
            "a KL",
            "the KL must be differentiable in mu and logvar (the encoder learns from it): use "
            "torch operations only, no .item(), numpy, math.* or .detach().",
        )
        # Several latent sizes in one batch row each: a (1, 1) input must give shape (1,).
        case = r.case("batch of one: mu=[[0.7]], logvar=[[-0.4]] must give shape (1,)")
        mu, lv = torch.tensor([[0.7]], dtype=F64), torch.tensor([[-0.4]], dtype=F64)
        out = as_output(r.call(case, mu, lv), case, (1,), "latent dimensions (dim -1)", "batch", 1)
        compare(
            case,
            out,
            kl_standard_normal(mu, lv),
            _kl_variants(mu, lv, "mu=0.7, logvar=-0.4"),
            _kl_generic(mu, lv, "mu=0.7, logvar=-0.4"),
        )

    return run_check(
        "check_kl_standard_normal",
        fn,
        body,
        len(cases) + 2,
        raise_on_failure,
        hint=hint,
        forbidden=REFUSED,
        allow=allow,
    )
