"""The check of a one-sample reparameterized ELBO estimate (statistical, and for gradient flow to the
encoder) and its catalogue of typical mistakes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..core.kl import kl_standard_normal
from ..core.model import VAE
from ..models.config import build_vae
from ..models.linear_gaussian import LinearGaussianModel
from ._runner import DEFAULT_HINT, F64, Z_SCORE, CheckResult, Failure, Hint, Runner, as_output, fmt, run_check

__all__ = ["check_elbo"]

# The ready-made functions this task asks the student to write instead of calling (allow=... permits them).
REFUSED: tuple[str, ...] = (
    "vaelab.elbo",
    "vaelab.kl_standard_normal",
    "vaelab.reparameterize",
    "torch.distributions.kl_divergence",
    "torch.distributions.Normal.rsample",
)


_ELBO_COPIES = 2000  # one-sample estimates per example: the statistical check averages them
_ELBO_REF_SAMPLES = 20_000


def _elbo_models() -> list[tuple[str, VAE, torch.Tensor]]:
    """Two small float64 VAEs with fixed weights and their data (4 distinct examples each).

    A Bernoulli MLP VAE (16 pixels, 2 latents, decoder weights scaled up so that decoding z = mu
    differs clearly from averaging over z ~ q) and a linear-Gaussian VAE (6 dimensions) with a
    deliberately imperfect encoder.
    """
    torch.manual_seed(7)
    bern = build_vae(latent_dim=2, hidden_dim=16, side=4, likelihood="bernoulli").double()
    with torch.no_grad():
        for p in bern.decoder.parameters():
            p.mul_(2.0)
        bern.encoder.head.bias[:2].copy_(torch.tensor([1.5, -1.0]))  # a KL of about 1.8 nats
        bern.encoder.head.bias[2:].fill_(-0.5)
    g = torch.Generator().manual_seed(8)
    x_bern = (torch.rand(4, 16, generator=g, dtype=F64) < 0.5).to(F64)
    lin = LinearGaussianModel.random(data_dim=6, latent_dim=2, sigma2=0.5, seed=3)
    encoder = lin.exact_encoder()
    with torch.no_grad():
        encoder.linear.weight.mul_(0.8)
        encoder.logvar.add_(0.7)
    gauss = lin.vae(encoder)
    x_gauss = lin.sample(4, generator=g)
    return [
        ("a Bernoulli MLP VAE (16 pixels, 2 latents)", bern, x_bern),
        ("a linear-Gaussian VAE (6 dimensions, Gaussian likelihood)", gauss, x_gauss),
    ]


def _elbo_reference(model: VAE, x: torch.Tensor, samples: int = _ELBO_REF_SAMPLES) -> dict[str, torch.Tensor]:
    """Monte Carlo reference for E_q[one-sample ELBO] and E_q[its gradient in mu and logvar].

    Returns per example (batch,): 'mean', 'std' of the one-sample estimate, the variant values
    'recon' (E_q log p(x|z)), 'kl', 'plugin' (log p(x | z = mu)), and per (batch, latent):
    'gmu', 'gmu_std', 'glv', 'glv_std' (mean and std of d estimate / d mu, d logvar).
    """
    with torch.enable_grad():
        mu, lv = model.encode(x)
        mu, lv = mu.detach().requires_grad_(), lv.detach().requires_grad_()
        eps = torch.randn(samples, *mu.shape, dtype=mu.dtype)
        z = mu + (0.5 * lv).exp() * eps
        recon = model.likelihood.log_prob(x, model.decode(z))  # (S, batch)
        kl = kl_standard_normal(mu, lv)
        est = recon - kl
        gmu, glv = torch.autograd.grad(est.sum(), (mu, lv))  # sums over S
        # Per-sample gradients are needed for standard errors: d recon_s/dz_s via a second pass.
        zs = z.detach().requires_grad_()
        recon_s = model.likelihood.log_prob(x, model.decode(zs))
        (dz,) = torch.autograd.grad(recon_s.sum(), zs)  # (S, batch, latent)
    std = (0.5 * lv).exp().detach()
    per_gmu = dz - mu.detach()
    per_glv = dz * 0.5 * std * eps - 0.5 * torch.expm1(lv.detach())
    with torch.no_grad():
        plugin = model.likelihood.log_prob(x, model.decode(mu)) - kl
    return {
        "mean": est.mean(0).detach(),
        "std": est.std(0).detach(),
        "recon": recon.mean(0).detach(),
        "kl": kl.detach(),
        "plugin": plugin.detach(),
        "gmu": gmu / samples,
        "gmu_std": per_gmu.std(0),
        "glv": glv / samples,
        "glv_std": per_glv.std(0),
    }


class _EncoderTap:
    """Forward hook that keeps the encoder's outputs (mu, logvar) and their gradients."""

    def __init__(self, model: VAE) -> None:
        self.outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.handle = model.encoder.register_forward_hook(self._hook)

    def _hook(self, module: Any, inputs: Any, output: Any) -> None:
        mu, lv = output
        if mu.requires_grad:
            mu.retain_grad()
            lv.retain_grad()
        self.outputs.append((mu, lv))

    def grads(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gmu = glv = None
        for mu, lv in self.outputs:
            if mu.grad is not None:
                gmu = mu.grad if gmu is None else gmu + mu.grad
            if lv.grad is not None:
                glv = lv.grad if glv is None else glv + lv.grad
        return gmu, glv


def check_elbo(
    fn: Callable[[VAE, torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(model, x) -> a one-sample reparameterized ELBO estimate, shape (batch,):
    log p(x | z) - KL(q(z|x) || p(z)) with z = mu + exp(logvar / 2) * eps ~ q(z|x) and the
    closed-form KL, where the likelihood is ``model.likelihood.log_prob(x, model.decode(z))``.

    x: (batch, D). 8 cases on two small fixed VAEs (a Bernoulli MLP and a linear-Gaussian one):
    the output shape; the average of 2000 one-sample estimates per example against a 20,000-sample
    reference (within 5 standard errors); fresh noise per example; and the gradients reaching the
    encoder's mu and logvar (on average equal to the reference's, within 5 standard errors).
    """
    name = "check_elbo"

    def body(r: Runner) -> None:
        torch.manual_seed(99)
        models = _elbo_models()
        for label, model, x in models:
            model.requires_grad_(True)
            batch = x.shape[0]

            d = x.shape[1]
            case = r.case(f"{label}: x of shape (1, {d}) and ({batch}, {d}) give shapes (1,), ({batch},)")
            for rows in (1, batch):
                out = r.call(case, model, x[:rows])
                as_output(out, case, (rows,), "pixels (dim -1)", "batch", x.shape[1])

            desc = (
                f"{label}: mean of {_ELBO_COPIES} one-sample estimates for each of {batch} examples "
                f"(each example repeated {_ELBO_COPIES} times in one batch)"
            )
            case = r.case(desc)
            ref = _elbo_reference(model, x)
            x_rep = x.repeat(_ELBO_COPIES, 1)
            tap = _EncoderTap(model)
            try:
                out = as_output(r.call(case, model, x_rep), case, (len(x_rep),), "pixels (dim -1)", "batch", x.shape[1])
                values = out.detach().double().reshape(_ELBO_COPIES, batch)
                mean, spread = values.mean(0), values.std(0)
                scale = torch.maximum(spread, ref["std"])
                tol = Z_SCORE * torch.sqrt(scale**2 / _ELBO_COPIES + ref["std"] ** 2 / _ELBO_REF_SAMPLES)
                if not torch.isfinite(values).all():
                    raise Failure(
                        case,
                        expected=fmt(ref["mean"]),
                        got=fmt(out),
                        hint="NaN or inf in your ELBO: compute log p(x|z) with "
                        "model.likelihood.log_prob(x, model.decode(z)) (the decoder outputs "
                        "logits or means, not probabilities).",
                    )
                if not ((mean - ref["mean"]).abs() <= tol).all():
                    d = x.shape[1]
                    if (spread < 1e-9 * (1 + ref["std"])).all() and not ((mean - ref["plugin"]).abs() <= tol).all():
                        raise Failure(
                            case,
                            expected=f"spread (std) of the copies ~ {fmt(ref['std'])}",
                            got=f"spread {fmt(spread)}",
                            hint="every example got the same noise: draw eps with the shape of mu, "
                            "eps = torch.randn_like(mu), not torch.randn(latent_dim).",
                        )
                    variants = [
                        (ref["recon"] + ref["kl"], "you added the KL: ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z))."),
                        (-ref["mean"], "you return -ELBO (the loss); return the ELBO itself."),
                        (
                            ref["plugin"],
                            "you decoded the posterior mean mu without sampling: the ELBO needs "
                            "z ~ q(z|x), z = mu + exp(0.5 * logvar) * eps.",
                        ),
                        (
                            ref["recon"] / d - ref["kl"],
                            Hint(
                                kind=(
                                    "you averaged the reconstruction term over the pixels; sum them (nats per image)."
                                ),
                                fix="you averaged log p(x|z) over the pixels; sum them (nats per image).",
                            ),
                        ),
                        (ref["recon"], "the KL term is missing: ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z))."),
                        (
                            ref["recon"] - _ELBO_COPIES * ref["kl"].sum(),
                            "you subtracted the KL summed over the whole batch; subtract each example's own KL.",
                        ),
                        (-ref["kl"], "the reconstruction term log p(x|z) is missing."),
                    ]
                    hint = None
                    for value, variant_hint in variants:
                        if ((mean - value).abs() <= tol).all():
                            hint = variant_hint
                            break
                    if hint is None and label.startswith("a linear-Gaussian"):
                        hint = (
                            "right for the Bernoulli VAE, wrong for a Gaussian likelihood: compute "
                            "log p(x|z) with model.likelihood.log_prob(x, model.decode(z)) instead of a "
                            "fixed formula, so the ELBO works for every likelihood."
                        )
                    if hint is None:
                        hint = (
                            "compare with log p(x|z) - KL, where z = mu + exp(0.5 * logvar) * eps, "
                            "log p(x|z) = model.likelihood.log_prob(x, model.decode(z)) and "
                            "KL = vaelab.kl_standard_normal(mu, logvar)."
                        )
                    raise Failure(
                        case,
                        expected=f"average {fmt(ref['mean'])} (within {Z_SCORE:g} standard errors, {fmt(tol)})",
                        got=f"average {fmt(mean)}",
                        hint=hint,
                    )

                case = r.case(f"{label}: the {_ELBO_COPIES} copies of an example get independent noise")
                if (spread < 1e-9 * (1 + ref["std"])).any():
                    raise Failure(
                        case,
                        expected=f"spread (std) ~ {fmt(ref['std'])}",
                        got=f"spread {fmt(spread)}",
                        hint="every example got the same noise: draw eps with the shape of mu, "
                        "eps = torch.randn_like(mu), not torch.randn(latent_dim).",
                    )

                case = r.case(f"{label}: gradients reaching the encoder's mu and logvar (averaged over the copies)")
                no_grad_hint = (
                    "no gradient reaches the encoder: the ELBO must be computed with torch operations "
                    "from model.encode(x), without torch.no_grad(), .detach(), .item() or .sample()."
                )
                if not out.requires_grad:
                    raise Failure(
                        case, expected="an ELBO that carries a gradient", got="requires_grad=False", hint=no_grad_hint
                    )
                out.sum().backward()
                gmu, glv = tap.grads()
                if gmu is None or glv is None:
                    raise Failure(case, expected="gradients for mu and logvar", got="no gradient", hint=no_grad_hint)
                mu, lv = tap.outputs[0]
                gmu = gmu.double().reshape(_ELBO_COPIES, batch, -1)
                glv = glv.double().reshape(_ELBO_COPIES, batch, -1)
                for symbol, grad, key in (("mu", gmu, "gmu"), ("logvar", glv, "glv")):
                    kl_only = (-mu.detach() if symbol == "mu" else -0.5 * torch.expm1(lv.detach())).double()
                    kl_only = kl_only.reshape(_ELBO_COPIES, batch, -1)
                    if torch.allclose(grad, kl_only, rtol=1e-6, atol=1e-9):
                        raise Failure(
                            case,
                            expected=f"d ELBO / d {symbol} including the reconstruction term",
                            got=f"only the KL's gradient {fmt(kl_only[0])}",
                            hint=f"no gradient reaches {symbol} through z: did you sample with "
                            "torch.randn (or .sample(), torch.normal, .detach()) without the "
                            "reparameterization? Use z = mu + exp(0.5 * logvar) * eps.",
                        )
                    g_mean = grad.mean(0)
                    g_tol = (
                        Z_SCORE
                        * torch.sqrt(
                            torch.maximum(grad.std(0), ref[key + "_std"]) ** 2 / _ELBO_COPIES
                            + ref[key + "_std"] ** 2 / _ELBO_REF_SAMPLES
                        )
                        + 1e-9
                    )
                    if not ((g_mean - ref[key]).abs() <= g_tol).all():
                        raise Failure(
                            case,
                            expected=f"average d ELBO / d {symbol} ~ {fmt(ref[key])}",
                            got=f"average {fmt(g_mean)}",
                            hint=f"the ELBO's value is right on average but its gradient in {symbol} "
                            "is not: is part of the computation detached, or is the KL computed "
                            "from a detached mu/logvar?",
                        )
            finally:
                tap.handle.remove()
                model.zero_grad(set_to_none=True)

    return run_check(name, fn, body, 8, raise_on_failure, hint=hint, forbidden=REFUSED, allow=allow)
