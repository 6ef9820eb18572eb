"""vaelab: the companion package of the book "Variational Autoencoders, executable".

The model and its objective read in four files, in this order: ``recognition`` (q(z|x): the
encoders, the reparameterization trick, log q and its closed-form KL to the prior), ``generative``
(p(z), the decoders and the Bernoulli likelihood p(x|z), whose softplus is ``softplus``), ``model``
(the VAE that holds them) and ``objectives`` (the ELBO, the importance-weighted bound L_k, the
training loss). ``likelihoods`` adds chapter 6's Gaussian likelihood; ``prior``, ``reparameterize``
and ``kl`` keep the book's names importable (``kl`` adds the Monte Carlo KL). Off the reading path:
``config`` (``VAEConfig``, ``build_vae``: the standard combinations a checkpoint can rebuild),
``architectures`` (the convolutional encoder and decoder) and ``conveniences`` (the VAE's methods
for looking at a model: reconstruct, posterior_mean, interpolate). ``tests/test_reading_path.py``
keeps the four files short.

Around them: ``evaluation`` (log p(x) over a data set, with the fast, exact shortcut of
``bernoulli_mlp`` for the MLP decoder with a Bernoulli likelihood), ``validation`` (the checks of
the public entry points), ``linear_gaussian`` (the exact model), ``data`` (MNIST), ``training``
(fit: the loop a student reads), ``runs`` (its conveniences: checkpoints, resume and the comparison of
runs, RNG state, divergence guards, locking), ``messages``, ``estimators`` (the IWAE training loss and
its gradient estimators, gradient signal-to-noise), ``conditional`` (the conditional VAE),
``flows`` (planar flows on q(z|x)), ``checkpoint``, ``diagnostics``, ``plots``, ``gradients``,
``autoencoder`` and ``checks`` (homework checks).
"""

from __future__ import annotations

from .core.generative import (
    BernoulliLikelihood,
    MLPDecoder,
    StandardNormalPrior,
    bernoulli_log_prob,
    standard_normal_log_prob,
)
from .core.kl import diagonal_gaussian_log_prob, kl_monte_carlo, kl_per_dimension, kl_standard_normal
from .core.model import VAE
from .core.objectives import ELBOTerms, elbo, iwae_bound, log_importance_weights, training_loss
from .core.recognition import MLPEncoder, reparameterize
from .core.softplus import softplus
from .data import DATA_ENV, ImageData, data_root, load_mnist, verify_mnist_files
from .diagnostics import encode_dataset, latent_summary, rate_distortion
from .estimators.evaluation import log_likelihood_estimate
from .models.architectures import ConvDecoder, ConvEncoder
from .models.config import VAEConfig, build_vae
from .models.likelihoods import GaussianLikelihood, gaussian_log_prob
from .models.linear_gaussian import AffineEncoder, LinearGaussianModel
from .notebook import benchmark_results, quick_mode, setup
from .train.checkpoint import load_checkpoint, load_model, restore_model, save_checkpoint
from .train.training import History, NonFiniteLossError, TrainingDivergedError, evaluate_elbo, fit
from .utils.devices import resolve_device

__version__ = "0.1.0"

__all__ = [
    "AffineEncoder",
    "BernoulliLikelihood",
    "ConvDecoder",
    "ConvEncoder",
    "DATA_ENV",
    "ELBOTerms",
    "GaussianLikelihood",
    "History",
    "ImageData",
    "LinearGaussianModel",
    "MLPDecoder",
    "MLPEncoder",
    "NonFiniteLossError",
    "StandardNormalPrior",
    "VAE",
    "VAEConfig",
    "bernoulli_log_prob",
    "build_vae",
    "data_root",
    "diagonal_gaussian_log_prob",
    "elbo",
    "encode_dataset",
    "evaluate_elbo",
    "fit",
    "gaussian_log_prob",
    "iwae_bound",
    "kl_monte_carlo",
    "kl_per_dimension",
    "kl_standard_normal",
    "latent_summary",
    "load_checkpoint",
    "load_mnist",
    "load_model",
    "log_importance_weights",
    "log_likelihood_estimate",
    "rate_distortion",
    "reparameterize",
    "resolve_device",
    "restore_model",
    "save_checkpoint",
    "standard_normal_log_prob",
    "training_loss",
    "verify_mnist_files",
    "quick_mode",
    "benchmark_results",
    "setup",
    "softplus",
    "TrainingDivergedError",
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
