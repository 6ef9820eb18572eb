"""Convolutional encoder and decoder for 1 x side x side images (chapter 9 swaps them in with
``build_vae(architecture="conv")``). Same interfaces as the MLPs of the reading path: the encoder
is a ``GaussianEncoder`` (x -> (mu, logvar)), the decoder maps z to the likelihood's parameters."""

from __future__ import annotations

import torch
from torch import nn

from ..core.recognition import GaussianEncoder
from ..core.validation import check_positive_int

__all__ = ["ConvEncoder", "ConvDecoder"]


class ConvEncoder(GaussianEncoder):
    """Convolutional encoder for 1 x side x side images (side divisible by 4):
    conv 32 (stride 2) -> conv 64 (stride 2) -> dense hidden_dim (ReLU) -> (mu, logvar)."""

    def __init__(self, latent_dim: int = 20, side: int = 28, hidden_dim: int = 256) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        if side % 4:
            raise ValueError(f"side must be divisible by 4, got {side}; MNIST uses side=28.")
        self.side = side
        self.input_dim = side * side
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * (side // 4) ** 2, check_positive_int("hidden_dim", hidden_dim)),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden_dim, 2 * latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.view(-1, 1, self.side, self.side))


class ConvDecoder(nn.Module):
    """latent_dim -> dense hidden_dim -> 64 x side/4 x side/4 -> transposed convs -> channels x side x side,
    flattened to (..., channels * side * side): one map per likelihood parameter of a pixel
    (``channels = likelihood.params_per_pixel``, 1 for the Bernoulli), map by map."""

    def __init__(self, latent_dim: int = 20, side: int = 28, hidden_dim: int = 256, channels: int = 1) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        if side % 4:
            raise ValueError(f"side must be divisible by 4, got {side}; MNIST uses side=28.")
        self.side = side
        self.channels = check_positive_int("channels", channels)
        self.output_dim = channels * side * side
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, check_positive_int("hidden_dim", hidden_dim)),
            nn.ReLU(),
            nn.Linear(hidden_dim, 64 * (side // 4) ** 2),
            nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (..., latent_dim) -> likelihood parameters (..., channels * side * side)."""
        h = self.dense(z.reshape(-1, self.latent_dim)).view(-1, 64, self.side // 4, self.side // 4)
        return self.deconv(h).view(*z.shape[:-1], self.output_dim)
