"""Priors beyond N(0, I): p(z) is part of the generative model, and it can be learned (chapter 12).

A prior is a module with ``log_prob(z)`` (z: (..., latent_dim) -> (...)), ``sample(n, device, generator)``
and ``latent_dim``; every bound in vaelab evaluates the model's own prior, and ``fit`` trains its
parameters with the rest of the model. Where KL(q(z|x) || p(z)) has a closed form it is registered here
with ``vaelab.core.kl.register_kl``; the ELBO then uses it (kl="auto"), and the Monte Carlo estimate
otherwise.

``MixtureOfGaussiansPrior`` (a learnable mixture of K diagonal Gaussians) and ``VampPrior`` (the mixture
of the model's own q(z|x) at learned pseudo-inputs) have no closed-form KL.

``GaussianPrior``: p(z) = N(m, diag(s^2)) with learnable m and log s^2 (initialized to N(0, I)), and

    KL(N(mu, diag(sigma^2)) || N(m, diag(s^2)))
        = 1/2 sum_j [log s_j^2 - log sigma_j^2 + (sigma_j^2 + (mu_j - m_j)^2) / s_j^2 - 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.kl import register_kl
from ..core.recognition import DiagonalGaussian, diagonal_gaussian_log_prob, gaussian_log_density
from ..core.validation import check_positive_int

__all__ = ["GaussianPrior", "MixtureOfGaussiansPrior", "VampPrior", "PRIORS"]

PRIORS = ("standard_normal", "gaussian", "mixture", "vamp")  # the names VAEConfig and the CLI know


class GaussianPrior(nn.Module):
    """p(z) = N(m, diag(exp(logvar))) over ``latent_dim`` dimensions, with m and logvar learned
    (``learnable=True``, the default) or fixed; it starts as N(0, I)."""

    def __init__(self, latent_dim: int, learnable: bool = True) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.learnable = learnable
        mean, logvar = torch.zeros(latent_dim), torch.zeros(latent_dim)
        if learnable:
            self.mean, self.logvar = nn.Parameter(mean), nn.Parameter(logvar)
        else:
            self.register_buffer("mean", mean)
            self.register_buffer("logvar", logvar)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z: (..., latent_dim). Returns (...)."""
        return diagonal_gaussian_log_prob(z, self.mean, self.logvar)

    def log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z_j | m_j, s_j^2) of each dimension (p factorizes), (..., latent_dim)."""
        return gaussian_log_density(z, self.mean, self.logvar)

    def sample(
        self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n draws z = m + s * eps, (n, latent_dim), on ``device`` (default: the prior's) in its dtype."""
        check_positive_int("n", n)
        device = self.mean.device if device is None else device
        eps = torch.randn(n, self.latent_dim, device=device, dtype=self.mean.dtype, generator=generator)
        return self.mean.to(device) + torch.exp(0.5 * self.logvar.to(device)) * eps

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, learnable={self.learnable}"


@register_kl(DiagonalGaussian, GaussianPrior)
def _kl_diagonal_gaussian_gaussian(q: DiagonalGaussian, p: GaussianPrior) -> torch.Tensor:
    """The closed form above, (batch, latent_dim)."""
    log_ratio = q.logvar - p.logvar  # log sigma_j^2 / s_j^2; expm1(r) - r has no cancellation near r = 0
    return 0.5 * (torch.expm1(log_ratio) - log_ratio + (q.mu - p.mean).pow(2) * torch.exp(-p.logvar))


class MixtureOfGaussiansPrior(nn.Module):
    """p(z) = sum_k pi_k N(z | m_k, diag(exp(logvar_k))) over ``latent_dim`` dimensions with K = ``n_components``
    learnable components: mixing logits (pi = softmax(logits), equal at the start), means m: (K, latent_dim)
    drawn from N(0, I) at construction (torch's global generator, as nn.Linear's weights) and log-variances
    (zero at the start).

        log p(z) = logsumexp_k [log pi_k + log N(z | m_k, diag(exp(logvar_k)))],

    a log-sum-exp over the components: exact and finite however far z lies from every component (the
    naive log of a sum of densities underflows to log 0 = -inf beyond about 38 standard deviations in
    float32). KL(q(z|x) || p(z)) has no closed form: kl="auto" uses the Monte Carlo estimate.
    """

    def __init__(self, latent_dim: int, n_components: int = 10) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.n_components = check_positive_int("n_components", n_components)
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.means = nn.Parameter(torch.randn(n_components, latent_dim))
        self.logvars = nn.Parameter(torch.zeros(n_components, latent_dim))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z: (..., latent_dim). Returns (...)."""
        log_weights = torch.log_softmax(self.logits, dim=0)  # log pi_k, (K,)
        per_component = diagonal_gaussian_log_prob(z.unsqueeze(-2), self.means, self.logvars)  # (..., K)
        return torch.logsumexp(log_weights + per_component, dim=-1)

    def sample(
        self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n draws: a component k ~ Categorical(pi), then z = m_k + exp(logvar_k / 2) * eps. (n, latent_dim),
        on ``device`` (default: the prior's) in its dtype."""
        check_positive_int("n", n)
        device = self.means.device if device is None else device
        weights = torch.softmax(self.logits.detach(), dim=0).to(device)
        k = torch.multinomial(weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, device=device, dtype=self.means.dtype, generator=generator)
        return self.means.to(device)[k] + torch.exp(0.5 * self.logvars.to(device)[k]) * eps

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, n_components={self.n_components}"


class VampPrior(nn.Module):
    """The VampPrior (Tomczak and Welling 2018): p(z) = (1/K) sum_k q(z | u_k), the mixture of the model's own
    recognition model q(z|x) = N(mu(x), diag(exp(logvar(x)))) at K = ``n_pseudo_inputs`` learned
    pseudo-inputs u_k: (K, input_dim), the "variational mixture of posteriors" that approximates the optimal
    prior, the aggregate posterior (1/N) sum_n q(z | x_n).

    As in the paper's code (jmtomczak/vae_vampprior): the pseudo-inputs are u = hardtanh(U), kept in the
    pixels' range [0, 1], with U: (K, input_dim) learned and initialized from N(0.05, 0.01^2) (its MNIST
    settings; the paper uses K = 500). log p(z) is a log-sum-exp over the K components (stable for z far
    from all of them). KL(q(z|x) || p(z)) has no closed form: kl="auto" uses the Monte Carlo estimate.

    The encoder is *referenced*, not registered as a submodule: the VAE owns it (``model.encoder``), so
    ``state_dict`` and ``parameters()`` hold its weights once (a second registration would write them
    twice into every checkpoint and count them twice in per-module parameter lists), and moving or
    copying the VAE (``.to``, ``.double``, ``copy.deepcopy``) moves the one encoder this prior uses.
    Build it with the encoder the VAE will hold: ``VAE(encoder, decoder, likelihood, VampPrior(encoder))``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_pseudo_inputs: int = 500,
        input_dim: int | None = None,
        init_mean: float = 0.05,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module) or not hasattr(encoder, "latent_dim"):
            raise TypeError(
                f"VampPrior needs the model's encoder (an nn.Module x -> (mu, logvar) with latent_dim), "
                f"got {type(encoder).__name__}; pass the encoder the VAE holds, e.g. VampPrior(model.encoder)."
            )
        input_dim = getattr(encoder, "input_dim", None) if input_dim is None else input_dim
        if input_dim is None:
            raise ValueError("VampPrior needs input_dim (the encoder has no input_dim attribute); pass input_dim=D.")
        self._encoder = (encoder,)  # a tuple: nn.Module does not register it as a submodule (see above)
        self.latent_dim = check_positive_int("latent_dim", encoder.latent_dim)
        self.n_pseudo_inputs = check_positive_int("n_pseudo_inputs", n_pseudo_inputs)
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.pseudo_inputs_raw = nn.Parameter(init_mean + init_std * torch.randn(n_pseudo_inputs, input_dim))

    @property
    def encoder(self) -> nn.Module:
        """The recognition network this prior evaluates (the model's own, not a copy)."""
        return self._encoder[0]

    def pseudo_inputs(self) -> torch.Tensor:
        """u_k = hardtanh(U_k) in [0, 1], (K, input_dim)."""
        return torch.nn.functional.hardtanh(self.pseudo_inputs_raw, 0.0, 1.0)

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | u_k), each (K, latent_dim)."""
        return self.encoder(self.pseudo_inputs())

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = logsumexp_k log q(z | u_k) - log K for z: (..., latent_dim). Returns (...)."""
        mu, logvar = self.components()
        per_component = diagonal_gaussian_log_prob(z.unsqueeze(-2), mu, logvar)  # (..., K)
        return torch.logsumexp(per_component, dim=-1) - math.log(self.n_pseudo_inputs)

    def sample(
        self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n draws: k uniform in 1..K, then z ~ q(z | u_k). (n, latent_dim), on ``device`` (default: the prior's)."""
        check_positive_int("n", n)
        mu, logvar = self.components()
        device = mu.device if device is None else device
        k = torch.randint(self.n_pseudo_inputs, (n,), device=mu.device, generator=generator)
        eps = torch.randn(n, self.latent_dim, device=mu.device, dtype=mu.dtype, generator=generator)
        return (mu[k] + torch.exp(0.5 * logvar[k]) * eps).to(device)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, n_pseudo_inputs={self.n_pseudo_inputs}, input_dim={self.input_dim}"
