"""Training with the importance-weighted bound, and how noisy its gradients are (chapter 10).

The bound (chapter 8, Burda et al. 2015), for z_1..z_k ~ q(z|x) drawn by reparameterization:

    L_k(x) = log (1/k) sum_i w_i,   log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x),
    normalized weights  w~_i = w_i / sum_j w_j = softmax_i(log w_i).

Three estimators of its gradient, all from the same draws (``ESTIMATORS``):

* "reparam": autograd through L_k as written (the IWAE gradient of Burda et al.). Decoder (theta):
  sum_i w~_i grad_theta log w_i. Encoder (phi): sum_i w~_i d log w_i / d phi, where phi enters both
  through z_i(phi) and through the parameters of q inside log q (the score term).
* "dreg": doubly reparameterized (Tucker et al. 2018). Same decoder gradient; encoder:
  sum_i w~_i^2 (d log w_i / d z_i)(d z_i / d phi), with q's parameters held constant inside log q.
  Unbiased for grad_phi L_k; its variance vanishes when q is the exact posterior.
* "stl": "sticking the landing" (Roeder et al. 2017) applied to L_k: the score term dropped, weights
  w~_i (not squared). Unbiased at k = 1 (the ELBO) but *biased* for L_k when k > 1: kept here to show it.

``iwae_loss`` returns a scalar whose value is -mean_batch L_k and whose gradient is the chosen
estimator; ``IWAEObjective`` packs (k, estimator) for ``vaelab.fit(objective=...)``.
``gradient_snr`` measures signal-to-noise ratios of gradient estimates, SNR = |E[g]| / std[g] per
parameter, over repeated draws on a fixed minibatch (Rainforth et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from ..core.model import VAE
from ..core.validation import check_choice, check_model_input, check_positive_int

__all__ = ["ESTIMATORS", "IWAETerms", "IWAEObjective", "iwae_loss", "GradientSNR", "gradient_snr"]

ESTIMATORS = ("reparam", "dreg", "stl")


class IWAETerms(NamedTuple):
    """Per-example numbers of one IWAE step, each (batch,) and detached from the graph.

    bound: L_k(x), the k-sample bound the step maximizes. reconstruction: mean_i log p(x|z_i);
    kl: mean_i [log q(z_i|x) - log p(z_i)] (the Monte Carlo KL of the same draws); elbo:
    reconstruction - kl = mean_i log w_i, the ELBO estimated from the same k draws (<= bound).
    """

    bound: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    elbo: torch.Tensor


def _detached(q: Any) -> Any:
    """q with its parameters cut from the graph: log q(z) then passes gradient to z only."""
    if not callable(getattr(q, "log_prob", None)):
        raise TypeError(
            f"the estimators 'dreg' and 'stl' evaluate log q(z|x) at given z, which needs q.log_prob(z); "
            f"{type(q).__name__} has none (a flow gives log q only with its own draws). Use estimator='reparam'."
        )
    if hasattr(q, "detach"):
        return q.detach()
    if isinstance(q, tuple) and hasattr(q, "_fields") and all(isinstance(t, torch.Tensor) for t in q):
        return type(q)(*(t.detach() for t in q))  # a NamedTuple of tensors, e.g. DiagonalGaussian
    raise TypeError(
        f"the estimators 'dreg' and 'stl' evaluate log q(z|x) with q's parameters held constant, which needs "
        f"q to have a detach() method or to be a NamedTuple of tensors; got {type(q).__name__}. Use "
        "estimator='reparam' for this q."
    )


def iwae_loss(
    model: VAE,
    x: torch.Tensor,
    k: int,
    estimator: str = "reparam",
    validate: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, IWAETerms]:
    """The loss for one IWAE step on x: (batch, D): returns (loss, terms).

    loss: -mean_batch L_k(x), a scalar whose gradient is the estimator named by ``estimator`` (see the
    module docstring); terms: ``IWAETerms`` of the same k draws. "reparam" differentiates L_k as
    written. "stl" and "dreg" evaluate log q(z_i|x) with q's parameters detached, so phi gets gradient
    only along the path through z_i: sum_i w~_i (d log w_i / d z_i)(d z_i / d phi) for "stl"; "dreg"
    also multiplies the gradient reaching z_i by w~_i (a hook on z), which makes it w~_i^2 (Tucker et
    al. 2018, eq. 7). The decoder's gradient is the same for all three. The noise is one draw of
    ``q.rsample(k, generator)``, (k, batch, latent_dim).
    """
    check_positive_int("k", k)
    check_choice("estimator", estimator, ESTIMATORS)
    if validate:
        check_model_input(model, x)
    q = model.posterior(x)
    if estimator == "reparam" and hasattr(q, "rsample_with_log_prob"):  # any q, flows included
        z, log_q_z = q.rsample_with_log_prob(k, generator)  # (k, batch, latent_dim), (k, batch)
    else:
        z = q.rsample(k, generator)  # (k, batch, latent_dim)
        log_q_z = (q if estimator == "reparam" else _detached(q)).log_prob(z)
    log_px_z = model.likelihood.log_prob(x, model.decode(z))  # (k, batch)
    kl = log_q_z - model.prior.log_prob(z)  # log q(z_i|x) - log p(z_i)
    log_w = log_px_z - kl
    bound = torch.logsumexp(log_w, dim=0) - math.log(k)  # L_k, (batch,)
    if estimator == "dreg" and z.requires_grad:
        normalized = torch.softmax(log_w.detach(), dim=0).unsqueeze(-1)  # w~_i, (k, batch, 1)
        z.register_hook(lambda grad: grad * normalized)
    detached = [t.detach() for t in (bound, log_px_z.mean(0), kl.mean(0))]
    return -bound.mean(), IWAETerms(*detached, elbo=detached[1] - detached[2])


@dataclass(frozen=True)
class IWAEObjective:
    """The training objective "maximize L_k with this gradient estimator", for ``vaelab.fit``:
    ``fit(model, train, objective=IWAEObjective(k=5, estimator="dreg"))``. Calling it on (model, x)
    returns ``iwae_loss(model, x, k, estimator, validate=False)``; its noise comes from torch's global
    generator, as the ELBO's does in ``fit``. k = 1 with "reparam" is the ELBO with a Monte Carlo KL."""

    k: int = 5
    estimator: str = "reparam"
    kl_weighted = False  # L_k has no KL term for a warm-up to weigh

    def __post_init__(self) -> None:
        check_positive_int("k", self.k)
        check_choice("estimator", self.estimator, ESTIMATORS)

    def __call__(self, model: VAE, x: torch.Tensor, kl_weight: float = 1.0) -> tuple[torch.Tensor, IWAETerms]:
        """-mean_batch L_k(x) and the step's terms; ``kl_weight`` is part of fit's protocol and unused here."""
        return iwae_loss(model, x, self.k, self.estimator, validate=False)

    def settings(self) -> dict[str, object]:
        """What defines this objective, stored with a run and compared on resume."""
        return {"objective": "iwae", "k": self.k, "estimator": self.estimator}

    def describe(self) -> str:
        """A short name for text and plots, e.g. "iwae(k=5, estimator=dreg)"."""
        return f"iwae(k={self.k}, estimator={self.estimator})"


# ----------------------------------------------------------------------------- signal-to-noise ratio


class GradientSNR(NamedTuple):
    """SNR of a gradient estimator per parameter group (e.g. "encoder", "decoder").

    snr: group -> (n,) SNR_j = |mean_m g_mj| / std_m g_mj of each scalar parameter j over the draws m
    (unbiased std), parameters whose gradient is 0 in every draw left out (no signal and no noise,
    e.g. weights of dead ReLU units); mean: group -> the mean of ``snr[group]``; draws: how many."""

    snr: dict[str, torch.Tensor]
    mean: dict[str, float]
    draws: int


def gradient_snr(
    loss_fn: Callable[[], torch.Tensor],
    groups: dict[str, Iterable[nn.Parameter]],
    draws: int = 100,
) -> GradientSNR:
    """Signal-to-noise ratio of a stochastic gradient, per parameter (Rainforth et al. 2018, eq. 4):
    SNR_j = |E[g_j]| / std[g_j], estimated from ``draws`` independent evaluations of ``loss_fn()``,
    each a scalar with fresh noise on the same data (e.g. ``lambda: iwae_loss(model, x, k, "dreg")[0]``).

    groups: name -> parameters, e.g. {"encoder": model.encoder.parameters(), "decoder":
    model.decoder.parameters()}; a parameter belongs to one group. The gradients of the parameters
    are left as they were before the call. Returns a ``GradientSNR``.
    """
    check_positive_int("draws", draws)
    if draws < 2:
        raise ValueError(f"draws must be at least 2 to estimate a standard deviation, got {draws}.")
    params = {name: [p for p in ps if p.requires_grad] for name, ps in groups.items()}
    everything = [p for ps in params.values() for p in ps]
    if not everything:
        raise ValueError(
            "groups holds no parameters that require gradients; pass e.g. "
            "{'encoder': model.encoder.parameters(), 'decoder': model.decoder.parameters()}."
        )
    if len({id(p) for p in everything}) != len(everything):
        raise ValueError("a parameter appears in two groups of gradient_snr; give each group its own parameters.")
    # running sums in float64: mean and variance over the draws of each scalar parameter
    sums = [torch.zeros(p.numel(), dtype=torch.float64, device=p.device) for p in everything]
    squares = [torch.zeros_like(s) for s in sums]
    nonzero = [torch.zeros(p.numel(), dtype=torch.bool, device=p.device) for p in everything]
    for _ in range(draws):
        loss = loss_fn()
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError("loss_fn must return a scalar tensor (one loss for the minibatch).")
        grads = torch.autograd.grad(loss, everything, allow_unused=True)
        for i, (p, g) in enumerate(zip(everything, grads)):
            g = torch.zeros(p.numel(), dtype=torch.float64, device=p.device) if g is None else g.double().flatten()
            sums[i] += g
            squares[i] += g * g
            nonzero[i] |= g != 0
    snr: dict[str, torch.Tensor] = {}
    index = 0
    for name, ps in params.items():
        values = []
        for _ in ps:
            mean = sums[index] / draws
            var = ((squares[index] - draws * mean * mean) / (draws - 1)).clamp(min=0.0)
            values.append((mean.abs() / var.sqrt())[nonzero[index]])
            index += 1
        snr[name] = torch.cat(values).cpu() if values else torch.zeros(0, dtype=torch.float64)
    mean_snr = {name: float(v[torch.isfinite(v)].mean()) if len(v) else math.nan for name, v in snr.items()}
    return GradientSNR(snr, mean_snr, draws)
