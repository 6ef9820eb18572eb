"""What a trained VAE is asked for in the chapters beyond its objective: the posterior mean as a
2-D embedding, reconstructions, decoded means of given codes, interpolations, its device and latent
size. ``vaelab.VAE`` inherits these methods; they need the model's ``encode``, ``decode``,
``likelihood`` and ``prior``. ``LatentModel`` (latent_dim, device) and ``with_prior`` serve every model
that holds a prior: the VAE, the conditional VAE and its views."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .validation import check_model_input, check_positive_int, check_tensor

__all__ = ["LatentModel", "VAEConveniences", "with_prior"]


def with_prior(model: nn.Module, prior: nn.Module | None, latent_dim: int, default: type) -> nn.Module:
    """``prior``, or ``default(latent_dim)`` (N(0, I)) when it is None, moved to the device and dtype of
    ``model``'s parameters so that its draws match the networks'."""
    prior = prior if prior is not None else default(latent_dim)
    param = next(model.parameters(), None)
    return prior if param is None else prior.to(device=param.device, dtype=param.dtype)


class LatentModel:
    """``latent_dim`` (the prior's) and ``device`` (the parameters') of a model that holds ``prior``."""

    prior: Any

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device  # type: ignore[attr-defined]


class VAEConveniences(LatentModel):
    """Convenience methods of ``vaelab.VAE`` (a mix-in: it has no state of its own)."""

    @torch.no_grad()
    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """E_q[z|x] = mu(x), (batch, latent_dim): the usual 2-D embedding for plots."""
        return self.encode(check_model_input(self, x))[0]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z = mu(x)], the decoder's mean image for the posterior mean, (batch, D)."""
        return self.likelihood.mean(self.decode(self.posterior_mean(x)))

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z] for given latent codes z: (..., latent_dim) -> (..., D)."""
        return self.likelihood.mean(self.decode(z))

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
        """Decoded means along the straight line between the posterior means of two images.

        x_a, x_b: (D,) or (1, D). Returns (steps, D), from x_a's code to x_b's code.
        """
        check_positive_int("steps", steps)
        check_tensor("x_a", x_a, min_ndim=1)
        check_tensor("x_b", x_b, min_ndim=1)
        if x_a.numel() != x_b.numel():
            raise ValueError(
                f"x_a has shape {tuple(x_a.shape)} but x_b has shape {tuple(x_b.shape)}; "
                "pass two single images of the same size, e.g. data.images[0] and data.images[1]."
            )
        codes = self.posterior_mean(torch.stack([x_a.reshape(-1), x_b.reshape(-1)]))
        t = torch.linspace(0.0, 1.0, steps, device=codes.device).unsqueeze(1)
        return self.decode_mean((1 - t) * codes[0] + t * codes[1])
