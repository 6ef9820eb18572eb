"""Evaluating a VAE: the importance-sampled estimate of log p(x) over a data set (chapter 8), the mean
ELBO over a data set (what ``fit`` reports as the test ELBO), and ``evaluating(model)``, the one way
vaelab switches a model to eval mode and back.

This is where speed lives, off the reading path of ``vaelab.core.objectives``: with k = 5000 samples per
image the estimate runs the decoder millions of times. The samples are drawn in chunks sized for the
CPU cache, and the MLP decoder with a Bernoulli likelihood takes the exact shortcut of
``vaelab.estimators.bernoulli_mlp``; any other model evaluates ``vaelab.iwae_bound``, the formula as written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..core.model import VAE
from ..core.objectives import elbo, iwae_bound, log_mean_exp_in_chunks
from ..core.validation import check_model_input, check_positive_int
from ..data import ImageData, check_dataset
from ..utils.progress import progress_bar
from . import bernoulli_mlp

__all__ = ["log_likelihood_estimate", "evaluate_elbo", "evaluating", "is_conditional", "conditional_view"]


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

    def log_weights(n: int) -> torch.Tensor:
        z, log_q = q.rsample_with_log_prob(n, generator)  # any q(z|x): also a flow
        return log_likelihood(z) + model.prior.log_prob(z) - log_q

    return log_mean_exp_in_chunks(log_weights, k, chunk_size)


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


def is_conditional(model: nn.Module) -> bool:
    """A conditional model has ``given(y)``: the VAE-like view of p(x|z, y) q(z|x, y) for labels y."""
    return callable(getattr(model, "given", None))


def conditional_view(model: VAE, data: ImageData) -> VAE:
    """The model as the data checks see it: itself, or a conditional model given the first label."""
    return model.given(data.labels[:1].to(next(model.parameters()).device)) if is_conditional(model) else model


@torch.no_grad()
def evaluate_elbo(model: VAE, data: ImageData, batch_size: int = 1000) -> float:
    """Mean ELBO over ``data`` (one reparameterized sample; the closed-form KL where one is registered
    for the model's q(z|x) and prior, else the Monte Carlo KL of the same sample), nats per image.

    ``data`` is checked first (an ImageData that fits the model, in the likelihood's support).
    A conditional model (one with ``given(y)``) is evaluated as ``model.given(y)`` on each batch's labels."""
    check_positive_int("batch_size", batch_size)
    view = conditional_view(model, data)
    check_dataset("data", data, view)
    check_model_input(view, data.images[:1])  # the model's device and dtype
    total = torch.zeros((), device=data.device)
    with evaluating(model):
        if is_conditional(model):
            for x, y in data.batches(batch_size, shuffle=False, labels=True):
                total += elbo(model.given(y), x, validate=False).elbo.sum()
        else:
            for x in data.batches(batch_size, shuffle=False):
                total += elbo(model, x, validate=False).elbo.sum()
    return total.item() / len(data)
