"""Diagnostics of a trained VAE: rate, distortion, per-dimension KL, active units.

rate = E_x[KL(q(z|x) || p(z))], distortion = -E_x E_q[log p(x|z)] (Alemi et al. 2018), so
-ELBO = rate + distortion. A latent dimension u is *active* when the encoder's mean moves with
the input: A_u = Cov_x(E_q[z_u|x]) > 0.01 (Burda et al. 2015); inactive dimensions have
collapsed to the prior (posterior collapse, chapter 9).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .core.kl import closed_form_kl
from .core.model import VAE
from .core.objectives import elbo
from .core.recognition import DiagonalGaussian
from .core.validation import check_positive_int
from .data import ImageData, check_dataset
from .estimators.evaluation import evaluating

__all__ = ["LatentSummary", "latent_summary", "rate_distortion", "encode_dataset", "LayerActivity", "active_units"]


class LatentSummary(NamedTuple):
    kl_per_dim: torch.Tensor  # (latent_dim,) mean KL of each dimension, nats
    activity: torch.Tensor  # (latent_dim,) Cov_x(E_q[z_u|x])
    active: torch.Tensor  # (latent_dim,) bool, activity > threshold

    @property
    def n_active(self) -> int:
        return int(self.active.sum())


@torch.no_grad()
def encode_dataset(model: VAE, data: ImageData, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior parameters for every image: (mu, logvar), each (N, latent_dim). The model's train/eval
    mode is restored afterwards."""
    check_dataset("data", data, model)
    mus, logvars = [], []
    with evaluating(model):
        for x in data.batches(batch_size, shuffle=False):
            mu, logvar = model.encode(x)
            mus.append(mu)
            logvars.append(logvar)
    return torch.cat(mus), torch.cat(logvars)


@torch.no_grad()
def latent_summary(model: VAE, data: ImageData, threshold: float = 0.01) -> LatentSummary:
    """Per-dimension KL(q(z_j|x) || p(z_j)) to the model's prior, averaged over ``data``, and the
    activity Cov_x(E_q[z_j|x]) of each dimension; ``threshold`` as in Burda et al. (0.01). Needs a
    closed-form KL per dimension for the model's q(z|x) and prior (``vaelab.core.kl``)."""
    mu, logvar = encode_dataset(model, data)
    q = DiagonalGaussian(mu, logvar)
    closed_form = closed_form_kl(q, model.prior)
    if closed_form is None:
        raise ValueError(
            f"latent_summary needs the KL of each latent dimension in closed form, which is not registered "
            f"for q = DiagonalGaussian and the prior {type(model.prior).__name__}; register one with "
            "vaelab.core.kl.register_kl, or summarize the activity alone (encode_dataset)."
        )
    activity = mu.var(dim=0, unbiased=True)
    return LatentSummary(closed_form(q, model.prior).mean(0), activity, activity > threshold)


@torch.no_grad()
def rate_distortion(model: VAE, data: ImageData, batch_size: int = 1000) -> tuple[float, float]:
    """(rate, distortion) in nats per image; rate + distortion = -ELBO. The model's train/eval mode is
    restored afterwards."""
    check_dataset("data", data, model)
    rate = distortion = 0.0
    with evaluating(model):
        for x in data.batches(batch_size, shuffle=False):
            terms = elbo(model, x, validate=False)
            rate += terms.kl.sum().item()
            distortion -= terms.reconstruction.sum().item()
    return rate / len(data), distortion / len(data)


class LayerActivity(NamedTuple):
    """Burda et al.'s activity of each unit of one stochastic layer over a data set."""

    activity: torch.Tensor  # (units,) Cov_x(E_q[z_u|x]), the variance over the images of the posterior mean
    active: torch.Tensor  # (units,) bool, activity > threshold

    @property
    def n_active(self) -> int:
        return int(self.active.sum())


@torch.no_grad()
def active_units(
    model: VAE,
    data: ImageData,
    threshold: float = 0.01,
    n_samples: int = 100,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
) -> dict[str, LayerActivity]:
    """Active units per stochastic layer (Burda et al. 2015): unit u is active when
    A_u = Cov_x(E_q[z_u|x]) > threshold (0.01), the variance over ``data`` of its posterior mean.

    Returns {"z": ...} for a one-layer model, where E_q[z|x] = mu(x), and {"z1": ..., "z2": ...} for the
    two-stochastic-layer model (``vaelab.models.hierarchical``), where E_q[z1|x] = mu1(x) and
    E_q[z2|x] = E_{q(z1|x)}[mu2(z1)] is averaged over ``n_samples`` draws of z1 (Burda et al.'s code
    takes one draw, n_samples=1, which adds the spread of mu2(z1) within an image to the activity).
    The model's train/eval mode is restored afterwards."""
    check_positive_int("n_samples", n_samples)
    check_dataset("data", data, model)
    means: dict[str, list[torch.Tensor]] = {}
    with evaluating(model):
        for x in data.batches(batch_size, shuffle=False):
            q = model.posterior(x)
            if hasattr(q, "first") and hasattr(q, "second"):  # q(z1|x) q(z2|z1)
                z1 = q.first.rsample(n_samples, generator)  # (S, batch, d1)
                layers = {"z1": q.first.mu, "z2": q.second(z1)[0].mean(0)}
            else:
                layers = {"z": model.encode(x)[0]}
            for name, mean in layers.items():
                means.setdefault(name, []).append(mean.double())
    result = {}
    for name, parts in means.items():
        activity = torch.cat(parts).var(dim=0, unbiased=True).cpu()
        result[name] = LayerActivity(activity, activity > threshold)
    return result
