"""Estimators built from a trained model's parts: of log p(x), and of gradients.

``evaluation`` (log p(x) over a data set by importance sampling, chapter 8; the mean test ELBO),
``bernoulli_mlp`` (its exact shortcut for the MLP decoder with a Bernoulli likelihood), ``iwae``
(training on the importance-weighted bound with the "reparam", "dreg" and "stl" gradient estimators;
gradient signal-to-noise, chapter 10) and ``gradients`` (score-function and reparameterized gradients
of chapter 5).
"""

from .iwae import ESTIMATORS, GradientSNR, IWAEObjective, IWAETerms, gradient_snr, iwae_loss

__all__ = ["ESTIMATORS", "GradientSNR", "IWAEObjective", "IWAETerms", "gradient_snr", "iwae_loss"]
