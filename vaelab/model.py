"""The VAE as a composition: recognition model q(z|x), decoder + likelihood p(x|z), prior p(z).

Each part can be swapped on its own (another encoder, another likelihood, a learnable prior);
``VAEConfig`` + ``build_vae`` name the standard combinations so a checkpoint can rebuild them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .generative import (
    GAUSSIAN_LOGVAR_MAX,
    BernoulliLikelihood,
    ConvDecoder,
    GaussianLikelihood,
    Likelihood,
    MLPDecoder,
    StandardNormalPrior,
)
from .objectives import ELBOTerms, elbo
from .recognition import ConvEncoder, DiagonalGaussian, GaussianEncoder, MLPEncoder
from .validation import check_model_input, check_positive_int, check_tensor

__all__ = ["VAE", "VAEConfig", "build_vae"]

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
GAUSSIAN_LOGVAR_MIN = -9.0


@dataclass(frozen=True)
class VAEConfig:
    """The settings that define a standard vaelab VAE (stored in checkpoints).

    architecture: "mlp" (input_dim-hidden_dim-latent_dim with ReLU; the 784-400-20 sizes of PyTorch's
    examples VAE) or "conv" (two convolutions and a dense layer of hidden_dim units each way).
    likelihood: "bernoulli" (decoder outputs logits) or "gaussian" (decoder outputs means, with
    variance exp(gaussian_logvar), gaussian_logvar in [-9, 10], fixed unless learn_variance).
    """

    latent_dim: int = 20
    hidden_dim: int = 400
    architecture: str = "mlp"
    likelihood: str = "bernoulli"
    gaussian_logvar: float = 0.0
    learn_variance: bool = False
    side: int = 28

    def __post_init__(self) -> None:
        check_positive_int("latent_dim", self.latent_dim)
        check_positive_int("hidden_dim", self.hidden_dim)
        check_positive_int("side", self.side)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}.")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}.")
        logvar = self.gaussian_logvar
        if (
            isinstance(logvar, bool)
            or not isinstance(logvar, (int, float))
            or not (math.isfinite(logvar) and GAUSSIAN_LOGVAR_MIN <= logvar <= GAUSSIAN_LOGVAR_MAX)
        ):
            raise ValueError(
                f"gaussian_logvar must be a number in [{GAUSSIAN_LOGVAR_MIN:g}, {GAUSSIAN_LOGVAR_MAX:g}] "
                f"(a pixel variance from 1.2e-04 to 2.2e+04), got {logvar!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_vae(config: VAEConfig | None = None, **overrides: Any) -> VAE:
    """Build the VAE a config describes, e.g. ``build_vae(latent_dim=2)``."""
    config = VAEConfig(**{**(config.to_dict() if config else {}), **overrides})
    pixels = config.side * config.side
    if config.architecture == "mlp":
        encoder: GaussianEncoder = MLPEncoder(pixels, config.hidden_dim, config.latent_dim)
        decoder: nn.Module = MLPDecoder(config.latent_dim, config.hidden_dim, pixels)
    else:
        encoder = ConvEncoder(config.latent_dim, config.side, config.hidden_dim)
        decoder = ConvDecoder(config.latent_dim, config.side, config.hidden_dim)
    likelihood: Likelihood
    if config.likelihood == "bernoulli":
        likelihood = BernoulliLikelihood()
    else:
        likelihood = GaussianLikelihood(config.gaussian_logvar, config.learn_variance, GAUSSIAN_LOGVAR_MIN)
    return VAE(encoder, decoder, likelihood, StandardNormalPrior(config.latent_dim), config=config)


class VAE(nn.Module):
    """p(z) p(x|z) with recognition model q(z|x), for flattened data x: (batch, D).

    encoder: x -> (mu, logvar); decoder: z -> likelihood parameters; likelihood: log p(x|z);
    prior: log p(z) and samples. The objectives (ELBO, importance-weighted bound) live in
    ``vaelab.objectives``; this class only holds the parts and their convenience methods.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        prior: StandardNormalPrior | None = None,
        config: VAEConfig | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        latent_dim = getattr(decoder, "latent_dim", None) or encoder.latent_dim
        self.prior = prior if prior is not None else StandardNormalPrior(latent_dim)
        param = next(self.parameters(), None)
        if param is not None:  # the prior's draws in the networks' device and dtype
            self.prior.to(device=param.device, dtype=param.dtype)
        self.config = config

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters (mu, logvar) of q(z|x), each (batch, latent_dim)."""
        return self.encoder(x)

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z|x) for x: (batch, D): the encoder's own ``posterior(x)`` where it has one (a flow,
        ``vaelab.flows.PlanarFlowEncoder``), else the diagonal Gaussian of its (mu, logvar)."""
        own = getattr(self.encoder, "posterior", None)
        return own(x) if own is not None else DiagonalGaussian(*self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters for z: (..., latent_dim) -> (..., D)."""
        return self.decoder(z)

    @torch.no_grad()
    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """E_q[z|x] = mu(x), (batch, latent_dim): the usual 2-D embedding for plots."""
        return self.encode(check_model_input(self, x))[0]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z = mu(x)], the decoder's mean image for the posterior mean, (batch, D)."""
        return self.likelihood.mean(self.decode(self.posterior_mean(x)))

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the model: z ~ p(z), then E[x|z] (mean=True) or x ~ p(x|z). (n, D)."""
        params = self.decode(self.prior.sample(n, generator=generator))
        return self.likelihood.mean(params) if mean else self.likelihood.sample(params, generator)

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

    def forward(
        self, x: torch.Tensor, n_samples: int = 1, kl: str = "analytic", generator: torch.Generator | None = None
    ) -> ELBOTerms:
        """``model(x)`` is the ELBO of each row of x with its parts: ``vaelab.elbo(model, x, ...)``."""
        return elbo(self, x, n_samples=n_samples, kl=kl, generator=generator)
