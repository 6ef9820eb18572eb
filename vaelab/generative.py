"""Decoders of the generative model p_theta(x|z).

A decoder maps latent codes z: (..., batch, latent_dim) to the parameters of the likelihood,
(..., batch, output_dim): Bernoulli logits or Gaussian means. It knows nothing about q(z|x);
which distribution its output parameterizes is the likelihood's business (likelihoods.py).
"""

from __future__ import annotations

import torch
from torch import nn

from .validation import check_fits_module, check_positive_int, check_tensor

__all__ = ["MLPDecoder", "ConvDecoder"]


class MLPDecoder(nn.Module):
    """latent_dim -> hidden_dim (ReLU) -> output_dim, the classic Kingma-Welling decoder."""

    def __init__(self, latent_dim: int = 20, hidden_dim: int = 400, output_dim: int = 784) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        check_positive_int("hidden_dim", hidden_dim)
        self.hidden = nn.Linear(latent_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, output_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (..., latent_dim) -> likelihood parameters (..., output_dim)."""
        _check_latent(z, self.latent_dim)
        check_fits_module("z", z, self.out.weight, "decoder")
        return self.out(torch.relu(self.hidden(z)))


class ConvDecoder(nn.Module):
    """latent_dim -> dense -> 64 x side/4 x side/4 -> transposed convs -> 1 x side x side,
    flattened to (..., side * side)."""

    def __init__(self, latent_dim: int = 20, side: int = 28, hidden_dim: int = 256) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        if side % 4:
            raise ValueError(f"side must be divisible by 4, got {side}; MNIST uses side=28.")
        self.side = side
        self.output_dim = side * side
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 64 * (side // 4) ** 2), nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_latent(z, self.latent_dim)
        check_fits_module("z", z, self.dense[0].weight, "decoder")
        lead = z.shape[:-1]
        h = self.dense(z.reshape(-1, self.latent_dim)).view(-1, 64, self.side // 4, self.side // 4)
        return self.deconv(h).view(*lead, self.output_dim)


def _check_latent(z: torch.Tensor, latent_dim: int) -> None:
    check_tensor("z", z, min_ndim=1)
    if z.shape[-1] != latent_dim:
        raise ValueError(
            f"z has shape {tuple(z.shape)} but the decoder expects latent_dim={latent_dim} "
            "in its last dimension."
        )
