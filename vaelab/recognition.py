"""Recognition models q_phi(z|x) = N(mu_phi(x), diag(sigma^2_phi(x))).

An encoder maps a batch of flattened images x: (batch, input_dim) to the posterior parameters
(mu, logvar), each (batch, latent_dim), with logvar = log sigma^2. It knows nothing about the
likelihood. The log-variance is clamped to [LOGVAR_MIN, LOGVAR_MAX] so that exp(logvar) can
neither overflow nor underflow to zero in float32 (a guard against a too-large learning rate).
"""

from __future__ import annotations

import torch
from torch import nn

from .validation import check_fits_module, check_positive_int, check_tensor

__all__ = ["GaussianEncoder", "MLPEncoder", "ConvEncoder", "LOGVAR_MIN", "LOGVAR_MAX"]

LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


class GaussianEncoder(nn.Module):
    """Base class: subclasses implement ``features(x) -> h`` and set ``self.head``, a Linear
    layer with 2 * latent_dim outputs split into (mu, logvar)."""

    input_dim: int
    latent_dim: int
    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, input_dim) -> (mu, logvar), each (batch, latent_dim)."""
        check_tensor("x", x, ndim=2)
        if x.shape[1] != self.input_dim:
            raise ValueError(
                f"x has {x.shape[1]} features per example but the encoder expects "
                f"input_dim={self.input_dim}; flatten 28x28 images to 784 with x.view(len(x), -1)."
            )
        check_fits_module("x", x, self.head.weight, "encoder")
        mu, logvar = self.head(self.features(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


class MLPEncoder(GaussianEncoder):
    """The classic encoder of Kingma and Welling (2013): input_dim -> hidden_dim (ReLU) ->
    (mu, logvar)."""

    def __init__(self, input_dim: int = 784, hidden_dim: int = 400, latent_dim: int = 20) -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        check_positive_int("hidden_dim", hidden_dim)
        self.hidden = nn.Linear(input_dim, hidden_dim)
        self.head = nn.Linear(hidden_dim, 2 * latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x))


class ConvEncoder(GaussianEncoder):
    """Convolutional encoder for 1 x side x side images (side divisible by 4):
    conv 32 (stride 2) -> conv 64 (stride 2) -> dense hidden_dim -> (mu, logvar)."""

    def __init__(self, latent_dim: int = 20, side: int = 28, hidden_dim: int = 256) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        if side % 4:
            raise ValueError(f"side must be divisible by 4, got {side}; MNIST uses side=28.")
        self.side = side
        self.input_dim = side * side
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * (side // 4) ** 2, hidden_dim), nn.ReLU(),
        )
        self.head = nn.Linear(hidden_dim, 2 * latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.view(-1, 1, self.side, self.side))
