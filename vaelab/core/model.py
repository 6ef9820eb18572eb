"""The VAE as a composition: recognition model q(z|x), decoder + likelihood p(x|z), prior p(z).

Each part can be swapped on its own (another encoder, another likelihood, a learnable prior);
``vaelab.models.config`` names the standard combinations (``VAEConfig``, ``build_vae``) so a checkpoint
can rebuild them, and ``vaelab.core.conveniences`` adds the methods the chapters use to look at a model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .conveniences import VAEConveniences, with_prior
from .generative import Likelihood, StandardNormalPrior
from .recognition import DiagonalGaussian


class VAE(VAEConveniences, nn.Module):
    """p(z) p(x|z) with recognition model q(z|x), for flattened data x: (batch, D).

    encoder: x -> (mu, logvar); decoder: z -> likelihood parameters; likelihood: log p(x|z);
    prior: log p(z) and samples. The objectives (ELBO, importance-weighted bound) live in
    ``vaelab.core.objectives``; this class only holds the parts (plus ``VAEConveniences``: posterior_mean,
    reconstruct, decode_mean, interpolate, device, latent_dim).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        prior: nn.Module | None = None,
        config: Any = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        latent_dim = getattr(decoder, "latent_dim", None) or encoder.latent_dim
        self.prior = with_prior(self, prior, latent_dim, StandardNormalPrior)  # N(0, I) unless given
        self.config = config

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters (mu, logvar) of q(z|x), each (batch, latent_dim)."""
        return self.encoder(x)

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z|x) for x: (batch, D): the encoder's own ``posterior(x)`` where it has one (a flow,
        ``vaelab.models.flows.PlanarFlowEncoder``), else the diagonal Gaussian of its (mu, logvar)."""
        own = getattr(self.encoder, "posterior", None)
        return own(x) if own is not None else DiagonalGaussian(*self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters for z: (..., latent_dim) -> (..., D)."""
        return self.decoder(z)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the model: z ~ p(z), then E[x|z] (mean=True) or x ~ p(x|z). (n, D)."""
        params = self.decode(self.prior.sample(n, generator=generator))
        return self.likelihood.mean(params) if mean else self.likelihood.sample(params, generator)
