"""The check of the ELBO decomposition of Hoffman and Johnson (2016), "ELBO surgery": the average KL
term splits into the mutual information I_q(x; z) and KL(q(z) || p(z)) between the aggregate posterior
q(z) = (1/N) sum_n q(z|x_n) and the prior (chapter 12), and its catalogue of typical mistakes.

For N images with posteriors q(z|x_n) = N(mu_n, diag(exp(logvar_n))), one draw z_n ~ q(z|x_n) each and
p(z) = N(0, I):

    log q(z_n) = logsumexp_m log q(z_n|x_m) - log N,
    I_q(x; z) ~ (1/N) sum_n [log q(z_n|x_n) - log q(z_n)],   KL(q(z) || p(z)) ~ (1/N) sum_n [log q(z_n) - log p(z_n)],

unbiased for the empirical distribution of the N images; their sum is the Monte Carlo average KL
(1/N) sum_n [log q(z_n|x_n) - log p(z_n)].
"""

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
    compare,
    dtype_runs,
    fmt,
    run_check,
    unchanged,
)

__all__ = ["check_elbo_decomposition"]

# The ready-made functions this task refuses (allow=... permits them).
REFUSED: tuple[str, ...] = ("torch.distributions.MixtureSameFamily.log_prob",)
LOG_2PI = math.log(2 * math.pi)


def _pairs(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """L[n, m] = log q(z_n | x_m), (N, N), in float64."""
    d = z.double().unsqueeze(1) - mu.double().unsqueeze(0)
    lv = logvar.double().unsqueeze(0)
    return -0.5 * (d.pow(2) * torch.exp(-lv) + lv + LOG_2PI).sum(-1)


def _parts(z, mu, logvar):
    pairs = _pairs(z, mu, logvar)
    own = pairs.diagonal()
    log_prior = -0.5 * (z.double().pow(2) + LOG_2PI).sum(-1)
    return pairs, own, log_prior, len(z)


def _reference(z, mu, logvar) -> torch.Tensor:
    pairs, own, log_prior, n = _parts(z, mu, logvar)
    aggregate = torch.logsumexp(pairs, dim=1) - math.log(n)
    return torch.stack([(own - aggregate).mean(), (aggregate - log_prior).mean()])


def _from(own: torch.Tensor, aggregate: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    return torch.stack([(own - aggregate).mean(), (aggregate - log_prior).mean()])


def _variants(z, mu, logvar) -> list[tuple[Any, Any]]:
    pairs, own, log_prior, n = _parts(z, mu, logvar)
    aggregate = torch.logsumexp(pairs, dim=1) - math.log(n)
    ref = _reference(z, mu, logvar)
    std_pairs = _pairs(z, mu, 0.5 * logvar.double())  # the standard deviation used as the variance
    return [
        (
            lambda: _from(own, aggregate + math.log(n), log_prior),
            Hint(
                kind="the aggregate posterior is the average of the N posteriors, not their sum: its "
                "log-density is missing the term for 1/N.",
                fix="q(z) = (1/N) sum_m q(z|x_m) is an average: log q(z_n) = logsumexp_m log q(z_n|x_m) - log N.",
            ),
        ),
        (
            lambda: _from(own, pairs.mean(1), log_prior),
            Hint(
                kind="you averaged the log-densities of the posteriors (Jensen's inequality); the aggregate "
                "posterior's log-density is the log of the average of the densities.",
                fix="log q(z_n) is the log of an average of densities, torch.logsumexp(L, dim=1) - log N, not "
                "the average of the log-densities L.mean(dim=1).",
            ),
        ),
        (
            lambda: _from(own, own, log_prior),
            Hint(
                kind="you used each image's own posterior as the aggregate posterior, which mixes the posteriors "
                "of all N images (with the own posterior the mutual information is 0).",
                fix="q(z_n) = (1/N) sum_m q(z_n|x_m) over all images m, not q(z_n|x_n): logsumexp over m of "
                "log q(z_n|x_m), minus log N.",
            ),
        ),
        (
            lambda: ref.flip(0),
            Hint(
                kind="the two numbers are swapped: the mutual information first, the KL to the prior second.",
                fix="return (mutual_information, marginal_kl) in this order.",
            ),
        ),
        (
            lambda: -ref,
            Hint(
                kind="both terms have the wrong sign: the mutual information and a KL are never negative.",
                fix="I = mean[log q(z|x) - log q(z)] and KL = mean[log q(z) - log p(z)]: check the order of the "
                "subtractions.",
            ),
        ),
        (
            lambda: torch.stack([-ref[0], ref[1]]),
            "the mutual information has the wrong sign: it is the mean of log q(z_n|x_n) - log q(z_n).",
        ),
        (
            lambda: n * ref,
            Hint(
                kind="you summed over the N images; both terms are averages over them.",
                fix="both terms are averages over the N images: .mean(), not .sum().",
            ),
        ),
        (
            lambda: _from(own, log_prior, log_prior),
            Hint(
                kind="you used the prior in place of the aggregate posterior: that gives the rate (the average "
                "KL of each posterior), which is the sum of the two terms.",
                fix="the average of log q(z_n|x_n) - log p(z_n) is the rate, I + KL(q(z) || p(z)); the mutual "
                "information needs log q(z_n) = logsumexp_m log q(z_n|x_m) - log N.",
            ),
        ),
        (
            lambda: _from(own, torch.logsumexp(pairs, dim=0) - math.log(n), log_prior),
            Hint(
                kind="you reduced over the samples instead of over the posteriors: for each sample, mix the "
                "posteriors of all N images.",
                fix="with L[n, m] = log q(z_n|x_m), log q(z_n) = torch.logsumexp(L, dim=1) - log N (over m).",
            ),
        ),
        (
            lambda: _from(std_pairs.diagonal(), torch.logsumexp(std_pairs, dim=1) - math.log(n), log_prior),
            Hint(
                kind="you used the standard deviation where the variance belongs in the posteriors' log-densities.",
                fix="in log q(z|x_m) the variance is exp(logvar), not exp(logvar / 2).",
            ),
        ),
    ]


def _generic(got: torch.Tensor, expected: torch.Tensor) -> Any:
    if not torch.isfinite(got).all():
        return Hint(
            kind="the posteriors' densities overflow for narrow posteriors, or underflow to 0 for images far "
            "apart: stay in log space.",
            fix="exp(log q(z_n|x_m)) overflows for narrow posteriors and underflows to 0 for far-apart ones: "
            "log q(z_n) = "
            "torch.logsumexp(L, dim=1) - math.log(N), with L[n, m] = log q(z_n|x_m).",
        )
    return "compare with I = mean_n[log q(z_n|x_n) - log q(z_n)] and KL = mean_n[log q(z_n) - log p(z_n)]."


def _as_pair(out: Any, case: str) -> torch.Tensor:
    """(mutual_information, marginal_kl) as a (2,) tensor, or a Failure that says what came back."""
    if isinstance(out, (tuple, list)) and len(out) == 2:
        if all(isinstance(t, torch.Tensor) and t.numel() == 1 and t.is_floating_point() for t in out):
            return torch.stack([t.reshape(()) for t in out])
        shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in out]
        raise Failure(
            case,
            expected="two scalar tensors",
            got=f"items of shapes {shapes}",
            hint=Hint(
                kind="each of the two terms is one number for the whole data set, an average over the N images.",
                fix="average over the N images, e.g. (log_q_own - log_q_aggregate).mean(), one scalar per term.",
            ),
        )
    got = f"shape {tuple(out.shape)}: {fmt(out)}" if isinstance(out, torch.Tensor) else f"{type(out).__name__}"
    raise Failure(
        case,
        expected="a tuple (mutual_information, marginal_kl) of two scalar tensors",
        got=got,
        hint=Hint(
            kind="return the two terms, the mutual information and the KL to the prior, as a pair.",
            fix="return mutual_information, marginal_kl (two scalar tensors).",
        ),
    )


def check_elbo_decomposition(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(z, mu, logvar) -> (mutual_information, marginal_kl), two scalar tensors: Hoffman and
    Johnson's split of the average KL term of the ELBO for N images.

    z: (N, latent_dim), one draw z_n ~ q(z|x_n) per image; mu, logvar: (N, latent_dim), the posteriors
    q(z|x_n) = N(mu_n, diag(exp(logvar_n))); the prior is N(0, I). mutual_information =
    (1/N) sum_n [log q(z_n|x_n) - log q(z_n)] and marginal_kl = (1/N) sum_n [log q(z_n) - log p(z_n)], with
    the aggregate posterior q(z) = (1/N) sum_m q(z|x_m). 6 cases: two images by hand, random posteriors,
    one image (I = 0), identical posteriors (I = 0), and narrow posteriors far apart (densities
    of e^170 and e^-10^11: the result stays finite, also run in float32).
    """
    g = torch.Generator().manual_seed(20262)

    def rnd(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return shift + scale * torch.randn(*shape, generator=g, dtype=F64)

    def draw(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return mu + torch.exp(0.5 * logvar) * rnd(*mu.shape), mu, logvar

    same_mu = rnd(1, 3).expand(5, 3).clone()
    cases: list[tuple[str, tuple[torch.Tensor, ...]]] = [
        (
            "two images, one dimension: z=[[0.5], [-1]], mu=[[0], [-1]], logvar=[[0], [-1]]",
            (
                torch.tensor([[0.5], [-1.0]], dtype=F64),
                torch.tensor([[0.0], [-1.0]], dtype=F64),
                torch.tensor([[0.0], [-1.0]], dtype=F64),
            ),
        ),
        (
            "random: N=8 images, latent_dim=2, mu ~ N(0, 1), logvar ~ N(-1, 0.25)",
            draw(rnd(8, 2), rnd(8, 2, scale=0.5, shift=-1)),
        ),
        (
            "random: N=20, latent_dim=5, mu ~ N(0, 4), logvar ~ N(-2, 0.25)",
            draw(rnd(20, 5, scale=2), rnd(20, 5, scale=0.5, shift=-2)),
        ),
        ("one image: N=1, latent_dim=3 (the mutual information is 0)", draw(rnd(1, 3), rnd(1, 3, scale=0.3))),
        (
            "identical posteriors: N=5, the same mu and logvar=-1 (the mutual information is 0)",
            draw(same_mu, torch.full((5, 3), -1.0, dtype=F64)),
        ),
        (
            "very narrow, far-apart posteriors: N=6, latent_dim=20, mu ~ N(0, 30^2), logvar=-20",
            draw(rnd(6, 20, scale=30), torch.full((6, 20), -20.0, dtype=F64)),
        ),
    ]

    def body(r: Runner) -> None:
        for desc, tensors in cases:
            for case, args, rtol32 in dtype_runs(r.case(desc), tensors, desc.startswith("very")):
                before = [t.clone() for t in args]
                out = _as_pair(r.call(case, *args), case)
                unchanged(case, ("z", "mu", "logvar"), before, args)
                rtol = rtol32 or (1e-5 if args[0].dtype == torch.float32 else 1e-9)
                compare(case, out, _reference(*args), _variants(*args), _generic, rtol=rtol, atol=1e-6)

    return run_check(
        "check_elbo_decomposition",
        fn,
        body,
        len(cases),
        raise_on_failure,
        hint=hint,
        forbidden=REFUSED,
        allow=allow,
    )
