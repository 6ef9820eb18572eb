"""The objectives: the evidence lower bound and the importance-weighted bound.

All values are in nats per example, summed over pixels (never averaged over pixels).

ELBO (chapter 3):  L(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x).
IWAE (chapter 8):  L_k(x) = E[log (1/k) sum_i w_i],  w_i = p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x);
                   L_1 = ELBO <= L_k <= L_{k+1} -> log p(x) as k -> infinity (Burda et al. 2015).

``model`` is a ``vaelab.VAE``: ``model.posterior(x)`` is q(z|x), a swappable piece: anything with
``rsample_with_log_prob(n, generator) -> (z, log q(z|x))`` (the diagonal Gaussian, or a flow from
``vaelab.models.flows``), plus ``rsample`` and ``kl_per_dimension`` where the closed-form KL exists;
``model.decode(z)`` the parameters of p(x|z), ``model.likelihood.log_prob(x, params)`` log p(x|z) and
``model.prior.log_prob(z)`` log p(z). The data are checked once, here (``validate=False`` skips it).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .model import VAE
from .recognition import DiagonalGaussian, gaussian_log_density
from .validation import check_model_input, check_nonnegative, check_positive_int

KL_ESTIMATORS = ("analytic", "mc")


class ELBOTerms(NamedTuple):
    """Per-example parts of the ELBO, in nats: reconstruction = E_q[log p(x|z)] (Monte Carlo over the
    samples drawn), kl = KL(q(z|x) || p(z)), elbo = reconstruction - kl, each (batch,); kl_per_dim
    (batch, latent_dim) is the KL of each latent dimension, with kl = kl_per_dim.sum(-1) (both closed-form,
    or both Monte Carlo with the same samples); (batch, 1) for a q that does not factorize (a flow)."""

    reconstruction: torch.Tensor
    kl: torch.Tensor
    elbo: torch.Tensor
    kl_per_dim: torch.Tensor


def elbo(
    model: VAE,
    x: torch.Tensor,
    n_samples: int = 1,
    kl: str = "analytic",
    validate: bool = True,
    generator: torch.Generator | None = None,
) -> ELBOTerms:
    """The ELBO of each example of x: (batch, D), with its parts (see ``ELBOTerms``).

    n_samples: reparameterized samples z ~ q(z|x) for the reconstruction term (and for the KL when
    kl="mc"). kl: "analytic" (closed form, only for a q that offers it: the diagonal Gaussian) or
    "mc" (Monte Carlo with the same samples; per dimension when q is the diagonal Gaussian, else one
    KL for the whole code, and ``kl_per_dim`` is (batch, 1)).
    """
    if kl not in KL_ESTIMATORS:
        raise ValueError(f"kl must be one of {KL_ESTIMATORS}, got {kl!r}.")
    check_positive_int("n_samples", n_samples)
    if validate:
        check_model_input(model, x)
    q = model.posterior(x)
    if kl == "analytic":
        if not hasattr(q, "kl_per_dimension"):
            raise ValueError(
                f"kl='analytic' needs a closed-form KL, which q(z|x) = {type(q).__name__} does not "
                "have; use kl='mc' (Monte Carlo, with the same samples)."
            )
        z = q.rsample(n_samples, generator)  # (S, batch, latent_dim)
        kl_per_dim = q.kl_per_dimension()
    elif isinstance(q, DiagonalGaussian):  # log q(z_j|x) - log p(z_j) per dimension (q and p factorize)
        z = q.rsample(n_samples, generator)
        kl_per_dim = (gaussian_log_density(z, q.mu, q.logvar) - gaussian_log_density(z, 0.0, 0.0)).mean(0)
    else:  # any q: log q(z|x) - log p(z), one KL for the whole code, (batch, 1)
        z, log_q = q.rsample_with_log_prob(n_samples, generator)
        kl_per_dim = (log_q - model.prior.log_prob(z)).mean(0).unsqueeze(-1)
    reconstruction = model.likelihood.log_prob(x, model.decode(z)).mean(0)
    kl_value = kl_per_dim.sum(-1)
    return ELBOTerms(reconstruction, kl_value, reconstruction - kl_value, kl_per_dim)


def training_loss(terms: ELBOTerms, beta: float = 1.0, free_bits: float = 0.0) -> torch.Tensor:
    """The scalar minimized in training: -mean_batch[reconstruction - beta * KL'].

    KL' = KL without free bits; with free_bits = lambda > 0 (Kingma et al. 2016), the KL of each
    latent dimension, averaged over the batch, counts as max(lambda, KL_j), so the optimizer
    gains nothing from pushing a dimension's KL below lambda nats. It uses ``terms.kl_per_dim``, the
    estimate ``elbo`` made (closed form or Monte Carlo). beta = 1 and free_bits = 0 give the negative
    ELBO; beta != 1 is the beta-VAE objective (Higgins et al. 2017).
    """
    check_nonnegative("beta", beta)
    check_nonnegative("free_bits", free_bits, unit=" nats")
    if free_bits > 0:
        kl = terms.kl_per_dim.mean(0).clamp(min=free_bits).sum()
        return -(terms.reconstruction.mean() - beta * kl)
    return -(terms.reconstruction - beta * terms.kl).mean()  # one mean: fewer autograd nodes per step


def log_importance_weights(
    model: VAE, x: torch.Tensor, k: int, validate: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for z_i ~ q(z|x), i = 1..k.

    x: (batch, D). Returns (k, batch).
    """
    check_positive_int("k", k)
    if validate:
        check_model_input(model, x)
    z, log_q = model.posterior(x).rsample_with_log_prob(k, generator)  # (k, batch, latent_dim), (k, batch)
    return model.likelihood.log_prob(x, model.decode(z)) + model.prior.log_prob(z) - log_q


def iwae_bound(
    model: VAE,
    x: torch.Tensor,
    k: int,
    chunk_size: int | None = None,
    validate: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_k(x) = log (1/k) sum_{i=1}^k w_i, one draw of the importance-weighted bound, (batch,).

    The weights are drawn ``chunk_size`` at a time (default: as many as keep the decoder's output near
    2^20 numbers), so memory stays bounded for k in the thousands; logaddexp combines the chunks exactly.
    """
    check_positive_int("k", k)
    if validate:
        check_model_input(model, x)
    chunk_size = max(1, (1 << 20) // x.numel()) if chunk_size is None else check_positive_int("chunk_size", chunk_size)
    total = torch.full((len(x),), -math.inf, dtype=x.dtype, device=x.device)
    for start in range(0, k, chunk_size):
        log_w = log_importance_weights(model, x, min(chunk_size, k - start), validate=False, generator=generator)
        total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
    return total - math.log(k)
