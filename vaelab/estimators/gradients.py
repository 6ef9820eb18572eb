"""Monte Carlo estimators of the gradient of E_{q(z)}[f(z)] with respect to the parameters of
q = N(mu, diag(exp(logvar))) (book chapter 5).

* Score function (REINFORCE, Williams 1992):
      grad = E_q[ f(z) * grad log q(z) ],
  with grad_mu log q = (z - mu) / sigma^2 and grad_logvar log q = ((z - mu)^2 / sigma^2 - 1) / 2.
  Needs only the values f(z).
* Reparameterization (Kingma and Welling 2013; Rezende et al. 2014):
      z = mu + exp(logvar / 2) * eps,  eps ~ N(0, I),
      grad = E_eps[ grad_z f(z) * dz/d(mu, logvar) ],
  computed with autograd through the sample. Needs f differentiable in z.

Both functions return ``(grad_mu, grad_logvar)``: the average of ``n_samples`` single-sample
estimates (each the shape of ``mu``), or with ``per_sample=True`` the single-sample estimates
themselves, shape (n_samples, *mu.shape), whose spread gives the estimator's variance and the
standard error of the average.

``f`` maps a tensor z of shape (n_samples, *mu.shape) to values of shape
(n_samples, *mu.shape[:-1]): one value per sample and per row of ``mu``, each depending only on
its own z[s, ...] (for example ``lambda z: ((z - c) ** 2).sum(-1)``). The estimators treat mu and
logvar as constants (they are detached); call them on the numbers, not inside a training graph.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.generative import standard_normal_log_prob
from ..core.recognition import diagonal_gaussian_log_prob, reparameterize
from ..core.validation import check_matching_shapes, check_positive_int, check_same_device, check_tensor

__all__ = ["score_function_gradient", "reparameterized_gradient"]

Objective = Callable[[torch.Tensor], torch.Tensor]


def _replicated_leaves(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One copy of (mu, logvar) per sample, as leaves that collect per-sample gradients."""
    check_tensor("mu", mu, min_ndim=1)
    check_tensor("logvar", logvar, min_ndim=1)
    check_matching_shapes("mu", mu, "logvar", logvar)
    check_same_device(mu=mu, logvar=logvar)
    check_positive_int("n_samples", n_samples)
    shape = (n_samples, *mu.shape)
    mu_s = mu.detach().expand(shape).clone().requires_grad_(True)
    logvar_s = logvar.detach().to(mu.dtype).expand(shape).clone().requires_grad_(True)
    return mu_s, logvar_s


def _values(f: Objective, z: torch.Tensor) -> torch.Tensor:
    if not callable(f):
        raise TypeError(f"f must be a function of z, got {type(f).__name__}.")
    values = f(z)
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"f must return a tensor, got {type(values).__name__}.")
    if tuple(values.shape) != tuple(z.shape[:-1]):
        raise ValueError(
            f"f returned shape {tuple(values.shape)} for z of shape {tuple(z.shape)}; it must return one "
            f"value per sample and row, shape {tuple(z.shape[:-1])} (reduce over the last dimension, "
            "e.g. with .sum(-1))."
        )
    return values


def _result(grad_mu: torch.Tensor, grad_logvar: torch.Tensor, per_sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if per_sample:
        return grad_mu, grad_logvar
    return grad_mu.mean(0), grad_logvar.mean(0)


def score_function_gradient(
    f: Objective,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    n_samples: int = 1,
    per_sample: bool = False,
    baseline: float | torch.Tensor = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-function (REINFORCE) estimate of the gradient of E_q[f(z)] w.r.t. (mu, logvar).

    Each single-sample estimate is (f(z_s) - baseline) * grad log q(z_s), z_s ~ q. The gradient of
    log q comes from autograd; f is evaluated without gradients (it need not be differentiable).
    A baseline that does not depend on z_s keeps the estimator unbiased (E_q[grad log q] = 0).
    mu, logvar: (..., latent_dim). Returns two tensors shaped like mu, or (n_samples, *mu.shape)
    with ``per_sample=True``.
    """
    mu_s, logvar_s = _replicated_leaves(mu, logvar, n_samples)
    with torch.no_grad():
        eps = torch.randn(mu_s.shape, dtype=mu_s.dtype, device=mu_s.device, generator=generator)
        z = mu_s + torch.exp(0.5 * logvar_s) * eps
        weights = _values(f, z) - baseline
    with torch.enable_grad():
        log_q = diagonal_gaussian_log_prob(z, mu_s, logvar_s)  # z is a constant here
        grad_mu, grad_logvar = torch.autograd.grad(log_q.sum(), (mu_s, logvar_s))
    weights = weights.unsqueeze(-1)
    return _result(weights * grad_mu, weights * grad_logvar, per_sample)


def reparameterized_gradient(
    f: Objective,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    n_samples: int = 1,
    per_sample: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterization estimate of the gradient of E_q[f(z)] w.r.t. (mu, logvar).

    Draws z_s = mu + exp(logvar / 2) * eps_s and differentiates f(z_s) through the sample with
    autograd: the single-sample estimates are grad_z f(z_s) and grad_z f(z_s) * eps_s * sigma / 2.
    f must be differentiable in z. mu, logvar: (..., latent_dim). Returns two tensors shaped like
    mu, or (n_samples, *mu.shape) with ``per_sample=True``.
    """
    mu_s, logvar_s = _replicated_leaves(mu, logvar, n_samples)
    eps = torch.randn(mu_s.shape, dtype=mu_s.dtype, device=mu_s.device, generator=generator)
    with torch.enable_grad():
        z = mu_s + torch.exp(0.5 * logvar_s) * eps
        values = _values(f, z)
        if not values.requires_grad:
            raise ValueError(
                "f(z) does not depend on z through differentiable torch operations, so the "
                "reparameterized gradient is undefined; use score_function_gradient instead."
            )
        grad_mu, grad_logvar = torch.autograd.grad(values.sum(), (mu_s, logvar_s), allow_unused=True)
    grad_mu = torch.zeros_like(mu_s) if grad_mu is None else grad_mu
    grad_logvar = torch.zeros_like(logvar_s) if grad_logvar is None else grad_logvar
    return _result(grad_mu.detach(), grad_logvar.detach(), per_sample)


def kl_monte_carlo(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    n_samples: int = 1,
    z: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(1/S) sum_s [log q(z_s|x) - log p(z_s)], z_s ~ q(z|x), for q = N(mu, diag(exp(logvar))) and
    p = N(0, I); unbiased for ``kl_standard_normal``, and can be negative for one sample. Pass ``z`` of
    shape (S, batch, latent_dim) to reuse samples drawn elsewhere. Returns (batch,)."""
    if z is None:
        z = reparameterize(mu, logvar, n_samples, generator)
    return (diagonal_gaussian_log_prob(z, mu, logvar) - standard_normal_log_prob(z)).mean(0)
