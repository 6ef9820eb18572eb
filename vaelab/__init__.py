"""vaelab: the companion package of the book "Variational Autoencoders, executable".

The package is laid out by what a reader looks for; every import points down this list:

* ``vaelab.core``: the model and its objectives, the reading path, in the book's order:
  ``recognition`` (q(z|x), the reparameterization trick), ``generative`` (p(z) = N(0, I), the
  decoders, the Bernoulli likelihood), ``kl`` (KL(q || p) looked up by the pair of types), ``model``
  (the VAE that holds the parts) and ``objectives`` (the ELBO, the importance-weighted bound L_k, the
  training loss). Beside them: ``softplus``, ``validation``, ``conveniences``.
* ``vaelab.data``: MNIST and Fashion-MNIST as tensors in memory (``ImageData``).
* ``vaelab.models``: parts and models built on the core: learnable ``priors``, ``likelihoods`` for
  grey pixels, ``architectures``, ``config`` (``build_vae``), ``autoencoder``, ``linear_gaussian``,
  ``conditional``, ``flows``, ``hierarchical`` (two stochastic layers).
* ``vaelab.estimators``: log p(x) over a data set (``evaluation``, with the ``bernoulli_mlp``
  shortcut), training on L_k and its gradient estimators (``iwae``), chapter 5's ``gradients``.
* ``vaelab.train``: ``fit`` and its ``History`` (``training``), resuming (``runs``), ``checkpoint``.
* ``vaelab.checks``: homework checks; ``diagnostics``, ``plots``, ``notebook`` and ``cli`` on top.
* ``vaelab.utils``: messages, devices, progress bars (no vaelab imports).

The names below are the public API (``vaelab.X``); ``tests/test_layout.py`` holds the layout.
"""

from __future__ import annotations

from .core.generative import (
    BernoulliLikelihood,
    MLPDecoder,
    StandardNormalPrior,
    bernoulli_log_prob,
    standard_normal_log_prob,
)
from .core.kl import closed_form_kl, kl_per_dimension, kl_standard_normal, register_kl
from .core.model import VAE
from .core.objectives import KL_ESTIMATORS, ELBOTerms, elbo, iwae_bound, log_importance_weights, training_loss
from .core.recognition import MLPEncoder, diagonal_gaussian_log_prob, reparameterize
from .core.softplus import softplus
from .data import (
    DATA_ENV,
    ImageData,
    data_root,
    load_fashion_mnist,
    load_mnist,
    verify_fashion_mnist_files,
    verify_mnist_files,
)
from .diagnostics import active_units, encode_dataset, latent_summary, rate_distortion
from .estimators import IWAEObjective
from .estimators.evaluation import evaluate_elbo, log_likelihood_estimate
from .estimators.gradients import kl_monte_carlo
from .models.architectures import ConvDecoder, ConvEncoder
from .models.config import VAEConfig, build_vae
from .models.continuous_bernoulli import ContinuousBernoulliLikelihood
from .models.dequantization import Dequantized, bits_per_dim, dequantize
from .models.discretized_logistic import DiscretizedLogisticLikelihood, DiscretizedLogisticMixtureLikelihood
from .models.likelihoods import GaussianLikelihood, gaussian_log_prob
from .models.linear_gaussian import AffineEncoder, LinearGaussianModel
from .models.priors import GaussianPrior, MixtureOfGaussiansPrior, VampPrior
from .notebook import benchmark_results, glue, quick_mode, setup
from .train.checkpoint import load_checkpoint, load_model, restore_model, save_checkpoint
from .train.training import ELBO, History, NonFiniteLossError, TrainingDivergedError, fit
from .utils.devices import resolve_device

__version__ = "0.1.0"

__all__ = [
    "active_units",
    "AffineEncoder",
    "benchmark_results",
    "bernoulli_log_prob",
    "BernoulliLikelihood",
    "bits_per_dim",
    "build_vae",
    "closed_form_kl",
    "ContinuousBernoulliLikelihood",
    "ConvDecoder",
    "ConvEncoder",
    "DATA_ENV",
    "data_root",
    "dequantize",
    "Dequantized",
    "diagonal_gaussian_log_prob",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixtureLikelihood",
    "ELBO",
    "elbo",
    "ELBOTerms",
    "encode_dataset",
    "evaluate_elbo",
    "fit",
    "gaussian_log_prob",
    "GaussianLikelihood",
    "GaussianPrior",
    "History",
    "ImageData",
    "iwae_bound",
    "IWAEObjective",
    "KL_ESTIMATORS",
    "kl_monte_carlo",
    "kl_per_dimension",
    "kl_standard_normal",
    "latent_summary",
    "LinearGaussianModel",
    "load_checkpoint",
    "load_fashion_mnist",
    "load_mnist",
    "load_model",
    "log_importance_weights",
    "log_likelihood_estimate",
    "MLPDecoder",
    "MixtureOfGaussiansPrior",
    "MLPEncoder",
    "NonFiniteLossError",
    "glue",
    "quick_mode",
    "rate_distortion",
    "register_kl",
    "reparameterize",
    "resolve_device",
    "restore_model",
    "save_checkpoint",
    "setup",
    "softplus",
    "standard_normal_log_prob",
    "StandardNormalPrior",
    "training_loss",
    "TrainingDivergedError",
    "VAE",
    "VampPrior",
    "VAEConfig",
    "verify_fashion_mnist_files",
    "verify_mnist_files",
]


def __getattr__(name: str):
    """Import submodules on first use, so ``vaelab.plots`` and ``vaelab.checks`` work after
    ``import vaelab`` without paying for matplotlib at import time."""
    import importlib

    if name.startswith("_"):
        raise AttributeError(name)
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'vaelab' has no attribute {name!r}") from None
