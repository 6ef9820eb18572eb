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
from ..core.validation import check_choice, check_integer, check_positive_int
from .architectures import ConvDecoder, ConvEncoder
from .continuous_bernoulli import ContinuousBernoulliLikelihood
from .dequantization import Dequantized
from .discretized_logistic import DiscretizedLogisticLikelihood, DiscretizedLogisticMixtureLikelihood
from .hierarchical import BURDA_TWO_LAYER, two_layer_parts
from .likelihoods import GAUSSIAN_LOGVAR_MAX, GaussianLikelihood
from .priors import PRIORS, GaussianPrior, MixtureOfGaussiansPrior, VampPrior

__all__ = [
    "VAEConfig",
    "build_vae",
    "ARCHITECTURES",
    "LIKELIHOODS",
    "GREY_LIKELIHOODS",
    "PRIORS",
    "GAUSSIAN_LOGVAR_MIN",
]

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = (
    "bernoulli",
    "gaussian",
    "continuous_bernoulli",
    "dequantized_gaussian",
    "dequantized_continuous_bernoulli",
    "discretized_logistic",
    "logistic_mixture",
)
# the likelihoods of grey pixels (chapter 14): their data are the 8-bit levels k/255, never binarized
GREY_LIKELIHOODS = LIKELIHOODS[2:]
GAUSSIAN_LOGVAR_MIN = -9.0


@dataclass(frozen=True)
class VAEConfig:
    """The settings that define a standard vaelab VAE (stored in checkpoints).

    Images are side x side pixels (D = side^2 inputs). architecture: "mlp" (D-hidden_dim-latent_dim
    with ReLU; the 784-400-20 sizes of PyTorch's examples VAE) or "conv" (two convolutions and a dense
    layer of hidden_dim units each way). likelihood: "bernoulli" (decoder outputs logits) or "gaussian"
    (decoder outputs means, with variance exp(gaussian_logvar), gaussian_logvar in [-9, 10], fixed
    unless learn_variance). prior: "standard_normal" (N(0, I)) or "gaussian" (a learnable
    N(m, diag(s^2)), ``vaelab.models.priors.GaussianPrior``), "mixture" (a learnable mixture of
    prior_components Gaussians, ``MixtureOfGaussiansPrior``) or "vamp" (the VampPrior over pseudo_inputs
    learned pseudo-inputs, ``VampPrior``). layers: 1, or 2 for Burda et al.'s two-stochastic-layer model
    (``vaelab.models.hierarchical``: 784-(200-200 tanh)-100 and 100-(100-100 tanh)-50, decoders mirrored;
    its sizes are fixed, so latent_dim and hidden_dim keep their defaults, and p(z2) is N(0, I)).

    The likelihoods of grey pixels (chapter 14; data: the 8-bit levels k/255, not binarized):
    "continuous_bernoulli" (a density on [0, 1]), "dequantized_gaussian" and
    "dequantized_continuous_bernoulli" (those densities made models of the 256 levels by uniform
    dequantization, ``vaelab.Dequantized``), "discretized_logistic" and "logistic_mixture" (of
    mixture_components logistics). The decoder outputs ``likelihood.params_per_pixel * D`` numbers.
    """

    latent_dim: int = 20
    hidden_dim: int = 400
    architecture: str = "mlp"
    likelihood: str = "bernoulli"
    gaussian_logvar: float = 0.0
    learn_variance: bool = False
    side: int = 28
    prior: str = "standard_normal"
    mixture_components: int = 5
    layers: int = 1
    prior_components: int = 10
    pseudo_inputs: int = 500

    def __post_init__(self) -> None:
        check_positive_int("latent_dim", self.latent_dim)
        check_positive_int("hidden_dim", self.hidden_dim)
        check_positive_int("side", self.side)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        check_choice("prior", self.prior, PRIORS)
        check_positive_int("mixture_components", self.mixture_components)
        self._check_prior_and_layers()
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

    def _check_prior_and_layers(self) -> None:
        """The prior's sizes and the number of stochastic layers, and the combinations they allow."""
        check_integer("layers", self.layers, low=1, high=2)
        check_positive_int("prior_components", self.prior_components)
        check_positive_int("pseudo_inputs", self.pseudo_inputs)
        for name, owner in (("prior_components", "mixture"), ("pseudo_inputs", "vamp")):
            if getattr(self, name) != _DEFAULTS[name] and self.prior != owner:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} sizes prior='{owner}', but prior={self.prior!r}; "
                    f"use prior='{owner}', or leave {name} at its default ({_DEFAULTS[name]})."
                )
        if self.layers == 2:
            required = {
                "architecture": "mlp",
                "prior": "standard_normal",
                **{n: _DEFAULTS[n] for n in ("latent_dim", "hidden_dim")},
            }
            given = [f"{n}={getattr(self, n)!r}" for n, value in required.items() if getattr(self, n) != value]
            if given:
                raise ValueError(
                    f"layers=2 is Burda et al.'s two-stochastic-layer MLP with p(z2) = N(0, I) and fixed sizes "
                    f"(784-200-200-100, 100-100-100-50), so {', '.join(given)} does not apply; use "
                    "architecture='mlp', prior='standard_normal' and the default latent_dim and hidden_dim, "
                    "or layers=1."
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
    likelihood = _likelihood(config)
    per_pixel = getattr(likelihood, "params_per_pixel", 1)  # the decoder outputs per_pixel * D numbers
    if config.layers == 2:  # p(z2) p(z1|z2) p(x|z1), q(z1|x) q(z2|z1): vaelab.models.hierarchical
        parts = two_layer_parts(pixels, per_pixel * pixels, **BURDA_TWO_LAYER)
        return VAE(parts[0], parts[1], likelihood, parts[2], config=config)
    if config.architecture == "mlp":
        encoder: GaussianEncoder = MLPEncoder(pixels, config.hidden_dim, config.latent_dim)
        decoder: nn.Module = MLPDecoder(config.latent_dim, config.hidden_dim, per_pixel * pixels)
    else:
        encoder = ConvEncoder(config.latent_dim, config.side, config.hidden_dim)
        decoder = ConvDecoder(config.latent_dim, config.side, config.hidden_dim, channels=per_pixel)
    return VAE(encoder, decoder, likelihood, _prior(config, encoder, pixels), config=config)


def _prior(config: VAEConfig, encoder: nn.Module, pixels: int) -> nn.Module:
    """The prior a config names; the VampPrior evaluates the model's own encoder (referenced, not copied)."""
    if config.prior == "gaussian":
        return GaussianPrior(config.latent_dim)
    if config.prior == "mixture":
        return MixtureOfGaussiansPrior(config.latent_dim, config.prior_components)
    if config.prior == "vamp":
        return VampPrior(encoder, config.pseudo_inputs, input_dim=pixels)
    return StandardNormalPrior(config.latent_dim)


def _likelihood(config: VAEConfig) -> Likelihood:
    """The likelihood a config names."""
    name = config.likelihood
    if name == "bernoulli":
        return BernoulliLikelihood()
    if name in ("gaussian", "dequantized_gaussian"):
        gaussian = GaussianLikelihood(config.gaussian_logvar, config.learn_variance, GAUSSIAN_LOGVAR_MIN)
        return gaussian if name == "gaussian" else Dequantized(gaussian)
    if name == "continuous_bernoulli":
        return ContinuousBernoulliLikelihood()
    if name == "dequantized_continuous_bernoulli":
        return Dequantized(ContinuousBernoulliLikelihood())
    if name == "discretized_logistic":
        return DiscretizedLogisticLikelihood()
    return DiscretizedLogisticMixtureLikelihood(config.mixture_components)


_DEFAULTS = {f.name: f.default for f in fields(VAEConfig)}
