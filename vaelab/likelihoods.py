"""Observation models p(x|z). They are part of the generative model and live in ``vaelab.generative``
(Bernoulli: sum_i [x_i l_i - softplus(l_i)] for logits l; Gaussian: sum_i log N(x_i | mu_i, exp(logvar)));
this module keeps the names importable from ``vaelab.likelihoods``."""

from __future__ import annotations

from .generative import BernoulliLikelihood, GaussianLikelihood, Likelihood, bernoulli_log_prob, gaussian_log_prob

__all__ = ["Likelihood", "BernoulliLikelihood", "GaussianLikelihood", "bernoulli_log_prob", "gaussian_log_prob"]
