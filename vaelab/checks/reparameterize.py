"""The check of the reparameterization trick z = mu + exp(logvar / 2) * eps and its catalogue of
typical mistakes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from ._runner import (
    DEFAULT_HINT,
    F64,
    Z_SCORE,
    CheckResult,
    Failure,
    Hint,
    Runner,
    close,
    fmt,
    grad_check,
    run_check,
    unchanged,
)

__all__ = ["check_reparameterize"]

# The ready-made functions this task asks the student to write instead of calling (allow=... permits them).
REFUSED: tuple[str, ...] = (
    "vaelab.reparameterize",
    "torch.distributions.Normal.rsample",
    "torch.distributions.Independent.rsample",
    "torch.distributions.MultivariateNormal.rsample",
)


def _moment_bound(n: int) -> tuple[float, float]:
    """5 standard errors of the sample mean and of the sample variance of n standard normals."""
    return Z_SCORE / math.sqrt(n), Z_SCORE * math.sqrt(2.0 / (n - 1))


def check_reparameterize(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(mu, logvar) -> z ~ N(mu, diag(exp(logvar))), same shape as mu.

    mu, logvar: (batch, latent_dim). 8 cases: shapes; the mean and variance of 20,000 draws per
    dimension (within 5 standard errors of mu and exp(logvar)); independent noise across rows and
    dimensions; z = mu when the variance is tiny; fresh noise on every call; the gradient
    dz/dmu = 1 and dz/dlogvar = (z - mu) / 2 (the reparameterization trick); float32 input.
    """
    name = "check_reparameterize"

    def sample(r: Runner, case: str, mu: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
        before = (mu.clone(), lv.clone())
        out = r.call(case, mu, lv)
        if isinstance(out, tuple):
            raise Failure(
                case,
                expected=f"one tensor z of shape {tuple(mu.shape)}",
                got=f"a tuple of {len(out)} items",
                hint="return only z (not z together with eps, mu or std).",
            )
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise Failure(
                case,
                expected=f"a floating-point tensor of shape {tuple(mu.shape)}",
                got=f"{type(out).__name__} {out!r:.60}",
                hint="return z = mu + std * eps as a torch tensor.",
            )
        if tuple(out.shape) != tuple(mu.shape):
            hint = "z must have the shape of mu: draw eps with torch.randn_like(mu)."
            if out.dim() == mu.dim() + 1:
                hint = "z must have the shape of mu (one sample per row), without an extra sample dimension."
            raise Failure(case, expected=f"shape {tuple(mu.shape)}", got=f"shape {tuple(out.shape)}", hint=hint)
        unchanged(case, ("mu", "logvar"), before, (mu, lv))
        if not torch.isfinite(out).all():
            raise Failure(
                case,
                expected="finite samples",
                got=fmt(out),
                hint="z contains NaN or inf: compute std = torch.exp(0.5 * logvar) (logvar may be "
                "negative, so do not take its square root or log).",
            )
        return out

    def body(r: Runner) -> None:
        torch.manual_seed(1234)
        case = r.case("shapes: mu, logvar of shape (1, 1), (4, 3) and (2, 20)")
        for shape in [(1, 1), (4, 3), (2, 20)]:
            sample(r, case, torch.zeros(shape, dtype=F64), torch.zeros(shape, dtype=F64))

        n = 20_000
        mu_row = torch.tensor([0.0, 1.5, -2.0, 0.5], dtype=F64)
        lv_row = torch.tensor([0.0, 1.0, -1.5, 2.0], dtype=F64)
        desc = f"{n} rows of mu=[0, 1.5, -2, 0.5], logvar=[0, 1, -1.5, 2]: sample mean and variance"
        case = r.case(desc)
        mu, lv = mu_row.expand(n, 4).clone(), lv_row.expand(n, 4).clone()
        z = sample(r, case, mu, lv).detach().double()
        mean, var = z.mean(0), z.var(0)
        std = (0.5 * lv_row).exp()
        tol_mean, tol_var = _moment_bound(n)
        if var.max() < 1e-12:
            raise Failure(
                case,
                expected=f"variance exp(logvar) = {fmt(lv_row.exp())}",
                got=f"variance {fmt(var)}: every row is the same",
                hint="every row got the same noise (or none): draw one eps per entry, "
                "eps = torch.randn_like(mu), not torch.randn(latent_dim) or a fixed number.",
            )
        spread = torch.maximum(std, var.sqrt())
        if not ((mean - mu_row).abs() <= tol_mean * spread).all():
            hint = "the samples are not centred at mu: z = mu + std * eps with eps ~ N(0, I)."
            if ((mean - mu_row - 0.5 * std).abs() <= tol_mean * spread).all():
                hint = (
                    "the samples are centred at mu + std / 2: torch.rand draws uniform noise on [0, 1); "
                    "use standard normal noise, torch.randn_like(mu)."
                )
            elif (mean.abs() <= tol_mean * var.sqrt()).all():
                hint = "the samples are centred at 0, not at mu: did you forget to add mu?"
            raise Failure(
                case,
                expected=f"sample mean ~ mu = {fmt(mu_row)} (within {Z_SCORE:g} standard errors)",
                got=f"sample mean {fmt(mean)}",
                hint=hint,
            )
        if not ((var / lv_row.exp() - 1).abs() <= tol_var).all():
            variants = [
                (
                    (2 * lv_row).exp(),
                    Hint(
                        kind=("you multiplied the noise by the variance; multiply it by the standard deviation."),
                        fix="you multiplied eps by the variance exp(logvar); multiply by the standard "
                        "deviation std = exp(logvar / 2).",
                    ),
                ),
                (lv_row**2, "you multiplied eps by logvar itself; the standard deviation is exp(logvar / 2)."),
                ((-lv_row).exp(), "check the sign in the exponent: std = exp(+logvar / 2)."),
                (
                    torch.ones(4, dtype=F64),
                    "the spread of z does not depend on logvar: multiply eps by std = exp(logvar / 2).",
                ),
                (
                    (2 * lv_row).exp() / 4,
                    "the 1/2 belongs inside the exponent: std = exp(0.5 * logvar), not 0.5 * exp(logvar).",
                ),
                (
                    (0.5 * lv_row).exp(),
                    "you used exp(logvar / 4) as std (variance exp(logvar / 2)); std = exp(logvar / 2).",
                ),
            ]
            hint = "the variance of z should be exp(logvar): z = mu + exp(0.5 * logvar) * eps."
            for value, variant_hint in variants:
                if ((var - value).abs() <= tol_var * value + 1e-12).all():
                    hint = variant_hint
                    break
            raise Failure(
                case,
                expected=f"sample variance ~ exp(logvar) = {fmt(lv_row.exp())} (within {Z_SCORE:g} standard errors)",
                got=f"sample variance {fmt(var)}",
                hint=hint,
            )

        case = r.case(f"{n} rows: noise independent across latent dimensions")
        eps = (z - mu_row) / std
        corr = torch.corrcoef(eps.T)
        off = (corr - torch.eye(4, dtype=F64)).abs().max()
        if off > Z_SCORE / math.sqrt(n):
            raise Failure(
                case,
                expected=f"correlation between dimensions ~ 0 (|r| < {Z_SCORE / math.sqrt(n):.3f})",
                got=f"max |r| = {off.item():.3f}",
                hint="every latent dimension got the same noise: draw one eps per entry, "
                "eps = torch.randn_like(mu), not torch.randn(batch, 1).",
            )

        case = r.case("tiny variance: mu=[[1, -2, 3]], logvar=[[-40, -40, -40]] gives z = mu")
        mu = torch.tensor([[1.0, -2.0, 3.0]], dtype=F64)
        lv = torch.full((1, 3), -40.0, dtype=F64)
        z = sample(r, case, mu, lv)
        if not close(z, mu, 0.0, 1e-6):
            raise Failure(
                case,
                expected=fmt(mu),
                got=fmt(z),
                hint="with variance exp(-40) ~ 4e-18, z must equal mu: z = mu + exp(0.5 * logvar) * eps.",
            )

        case = r.case("two calls with the same mu=0, logvar=0 of shape (3, 2) give different z")
        mu, lv = torch.zeros(3, 2, dtype=F64), torch.zeros(3, 2, dtype=F64)
        z1, z2 = sample(r, case, mu, lv), sample(r, case, mu, lv)
        if torch.equal(z1, z2):
            raise Failure(
                case,
                expected="fresh noise on every call",
                got=f"the same z twice: {fmt(z1)}",
                hint=Hint(
                    kind=(
                        "do not seed the generator or reuse stored noise inside the function; "
                        "draw new noise on every call."
                    ),
                    fix="do not call torch.manual_seed or reuse a stored eps inside the function; "
                    "draw new noise with torch.randn_like(mu) on every call.",
                ),
            )

        case = r.case("gradient of sum(z): dz/dmu = 1 and dz/dlogvar = (z - mu) / 2, shape (4, 3)")
        mu = torch.tensor(
            [[0.0, 1.0, -1.0], [2.0, 0.5, 0.0], [-0.5, 0.0, 1.0], [0.3, -2.0, 0.7]], dtype=F64, requires_grad=True
        )
        lv = torch.tensor(
            [[0.0, 1.0, -1.0], [0.5, -0.5, 2.0], [1.5, 0.0, -2.0], [0.2, 0.4, -0.3]], dtype=F64, requires_grad=True
        )
        grad_check(
            r,
            case,
            {"mu": mu, "logvar": lv},
            lambda: sample(r, case, mu, lv),
            lambda z: {"mu": torch.ones_like(mu), "logvar": 0.5 * (z - mu.detach())},
            "z",
            {
                "mu": "no gradient reaches mu: did you sample with torch.randn, torch.normal(mu, std) or "
                "Normal(...).sample() without the reparameterization? Write z = mu + std * eps with "
                "eps = torch.randn_like(mu) and std = torch.exp(0.5 * logvar) (or use .rsample()).",
                "logvar": "no gradient with respect to logvar reaches it: compute std = torch.exp(0.5 * "
                "logvar) with torch operations, without .detach(), math.exp, float() or .item().",
            },
        )

        case = r.case("float32 mu, logvar of shape (5, 2) give float32 z")
        mu32, lv32 = torch.zeros(5, 2), torch.zeros(5, 2)
        z = sample(r, case, mu32, lv32)
        if z.dtype != torch.float32:
            raise Failure(
                case,
                expected="dtype torch.float32 (the dtype of mu)",
                got=f"dtype {z.dtype}",
                hint="create the noise with mu's dtype and device: eps = torch.randn_like(mu).",
            )

    return run_check(name, fn, body, 7, raise_on_failure, hint=hint, forbidden=REFUSED, allow=allow)
