"""The objectives: the evidence lower bound and the importance-weighted bound.

All values are in nats per example, summed over pixels (never averaged over pixels).

ELBO (chapter 3):  L(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x).
IWAE (chapter 8):  L_k(x) = E[log (1/k) sum_i w_i],  w_i = p(x, z_i) / q(z_i|x),  z_i ~ q(z|x);
                   L_1 = ELBO <= L_k <= L_{k+1} -> log p(x) as k -> infinity (Burda et al. 2015).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from . import bernoulli_mlp
from .kl import diagonal_gaussian_log_prob, kl_monte_carlo, kl_per_dimension
from .model import VAE
from .progress import progress_bar
from .reparameterize import reparameterize
from .validation import check_model_input, check_positive_int

__all__ = ["ELBOTerms", "elbo", "training_loss", "log_importance_weights", "iwae_bound",
           "log_likelihood_estimate"]

KL_ESTIMATORS = ("analytic", "mc")


class ELBOTerms(NamedTuple):
    """Per-example parts of the ELBO, each (batch,), in nats.

    reconstruction = E_q[log p(x|z)] (Monte Carlo over the samples drawn),
    kl = KL(q(z|x) || p(z)) (closed form or Monte Carlo), elbo = reconstruction - kl.
    kl_per_dim (batch, latent_dim) is the closed-form KL of each latent dimension.
    """

    reconstruction: torch.Tensor
    kl: torch.Tensor
    elbo: torch.Tensor
    kl_per_dim: torch.Tensor


def _check_input(model: VAE, x: torch.Tensor) -> None:
    check_model_input(model, x)


def elbo(model: VAE, x: torch.Tensor, n_samples: int = 1, kl: str = "analytic",
         validate: bool = True) -> ELBOTerms:
    """The ELBO of each example of x: (batch, D), with its parts (see ``ELBOTerms``).

    n_samples: reparameterized samples z ~ q(z|x) for the reconstruction term (and for the KL
    when kl="mc"). kl: "analytic" (closed form) or "mc" (Monte Carlo with the same samples).
    """
    if kl not in KL_ESTIMATORS:
        raise ValueError(f"kl must be one of {KL_ESTIMATORS}, got {kl!r}.")
    check_positive_int("n_samples", n_samples)
    if validate:
        _check_input(model, x)
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, n_samples)  # (S, batch, latent_dim)
    reconstruction = model.likelihood.log_prob(x, model.decode(z), validate=False).mean(0)
    per_dim = kl_per_dimension(mu, logvar)
    kl_value = per_dim.sum(-1) if kl == "analytic" else kl_monte_carlo(mu, logvar, z=z)
    return ELBOTerms(reconstruction, kl_value, reconstruction - kl_value, per_dim)


def training_loss(terms: ELBOTerms, beta: float = 1.0, free_bits: float = 0.0) -> torch.Tensor:
    """The scalar minimized in training: -mean_batch[reconstruction - beta * KL'].

    KL' = KL without free bits; with free_bits = lambda > 0 (Kingma et al. 2016), the KL of each
    latent dimension, averaged over the batch, counts as max(lambda, KL_j), so the optimizer
    gains nothing from pushing a dimension's KL below lambda nats. beta = 1 and free_bits = 0
    give the negative ELBO; beta != 1 is the beta-VAE objective (Higgins et al. 2017).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}.")
    if free_bits < 0:
        raise ValueError(f"free_bits must be >= 0 nats, got {free_bits}.")
    if free_bits > 0:
        kl = terms.kl_per_dim.mean(0).clamp(min=free_bits).sum()
        return -(terms.reconstruction.mean() - beta * kl)
    return -(terms.reconstruction - beta * terms.kl).mean()  # one mean: fewer autograd nodes per step


def log_importance_weights(model: VAE, x: torch.Tensor, k: int, validate: bool = True) -> torch.Tensor:
    """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for z_i ~ q(z|x), i = 1..k.

    x: (batch, D). Returns (k, batch).
    """
    check_positive_int("k", k)
    if validate:
        _check_input(model, x)
    mu, logvar = model.encode(x)
    return _log_weights(model, mu, logvar, k, _log_likelihood(model, x))


LogLikelihood = Callable[[torch.Tensor], torch.Tensor]


def _log_likelihood(model: VAE, x: torch.Tensor) -> LogLikelihood:
    """z: (n, batch, latent_dim) -> log p(x|z): (n, batch). Without gradients, the MLP decoder with
    a Bernoulli likelihood takes the exact shortcut of ``vaelab.bernoulli_mlp``."""
    if not torch.is_grad_enabled() and bernoulli_mlp.applies_to(model):
        return bernoulli_mlp.BernoulliMLPLogLikelihood(model.decoder, x)
    return lambda z: model.likelihood.log_prob(x, model.decode(z), validate=False)


def _log_weights(model: VAE, mu: torch.Tensor, logvar: torch.Tensor, k: int,
                 log_likelihood: LogLikelihood) -> torch.Tensor:
    z = reparameterize(mu, logvar, k)
    return log_likelihood(z) + model.prior.log_prob(z) - diagonal_gaussian_log_prob(z, mu, logvar)


def iwae_bound(model: VAE, x: torch.Tensor, k: int, chunk_size: int | None = None,
               validate: bool = True) -> torch.Tensor:
    """L_k(x) = log (1/k) sum_{i=1}^k w_i, one draw of the importance-weighted bound, (batch,).

    Computed with logsumexp in chunks of ``chunk_size`` samples so memory stays bounded for k in
    the thousands; the running logsumexp is combined with logaddexp, which is exact. The default
    keeps the decoder output near 2^20 numbers (4 MB in float32), small enough to stay in the CPU
    cache between the GEMM that writes it and the passes that read it; the MLP decoder with a
    Bernoulli likelihood, without gradients, takes ``vaelab.bernoulli_mlp``'s shortcut instead,
    with reused buffers of about 4096 rows (samples x images).
    """
    check_positive_int("k", k)
    if validate:
        _check_input(model, x)
    log_likelihood = _log_likelihood(model, x)
    if chunk_size is None:
        rows = bernoulli_mlp.ROWS_PER_CHUNK if isinstance(log_likelihood, bernoulli_mlp.BernoulliMLPLogLikelihood) \
            else (1 << 20) // max(1, x.shape[1])
        chunk_size = max(1, min(k, rows // len(x)))
    check_positive_int("chunk_size", chunk_size)
    mu, logvar = model.encode(x)
    total = None
    done = 0
    while done < k:
        n = min(chunk_size, k - done)
        chunk = torch.logsumexp(_log_weights(model, mu, logvar, n, log_likelihood), dim=0)
        total = chunk if total is None else torch.logaddexp(total, chunk)
        done += n
    return total - math.log(k)


@torch.no_grad()
def log_likelihood_estimate(model: VAE, x: torch.Tensor, k: int = 5000, batch_size: int = 100,
                            chunk_size: int | None = None, progress: bool = False) -> torch.Tensor:
    """Importance-sampled estimate of log p(x) = log E_q[p(x, z) / q(z|x)] with k samples,
    for every row of x: (N, D), in batches; returns (N,) on x's device.

    This is L_k; its expectation rises toward log p(x) with k (Burda et al. 2015 use k = 5000).
    Memory is bounded by batch_size * chunk_size * D numbers, whatever N and k are.
    """
    check_positive_int("k", k)
    check_positive_int("batch_size", batch_size)
    _check_input(model, x)
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in progress_bar(range(0, len(x), batch_size), enabled=progress, desc=f"log p(x), k={k}"):
            batch = x[start:start + batch_size]
            out.append(iwae_bound(model, batch, k, chunk_size=chunk_size, validate=False))
    finally:
        model.train(was_training)
    return torch.cat(out)
