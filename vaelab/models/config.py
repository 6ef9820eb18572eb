"""The standard combinations a checkpoint can rebuild: ``VAEConfig`` names one (architecture,
likelihood, sizes) as plain data stored in checkpoints, ``build_vae`` builds the ``VAE`` it describes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from ..core.generative import BernoulliLikelihood, Likelihood, MLPDecoder, StandardNormalPrior
from ..core.model import VAE
from ..core.recognition import GaussianEncoder, MLPEncoder
from ..core.validation import check_positive_int
from .architectures import ConvDecoder, ConvEncoder
from .likelihoods import GAUSSIAN_LOGVAR_MAX, GaussianLikelihood

__all__ = ["VAEConfig", "build_vae", "ARCHITECTURES", "LIKELIHOODS", "GAUSSIAN_LOGVAR_MIN"]

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
