"""Evaluating a trained VAE: the importance-sampled estimate of log p(x) over a data set (chapter 8), and
``evaluating(model)``, the one way vaelab switches a model to eval mode and back.

This is where speed lives, off the reading path of ``vaelab.core.objectives``: with k = 5000 samples per
image the estimate runs the decoder millions of times. The samples are drawn in chunks sized for the
CPU cache, and the MLP decoder with a Bernoulli likelihood takes the exact shortcut of
``vaelab.estimators.bernoulli_mlp``; any other model evaluates ``vaelab.iwae_bound``, the formula as written.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..core.objectives import iwae_bound
from ..core.validation import check_model_input, check_positive_int
from ..utils.progress import progress_bar
from . import bernoulli_mlp

if TYPE_CHECKING:
    from ..core.model import VAE

__all__ = ["log_likelihood_estimate", "evaluating"]


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``with evaluating(model):`` runs the block in eval mode and restores the previous train/eval mode
    afterwards, even if the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _mlp_bernoulli_bound(
    model: VAE, x: torch.Tensor, k: int, chunk_size: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """``iwae_bound`` for the MLP decoder with a Bernoulli likelihood, with log p(x|z) from the shortcut."""
    log_likelihood = bernoulli_mlp.BernoulliMLPLogLikelihood(model.decoder, x)
    chunk_size = chunk_size or max(1, min(k, bernoulli_mlp.ROWS_PER_CHUNK // len(x)))
    q = model.posterior(x)
    total = torch.full((len(x),), -math.inf, dtype=x.dtype, device=x.device)
    for start in range(0, k, chunk_size):
        z, log_q = q.rsample_with_log_prob(min(chunk_size, k - start), generator)  # any q(z|x): also a flow
        log_w = log_likelihood(z) + model.prior.log_prob(z) - log_q
        total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
    return total - math.log(k)


@torch.no_grad()
def log_likelihood_estimate(
    model: VAE,
    x: torch.Tensor,
    k: int = 5000,
    batch_size: int = 100,
    chunk_size: int | None = None,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Importance-sampled estimate of log p(x) = log E_q[p(x, z) / q(z|x)] with k samples, for every row of
    x: (N, D), in batches of ``batch_size`` rows and chunks of ``chunk_size`` samples; returns (N,).

    This is L_k (``vaelab.iwae_bound``); its expectation rises toward log p(x) with k (Burda et al. 2015
    use k = 5000). Memory is bounded by batch_size * chunk_size * D numbers, whatever N and k are.
    """
    check_positive_int("k", k)
    check_positive_int("batch_size", batch_size)
    check_model_input(model, x)
    if chunk_size is not None:
        check_positive_int("chunk_size", chunk_size)
    shortcut = bernoulli_mlp.applies_to(model)
    out = []
    with evaluating(model):
        for start in progress_bar(range(0, len(x), batch_size), enabled=progress, desc=f"log p(x), k={k}"):
            batch = x[start : start + batch_size]
            if shortcut:
                out.append(_mlp_bernoulli_bound(model, batch, k, chunk_size, generator))
            else:
                out.append(iwae_bound(model, batch, k, chunk_size=chunk_size, validate=False, generator=generator))
    return torch.cat(out)
