"""The standard combinations a checkpoint can rebuild: ``VAEConfig`` names one (architecture,
likelihood, sizes) as plain data stored in checkpoints, ``build_vae`` builds the ``VAE`` it describes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from ..core.generative import BernoulliLikelihood, Likelihood, MLPDecoder, StandardNormalPrior
from ..core.model import VAE
from ..core.recognition import GaussianEncoder, MLPEncoder
from ..core.validation import check_choice, check_positive_int
from .architectures import ConvDecoder, ConvEncoder
from .likelihoods import GAUSSIAN_LOGVAR_MAX, GaussianLikelihood
from .priors import PRIORS, GaussianPrior

__all__ = ["VAEConfig", "build_vae", "ARCHITECTURES", "LIKELIHOODS", "PRIORS", "GAUSSIAN_LOGVAR_MIN"]

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
GAUSSIAN_LOGVAR_MIN = -9.0


@dataclass(frozen=True)
class VAEConfig:
    """The settings that define a standard vaelab VAE (stored in checkpoints).

    Images are side x side pixels (D = side^2 inputs). architecture: "mlp" (D-hidden_dim-latent_dim
    with ReLU; the 784-400-20 sizes of PyTorch's examples VAE) or "conv" (two convolutions and a dense
    layer of hidden_dim units each way). likelihood: "bernoulli" (decoder outputs logits) or "gaussian"
    (decoder outputs means, with variance exp(gaussian_logvar), gaussian_logvar in [-9, 10], fixed
    unless learn_variance). prior: "standard_normal" (N(0, I)) or "gaussian" (a learnable
    N(m, diag(s^2)), ``vaelab.models.priors.GaussianPrior``).
    """

    latent_dim: int = 20
    hidden_dim: int = 400
    architecture: str = "mlp"
    likelihood: str = "bernoulli"
    gaussian_logvar: float = 0.0
    learn_variance: bool = False
    side: int = 28
    prior: str = "standard_normal"

    def __post_init__(self) -> None:
        check_positive_int("latent_dim", self.latent_dim)
        check_positive_int("hidden_dim", self.hidden_dim)
        check_positive_int("side", self.side)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        check_choice("prior", self.prior, PRIORS)
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

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> VAEConfig:
        """The config of these settings; an unknown name is an error that lists the known ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise TypeError(
                f"unknown VAE setting {', '.join(map(repr, unknown))}; the settings are {', '.join(known)} "
                "(images are side x side pixels, e.g. side=28 for MNIST)."
            )
        return cls(**settings)


def build_vae(config: VAEConfig | None = None, **overrides: Any) -> VAE:
    """Build the VAE a config describes, e.g. ``build_vae(latent_dim=2)``."""
    config = VAEConfig.from_settings({**(config.to_dict() if config else {}), **overrides})
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
    prior = (
        StandardNormalPrior(config.latent_dim)
        if config.prior == "standard_normal"
        else GaussianPrior(config.latent_dim)
    )
    return VAE(encoder, decoder, likelihood, prior, config=config)
