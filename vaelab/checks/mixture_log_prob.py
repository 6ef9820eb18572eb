"""The check of a mixture of Gaussians' log-density, log sum_k pi_k N(z | m_k, diag(exp(logvar_k))) with
pi = softmax(logits), by log-sum-exp (chapter 12's learned prior), and its catalogue of typical mistakes."""

from __future__ import annotations

import math
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
    as_output,
    compare,
    dtype_runs,
    fmt,
    run_check,
    unchanged,
)

__all__ = ["check_mixture_log_prob"]

# The ready-made functions this task refuses (allow=... permits them).
REFUSED: tuple[str, ...] = (
    "torch.distributions.MixtureSameFamily.log_prob",
    "vaelab.MixtureOfGaussiansPrior.log_prob",
)
LOG_2PI = math.log(2 * math.pi)


def _components(z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor) -> torch.Tensor:
    """log N(z_b | m_k, diag(exp(logvar_k))), (batch, K), in float64."""
    d = z.double().unsqueeze(-2) - means.double()
    return -0.5 * (d.pow(2) * torch.exp(-logvars.double()) + logvars.double() + LOG_2PI).sum(-1)


def _reference(z, logits, means, logvars) -> torch.Tensor:
    return torch.logsumexp(torch.log_softmax(logits.double(), 0) + _components(z, means, logvars), dim=-1)


def _variants(z, logits, means, logvars) -> list[tuple[Any, Any]]:
    z, logits, means, lv = z.double(), logits.double(), means.double(), logvars.double()
    comp, log_pi = _components(z, means, lv), torch.log_softmax(logits, 0)
    k, d = means.shape
    diff2 = (z.unsqueeze(-2) - means).pow(2)
    return [
        (
            lambda: torch.logsumexp(logits + comp, -1),
            Hint(
                kind="the mixing weights do not sum to 1: the logits are not log-weights until they are normalized.",
                fix="the logits are not log-weights: normalize them, log pi = torch.log_softmax(logits, dim=0), "
                "then logsumexp(log pi + log N_k, dim=-1).",
            ),
        ),
        (
            lambda: torch.logsumexp(torch.softmax(logits, 0) + comp, -1),
            Hint(
                kind="you added the weights themselves to the log-densities; add their logarithms.",
                fix="you added pi_k to the log-densities; add log pi_k = torch.log_softmax(logits, dim=0).",
            ),
        ),
        (
            lambda: torch.logsumexp(comp, -1) - math.log(k),
            Hint(
                kind="you gave every component the same weight 1/K; the weights come from the logits.",
                fix="you used equal weights 1/K; the weights are pi = softmax(logits): add "
                "torch.log_softmax(logits, dim=0) to each component's log-density.",
            ),
        ),
        (
            lambda: torch.logsumexp(comp, -1),
            Hint(
                kind="the mixing weights are missing: each component's density is weighted by pi_k.",
                fix="the weights are missing: logsumexp(torch.log_softmax(logits, dim=0) + log N_k, dim=-1).",
            ),
        ),
        (
            lambda: (torch.softmax(logits, 0) * comp).sum(-1),
            Hint(
                kind="you averaged the log-densities with the weights (a lower bound, by Jensen's inequality); "
                "the log of a mixture is the log of the weighted sum of the densities.",
                fix="sum_k pi_k log N_k is a lower bound (Jensen); log p(z) = log sum_k pi_k N_k = "
                "torch.logsumexp(log_pi + log_N, dim=-1).",
            ),
        ),
        (
            lambda: (log_pi + comp).max(-1).values,
            Hint(
                kind="you kept only the largest component; the mixture sums all of them.",
                fix="max_k is only the largest term; sum all of them in log space: torch.logsumexp(..., dim=-1).",
            ),
        ),
        (
            lambda: torch.logsumexp(log_pi + comp + 0.5 * d * LOG_2PI, -1),
            Hint(
                kind="the normalizing constant of each Gaussian (its 2 pi term) is missing.",
                fix="the normalizing constant -1/2 log(2 pi) per dimension is missing from each component's "
                "log-density.",
            ),
        ),
        (
            lambda: torch.logsumexp(log_pi + comp - 0.5 * (diff2 * torch.exp(-lv)).sum(-1), -1),
            Hint(
                kind="the factor 1/2 of the squared distance is missing in each component's log-density.",
                fix="each component's log-density is -1/2 [(z - m)^2 / exp(logvar) + logvar + log 2 pi]: the 1/2 "
                "multiplies the squared distance too.",
            ),
        ),
        (
            lambda: torch.logsumexp(log_pi - 0.5 * (diff2 * torch.exp(-0.5 * lv) + 0.5 * lv + LOG_2PI).sum(-1), -1),
            Hint(
                kind="you used the standard deviation where the variance belongs.",
                fix="you divided by the standard deviation exp(logvar / 2); the variance is exp(logvar).",
            ),
        ),
        (
            lambda: torch.logsumexp(log_pi + comp / d, -1),
            Hint(
                kind="you averaged each component's log-density over the latent dimensions; independent "
                "dimensions add their log-densities.",
                fix="a diagonal Gaussian's log-density is the sum over dimensions: .sum(-1), not .mean(-1).",
            ),
        ),
        (
            lambda: torch.logsumexp(log_pi - 0.5 * (diff2 * torch.exp(lv) + lv + LOG_2PI).sum(-1), -1),
            Hint(
                kind="you multiplied the squared distance by the variance; divide by it.",
                fix="the squared distance is divided by the variance: (z - m)^2 * exp(-logvar).",
            ),
        ),
    ]


def _generic(got: torch.Tensor, expected: torch.Tensor) -> Any:
    if not torch.isfinite(got).all():
        return Hint(
            kind="the densities underflow to 0 far from the components (the log of 0 is -inf): stay in log space.",
            fix="exp(log N_k) underflows to 0 far from every component, and log(0) = -inf: stay in log space, "
            "torch.logsumexp(torch.log_softmax(logits, dim=0) + log_N, dim=-1).",
        )
    return "compare with log p(z) = logsumexp_k [log softmax(logits)_k + sum_j log N(z_j | m_kj, exp(logvar_kj))]."


def _unreduced(out: Any, case: str, shape: tuple[int, int]) -> Any:
    """``out``, unless it is one value per (example, component): a Failure that names the missing step."""
    if isinstance(out, torch.Tensor) and tuple(out.shape) == shape and shape[1] > 1:
        raise Failure(
            case,
            expected=f"shape {shape[:1]}",
            got=f"shape {shape}: {fmt(out)}",
            hint=Hint(
                kind="you did not reduce over the components: the mixture combines the K weighted densities "
                "into one value per example.",
                fix="you did not reduce over the components: torch.logsumexp(log_pi + log_N, dim=-1).",
            ),
        )
    return out


def check_mixture_log_prob(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(z, logits, means, logvars) -> log p(z) of a mixture of diagonal Gaussians, shape (batch,).

    z: (batch, latent_dim); logits: (K,), the mixing weights pi = softmax(logits); means, logvars:
    (K, latent_dim). log p(z) = log sum_k pi_k N(z | m_k, diag(exp(logvar_k))). 6 cases: one dimension by
    hand, random mixtures, a single component, a batch as long as K, and components hundreds of standard
    deviations apart (the result stays finite: also run in float32).
    """
    g = torch.Generator().manual_seed(20261)

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=g, dtype=F64)

    far_means = torch.tensor([[-300.0, 0.0], [300.0, 0.0], [0.0, 400.0]], dtype=F64)
    cases: list[tuple[str, tuple[torch.Tensor, ...]]] = [
        (
            "one dimension, two components: z=[[0], [2]], logits=[0, log 3], means=[[-1], [1]], logvars=[[0], [0]]",
            (
                torch.tensor([[0.0], [2.0]], dtype=F64),
                torch.tensor([0.0, math.log(3.0)], dtype=F64),
                torch.tensor([[-1.0], [1.0]], dtype=F64),
                torch.zeros(2, 1, dtype=F64),
            ),
        ),
        (
            "random: z (5, 3), K=4, logits ~ N(0, 1), means ~ N(0, 4), logvars ~ N(0, 0.25)",
            (rnd(5, 3, scale=2), rnd(4), rnd(4, 3, scale=2), rnd(4, 3, scale=0.5)),
        ),
        (
            "random: z (4, 10), K=6, logits ~ N(0, 4), means ~ N(0, 1), logvars ~ N(-1, 0.25)",
            (rnd(4, 10), rnd(6, scale=2), rnd(6, 10), rnd(6, 10, scale=0.5) - 1),
        ),
        (
            "one component: z (3, 2), logits=[0.7], means ~ N(0, 1), logvars ~ N(0, 1)",
            (rnd(3, 2), torch.tensor([0.7], dtype=F64), rnd(1, 2), rnd(1, 2)),
        ),
        (
            "as many codes as components: z (3, 2), K=3",
            (rnd(3, 2), rnd(3), rnd(3, 2), rnd(3, 2, scale=0.3)),
        ),
        (
            "very far-apart components: means=[[-300, 0], [300, 0], [0, 400]], z=[[0, 0], [-300, 1], [1000, -1000]], "
            "logits=[0, 1, 2], unit variances",
            (
                torch.tensor([[0.0, 0.0], [-300.0, 1.0], [1000.0, -1000.0]], dtype=F64),
                torch.tensor([0.0, 1.0, 2.0], dtype=F64),
                far_means,
                torch.zeros(3, 2, dtype=F64),
            ),
        ),
    ]

    def body(r: Runner) -> None:
        for desc, tensors in cases:
            for case, args, rtol32 in dtype_runs(r.case(desc), tensors, desc.startswith("very")):
                before = [t.clone() for t in args]
                z, k = args[0], args[2].shape[0]
                out = _unreduced(r.call(case, *args), case, (z.shape[0], k))
                out = as_output(out, case, (z.shape[0],), "components (dim -1)", "batch", k)
                unchanged(case, ("z", "logits", "means", "logvars"), before, args)
                rtol = rtol32 or (1e-5 if z.dtype == torch.float32 else 1e-9)
                compare(case, out, _reference(*args), _variants(*args), _generic, rtol=rtol, atol=1e-6)

    return run_check(
        "check_mixture_log_prob",
        fn,
        body,
        len(cases),
        raise_on_failure,
        hint=hint,
        forbidden=REFUSED,
        allow=allow,
    )
