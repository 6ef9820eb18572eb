"""A recognition model that is not a diagonal Gaussian: planar flows on q(z|x) (chapter 11).

A normalizing flow pushes a draw of the diagonal Gaussian z_0 ~ q_0(z|x) = N(mu, diag(sigma^2))
through K invertible maps, z_K = f_K(...f_1(z_0)), and tracks the density by the change of variables
(Rezende and Mohamed 2015):

    log q_K(z_K|x) = log q_0(z_0|x) - sum_{k=1}^K log |det df_k / dz_{k-1}|.

A planar map is f(z) = z + u_hat h(w^T z + b) with h = tanh; by the matrix determinant lemma
det df/dz = 1 + h'(w^T z + b) w^T u_hat. It is invertible when w^T u_hat >= -1, which
u_hat = u + (m(w^T u) - w^T u) w / ||w||^2 with m(a) = -1 + softplus(a) guarantees (w^T u_hat = m(w^T u)
> -1; their appendix A). Then det = 1 + h' m(w^T u) = h^2 + (1 - h^2) softplus(w^T u) > 0.

``FlowPosterior`` is q_K itself: it offers ``rsample_with_log_prob`` (and ``rsample``), which is all the
objectives need; it has no ``log_prob`` of an arbitrary z (a planar map has no closed-form inverse) and
no closed-form KL, so the ELBO takes ``kl="mc"``. ``PlanarFlowEncoder`` wraps any ``GaussianEncoder``
and makes the flow *amortized*: one extra linear layer maps the encoder's features to the K triples
(u, w, b) of each image, as in Rezende and Mohamed's experiments. ``PlanarFlow`` holds one set of free
parameters (not amortized): q(z) for a single target, such as the 2-D toy posteriors of chapter 11.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..core.recognition import LOGVAR_MAX, LOGVAR_MIN, DiagonalGaussian, GaussianEncoder
from ..core.validation import check_positive_int, check_tensor

__all__ = ["planar_u_hat", "planar_transform", "FlowPosterior", "PlanarFlow", "PlanarFlowEncoder"]


def planar_u_hat(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """u_hat = u + (m(w^T u) - w^T u) w / ||w||^2, m(a) = -1 + softplus(a), so that w^T u_hat > -1.

    u, w: (..., d). Returns (..., d).
    """
    wu = (w * u).sum(-1, keepdim=True)
    return u + (F.softplus(wu) - 1.0 - wu) * w / (w * w).sum(-1, keepdim=True)


def planar_transform(
    z: torch.Tensor, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One planar map f(z) = z + u_hat tanh(w^T z + b) and log det df/dz = log(1 + tanh'(w^T z + b) w^T u_hat).

    z: (..., batch, d); u, w: (batch, d) or (d,); b: (batch,) or (). ``u`` is the unconstrained
    parameter: u_hat is computed here. Returns (f(z): (..., batch, d), log det: (..., batch)).
    """
    u_hat = planar_u_hat(u, w)
    a = (z * w).sum(-1) + b  # (..., batch)
    h = torch.tanh(a)
    h2 = h * h
    # det = 1 + h'(a) w^T u_hat with h' = 1 - h^2 and w^T u_hat = softplus(w^T u) - 1, written as a sum
    # of two terms >= 0, h^2 + (1 - h^2) softplus(w^T u), so that it never rounds to 0 or below
    log_det = torch.log(h2 + (1.0 - h2) * F.softplus((w * u).sum(-1)))
    return z + u_hat * h.unsqueeze(-1), log_det


class FlowPosterior(NamedTuple):
    """q_K(z|x): the base q_0 = ``base`` (a DiagonalGaussian, mu and logvar (batch, d)) pushed through K
    planar maps with parameters u, w: (batch, K, d) or (K, d), b: (batch, K) or (K,)."""

    base: DiagonalGaussian
    u: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor

    def transform(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_K = f_K(...f_1(z_0)) and sum_k log det df_k/dz_{k-1}.

        z0: (..., batch, d) -> ((..., batch, d), (..., batch))."""
        z, total = z0, z0.new_zeros(z0.shape[:-1])
        for k in range(self.u.shape[-2]):
            z, log_det = planar_transform(z, self.u[..., k, :], self.w[..., k, :], self.b[..., k])
            total = total + log_det
        return z, total

    def rsample_with_log_prob(
        self, n_samples: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n_samples reparameterized draws z_K, (n_samples, batch, d), and log q_K(z_K|x), (n_samples, batch):
        log q_0(z_0|x) minus the summed log-determinants."""
        z0 = self.base.rsample(n_samples, generator)
        log_q0 = self.base.log_prob(z0)
        z, log_det = self.transform(z0)
        return z, log_q0 - log_det

    def rsample(self, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n_samples reparameterized draws z_K, (n_samples, batch, d)."""
        return self.rsample_with_log_prob(n_samples, generator)[0]


class PlanarFlow(nn.Module):
    """A free (not amortized) q_K(z): base N(mu, diag(exp(logvar))) and K planar maps, all parameters of
    this module. ``posterior(batch)`` returns the FlowPosterior repeated for ``batch`` rows (default 1).

    Used to fit q directly to one unnormalized target density log p~(z) by maximizing
    E_q[log p~(z) - log q(z)] (chapter 11's 2-D toy posteriors). The maps start near the identity
    (u, w ~ N(0, init_scale^2)), the base at N(m, I) with m ~ N(0, init_scale^2) (off any symmetry point).
    """

    def __init__(
        self, latent_dim: int, n_flows: int, init_scale: float = 0.1, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.n_flows = check_positive_int("n_flows", n_flows)
        self.mu = nn.Parameter(init_scale * torch.randn(latent_dim, generator=generator))
        self.logvar = nn.Parameter(torch.zeros(latent_dim))
        self.u = nn.Parameter(init_scale * torch.randn(n_flows, latent_dim, generator=generator))
        self.w = nn.Parameter(init_scale * torch.randn(n_flows, latent_dim, generator=generator))
        self.b = nn.Parameter(torch.zeros(n_flows))

    def posterior(self, batch: int = 1) -> FlowPosterior:
        """q_K as a FlowPosterior with ``batch`` identical rows."""
        check_positive_int("batch", batch)
        base = DiagonalGaussian(self.mu.expand(batch, -1), self.logvar.clamp(LOGVAR_MIN, LOGVAR_MAX).expand(batch, -1))
        return FlowPosterior(base, self.u, self.w, self.b)


class PlanarFlowEncoder(nn.Module):
    """An amortized flow posterior around any ``GaussianEncoder``: the encoder's features h(x) give
    (mu, logvar) through its own head, and a new linear layer gives the K planar triples (u, w, b)
    of each image. ``forward(x)`` returns (mu, logvar) of the base q_0 (so ``posterior_mean`` and the
    diagnostics see q_0); ``posterior(x)`` returns q_K, which ``VAE.posterior`` uses.

    With n_flows = K and latent dimension d the extra layer has (2d + 1) K outputs. Its weights start
    at zero and its bias ~ N(0, 0.1^2): every image starts with the same, mild maps.
    """

    def __init__(self, encoder: GaussianEncoder, n_flows: int) -> None:
        super().__init__()
        if not isinstance(encoder, GaussianEncoder):
            raise TypeError(
                f"encoder must be a vaelab GaussianEncoder (MLPEncoder, ConvEncoder), got "
                f"{type(encoder).__name__}; its features(x) feed the flow's parameters."
            )
        self.encoder = encoder
        self.n_flows = check_positive_int("n_flows", n_flows)
        self.input_dim = encoder.input_dim
        self.latent_dim = encoder.latent_dim
        self.flow_head = nn.Linear(encoder.head.in_features, n_flows * (2 * encoder.latent_dim + 1))
        with torch.no_grad():
            self.flow_head.weight.zero_()
            self.flow_head.bias.normal_(0.0, 0.1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, input_dim) -> (mu, logvar) of the base q_0, each (batch, latent_dim)."""
        return self.encoder(x)

    def posterior(self, x: torch.Tensor) -> FlowPosterior:
        """q_K(z|x) for x: (batch, input_dim)."""
        check_tensor("x", x, ndim=2)
        h = self.encoder.features(x)
        mu, logvar = self.encoder.head(h).chunk(2, dim=-1)
        base = DiagonalGaussian(mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))
        d, k = self.latent_dim, self.n_flows
        params = self.flow_head(h)
        u = params[:, : k * d].view(-1, k, d)
        w = params[:, k * d : 2 * k * d].view(-1, k, d)
        b = params[:, 2 * k * d :]
        return FlowPosterior(base, u, w, b)
