"""The linear-Gaussian latent-variable model (probabilistic PCA), where everything is exact.

    p(z) = N(0, I_d),   p(x|z) = N(W z + b, sigma^2 I_D)
    p(x) = N(b, W W^T + sigma^2 I_D)                                   (Bishop, PRML 12.2)
    p(z|x) = N(Sigma W^T (x - b) / sigma^2, Sigma),  Sigma = (I_d + W^T W / sigma^2)^{-1}

Because log p(x) and the true posterior are known in closed form, this model checks the ELBO,
the decomposition log p(x) = ELBO + KL(q || p(z|x)), the importance-weighted bound and the
log-likelihood estimator (chapter 3 and the tests). When W has orthogonal columns, Sigma is
diagonal, so the diagonal-Gaussian recognition model can represent the true posterior exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import MultivariateNormal

from ..core.generative import StandardNormalPrior
from ..core.model import VAE
from ..core.validation import check_positive_int, check_tensor
from .likelihoods import GaussianLikelihood

__all__ = ["LinearGaussianModel", "AffineEncoder", "LinearDecoder"]


class AffineEncoder(nn.Module):
    """q(z|x) = N(A x + c, diag(exp(logvar))) with a learnable, input-independent logvar.

    Exact for the linear-Gaussian model (its posterior mean is affine in x, its covariance
    constant). x: (batch, input_dim) -> (mu, logvar), each (batch, latent_dim).
    """

    def __init__(self, input_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.linear = nn.Linear(input_dim, latent_dim)
        self.logvar = nn.Parameter(torch.zeros(latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.linear(x)
        return mu, self.logvar.expand_as(mu)


class LinearDecoder(nn.Module):
    """z -> W z + b, the mean of p(x|z). z: (..., latent_dim) -> (..., data_dim)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.latent_dim = weight.shape[1]
        self.output_dim = weight.shape[0]
        self.linear = nn.Linear(self.latent_dim, self.output_dim, dtype=weight.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)


class LinearGaussianModel:
    """p(z) = N(0, I), p(x|z) = N(W z + b, sigma2 I). W: (D, d), b: (D,), sigma2 > 0."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, sigma2: float) -> None:
        check_tensor("weight", weight, ndim=2)
        check_tensor("bias", bias, ndim=1)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias has {bias.shape[0]} entries but weight has {weight.shape[0]} rows.")
        if not sigma2 > 0:
            raise ValueError(f"sigma2 must be > 0, got {sigma2}.")
        self.weight, self.bias, self.sigma2 = weight, bias, float(sigma2)
        self.data_dim, self.latent_dim = weight.shape

    @classmethod
    def random(
        cls,
        data_dim: int = 5,
        latent_dim: int = 2,
        sigma2: float = 0.5,
        orthogonal: bool = True,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> LinearGaussianModel:
        """A random model; orthogonal=True gives W orthogonal columns (diagonal posterior)."""
        check_positive_int("data_dim", data_dim)
        check_positive_int("latent_dim", latent_dim)
        if latent_dim > data_dim:
            raise ValueError(f"latent_dim ({latent_dim}) must not exceed data_dim ({data_dim}).")
        g = torch.Generator().manual_seed(seed)
        weight = torch.randn(data_dim, latent_dim, generator=g, dtype=dtype)
        if orthogonal:
            q, _ = torch.linalg.qr(weight)
            scales = 0.5 + 1.5 * torch.rand(latent_dim, generator=g, dtype=dtype)
            weight = q * scales
        bias = torch.randn(data_dim, generator=g, dtype=dtype)
        return cls(weight, bias, sigma2)

    def marginal(self) -> MultivariateNormal:
        """p(x) = N(b, W W^T + sigma2 I)."""
        cov = self.weight @ self.weight.T + self.sigma2 * torch.eye(self.data_dim, dtype=self.weight.dtype)
        return MultivariateNormal(self.bias, covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) for x: (batch, D); returns (batch,)."""
        return self.marginal().log_prob(x)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The true posterior p(z|x) = N(mean, cov): mean (batch, d), cov (d, d)."""
        eye = torch.eye(self.latent_dim, dtype=self.weight.dtype)
        cov = torch.linalg.inv(eye + self.weight.T @ self.weight / self.sigma2)
        mean = (x - self.bias) @ self.weight @ cov.T / self.sigma2
        return mean, cov

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws x ~ p(x) by ancestral sampling; (n, D)."""
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=self.weight.dtype)
        noise = torch.randn(n, self.data_dim, generator=generator, dtype=self.weight.dtype)
        return z @ self.weight.T + self.bias + math.sqrt(self.sigma2) * noise

    def exact_encoder(self) -> AffineEncoder:
        """The recognition model equal to the true posterior (needs a diagonal posterior)."""
        _, cov = self.posterior(self.bias[None])
        off_diagonal = cov - torch.diag(torch.diagonal(cov))
        if off_diagonal.abs().max() > 1e-9 * cov.abs().max():
            raise ValueError(
                "the true posterior has a full covariance, which a diagonal Gaussian "
                "cannot represent; use LinearGaussianModel.random(orthogonal=True)."
            )
        encoder = AffineEncoder(self.data_dim, self.latent_dim).to(self.weight.dtype)
        gain = cov @ self.weight.T / self.sigma2  # (d, D)
        with torch.no_grad():
            encoder.linear.weight.copy_(gain)
            encoder.linear.bias.copy_(-gain @ self.bias)
            encoder.logvar.copy_(torch.log(torch.diagonal(cov)))
        return encoder

    def vae(self, encoder: nn.Module | None = None) -> VAE:
        """This model as a vaelab VAE (Gaussian likelihood with fixed variance sigma2), with the
        given recognition model (default: the exact posterior)."""
        decoder = LinearDecoder(self.weight, self.bias).to(self.weight.dtype)
        likelihood = GaussianLikelihood(logvar=math.log(self.sigma2), learn_variance=False, logvar_min=-50.0).to(
            self.weight.dtype
        )
        with torch.no_grad():  # set in the model's dtype: a float32 round trip would cost 1e-8
            likelihood.raw_logvar.fill_(math.log(self.sigma2))
        return VAE(
            encoder if encoder is not None else self.exact_encoder(),
            decoder,
            likelihood,
            StandardNormalPrior(self.latent_dim),
        )
