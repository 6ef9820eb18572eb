"""The objectives: the evidence lower bound and the importance-weighted bound.

All values are in nats per example, summed over pixels (never averaged over pixels).

ELBO (chapter 3):  L(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x).
IWAE (chapter 8):  L_k(x) = E[log (1/k) sum_i w_i],  w_i = p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x);
                   L_1 = ELBO <= L_k <= L_{k+1} -> log p(x) as k -> infinity (Burda et al. 2015).

Every bound uses the model's own parts: ``model.posterior(x)`` is q(z|x) (anything with
``rsample_with_log_prob(n, generator) -> (z, log q(z|x))``: the diagonal Gaussian, or a flow),
``model.prior`` is p(z) (anything with ``log_prob`` and ``sample``), ``model.decode(z)`` gives the
parameters of p(x|z) and ``model.likelihood.log_prob(x, params)`` is log p(x|z). The data are checked
once, here (``validate=False`` skips it).

``fit`` trains any *objective*: a callable ``objective(model, x, kl_weight) -> (loss, terms)``, where
loss is the scalar to minimize and ``terms`` a NamedTuple whose (batch,) tensors the history records
(as train_<name>), with ``settings()``, plain data that names it and its settings (stored with a run,
compared on resume), and ``kl_weighted``: whether kl_weight (the KL warm-up) weighs a KL term.
``vaelab.train.training.ELBO`` (``training_loss`` of ``elbo``) is the default;
``vaelab.estimators.IWAEObjective`` trains on L_k.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from .kl import closed_form_kl
from .model import VAE
from .validation import check_choice, check_model_input, check_nonnegative, check_positive_int

KL_ESTIMATORS = ("auto", "analytic", "mc")  # auto: the closed form where one is registered, else "mc"


class ELBOTerms(NamedTuple):
    """Per-example parts of the ELBO, in nats, each (batch,): reconstruction = E_q[log p(x|z)] (Monte
    Carlo over the samples drawn), kl = KL(q(z|x) || p(z)), elbo = reconstruction - kl. kl_per_dim,
    (batch, latent_dim), is the KL of each latent dimension (kl = kl_per_dim.sum(-1)) where q and p
    both factorize over dimensions, else None."""

    reconstruction: torch.Tensor
    kl: torch.Tensor
    elbo: torch.Tensor
    kl_per_dim: torch.Tensor | None


def elbo(
    model: VAE,
    x: torch.Tensor,
    n_samples: int = 1,
    kl: str = "auto",
    validate: bool = True,
    generator: torch.Generator | None = None,
) -> ELBOTerms:
    """The ELBO of each example of x: (batch, D), with its parts (see ``ELBOTerms``).

    n_samples: reparameterized samples z ~ q(z|x) for the reconstruction term (and for the KL when
    it is estimated). kl: "analytic" (the closed form registered for the pair (q, model.prior) in
    ``vaelab.core.kl``; an error where there is none), "mc" (log q(z|x) - log p(z) averaged over the
    same samples; per dimension where q and p factorize) or "auto" (the closed form where one exists).
    """
    check_choice("kl", kl, KL_ESTIMATORS)
    check_positive_int("n_samples", n_samples)
    if validate:
        check_model_input(model, x)
    q, prior = model.posterior(x), model.prior
    closed_form = None if kl == "mc" else closed_form_kl(q, prior)
    if closed_form is None and kl == "analytic":
        raise ValueError(
            f"kl='analytic' needs a closed-form KL(q || p), and none is registered for q = {type(q).__name__} and "
            f"p = {type(prior).__name__} (vaelab.core.kl.register_kl); use kl='mc' (Monte Carlo) or kl='auto'."
        )
    if closed_form is not None:
        kl_per_dim = closed_form(q, prior)
        z = q.rsample(n_samples, generator)  # (S, batch, latent_dim)
        kl_value = kl_per_dim.sum(-1)
    elif hasattr(q, "log_prob_per_dim") and hasattr(prior, "log_prob_per_dim"):  # both factorize
        z = q.rsample(n_samples, generator)
        kl_per_dim = (q.log_prob_per_dim(z) - prior.log_prob_per_dim(z)).mean(0)
        kl_value = kl_per_dim.sum(-1)
    else:  # any q and p: one KL for the whole code
        z, log_q = q.rsample_with_log_prob(n_samples, generator)
        kl_per_dim, kl_value = None, (log_q - prior.log_prob(z)).mean(0)
    reconstruction = model.likelihood.log_prob(x, model.decode(z)).mean(0)
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
    if check_nonnegative("free_bits", free_bits, unit=" nats") > 0:
        if terms.kl_per_dim is None:
            raise ValueError(
                "free_bits needs the KL of each latent dimension, which this q(z|x) and prior do not have "
                "(they do not both factorize over dimensions); train with free_bits=0."
            )
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


def log_mean_exp_in_chunks(log_w: Callable[[int], torch.Tensor], k: int, chunk_size: int) -> torch.Tensor:
    """log (1/k) sum_{i=1}^k w_i from ``log_w(n)``, which draws n more log-weights, (n, batch): drawn
    ``chunk_size`` at a time, so memory stays bounded; logaddexp combines the chunks exactly."""
    total = None
    for start in range(0, k, chunk_size):
        chunk = torch.logsumexp(log_w(min(chunk_size, k - start)), dim=0)
        total = chunk if total is None else torch.logaddexp(total, chunk)
    return total - math.log(k)


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
    2^20 numbers), so memory stays bounded for k in the thousands.
    """
    check_positive_int("k", k)
    if validate:
        check_model_input(model, x)
    chunk_size = max(1, (1 << 20) // x.numel()) if chunk_size is None else check_positive_int("chunk_size", chunk_size)
    return log_mean_exp_in_chunks(lambda n: log_importance_weights(model, x, n, False, generator), k, chunk_size)
