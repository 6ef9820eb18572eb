"""A VAE with two stochastic layers (Burda et al. 2015, section 5; chapter 12), built to vaelab's protocol.

The generative model p(z2) p(z1|z2) p(x|z1) and the recognition model q(z1|x) q(z2|z1), every conditional a
diagonal Gaussian whose mean and log-variance come from a tanh network (the Bernoulli p(x|z1) from logits):

    q(z1|x):  784 -> 200 -> 200 (tanh) -> 100      p(z2) = N(0, I), 50 units
    q(z2|z1): 100 -> 100 -> 100 (tanh) -> 50       p(z1|z2): 50 -> 100 -> 100 (tanh) -> 100
                                                   p(x|z1):  100 -> 200 -> 200 (tanh) -> 784 logits

the sizes of the paper and of its code (yburda/iwae, commit 78a6075, ``experiments.py``: latent_units
[100, 50], hidden_units_q [[200, 200], [100, 100]], hidden_units_p [[100, 100], [200, 200]]; each
stochastic layer there is a ``GaussianSampler``: a tanh chain, a linear mean and sigma = exp(linear)).

The model is a plain ``vaelab.VAE`` whose code is the concatenation z = [z1, z2], (..., 150), so every bound
and trainer of vaelab works unchanged:

* ``TwoLayerEncoder.posterior(x)`` is q(z|x) = q(z1|x) q(z2|z1), a ``TwoLayerPosterior``:
  ``rsample_with_log_prob`` draws z1, then z2 given z1, and returns log q(z1|x) + log q(z2|z1);
  ``log_prob(z)`` evaluates it at any z and ``detach()`` holds its parameters constant (the IWAE
  estimators "dreg" and "stl");
* ``TwoLayerPrior`` is p(z) = p(z2) p(z1|z2), with learnable p(z1|z2): ``log_prob`` and ``sample``;
* ``FirstLayerDecoder`` reads z1 only: p(x|z) = p(x|z1).

No closed-form KL is registered for this pair: kl="auto" uses the Monte Carlo estimate
E_q[log q(z|x) - log p(z)], as the paper's Eqn. 7 does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ..core.generative import standard_normal_log_prob
from ..core.recognition import (
    LOGVAR_MAX,
    LOGVAR_MIN,
    DiagonalGaussian,
    diagonal_gaussian_log_prob,
    reparameterize,
)
from ..core.validation import check_positive_int

__all__ = [
    "BURDA_TWO_LAYER",
    "GaussianLayer",
    "TwoLayerPosterior",
    "TwoLayerEncoder",
    "TwoLayerPrior",
    "FirstLayerDecoder",
    "two_layer_parts",
]

# Burda et al.'s two-stochastic-layer sizes: stochastic units (z1, z2) and deterministic units of each network
BURDA_TWO_LAYER = {"latent_dims": (100, 50), "hidden_x": (200, 200), "hidden_z": (100, 100)}


def tanh_mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear layers of ``sizes``, each followed by tanh."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Tanh()]
    return nn.Sequential(*layers)


class GaussianLayer(nn.Module):
    """A stochastic layer: input (..., in_dim) -> tanh network -> (mu, logvar), each (..., out_dim), of the
    diagonal Gaussian N(mu, diag(exp(logvar))) (logvar clamped as the encoders' is)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        self.in_dim = check_positive_int("in_dim", in_dim)
        self.out_dim = check_positive_int("out_dim", out_dim)
        self.body = tanh_mlp((in_dim, *hidden))
        self.head = nn.Linear(hidden[-1] if hidden else in_dim, 2 * out_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.body(h)).chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


def _constant(layer: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``layer(h)`` with the layer's parameters held constant: the gradient reaches h only."""
    return functional_call(layer, {name: p.detach() for name, p in layer.named_parameters()}, (h,))


class TwoLayerPosterior:
    """q(z|x) = q(z1|x) q(z2|z1) for a batch x: (batch, D); a code is z = [z1, z2], (..., batch, d1 + d2).

    ``first`` is q(z1|x) (a ``DiagonalGaussian``), ``second`` the layer z1 -> (mu2, logvar2) of q(z2|z1).
    ``detached=True`` (``detach()``) evaluates log q with every parameter of q held constant, so that only
    z carries gradient (the IWAE estimators "dreg" and "stl")."""

    def __init__(self, first: DiagonalGaussian, second: GaussianLayer, detached: bool = False) -> None:
        self.first, self.second, self.detached = first, second, detached
        self.d1 = first.mu.shape[-1]

    def _second(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _constant(self.second, z1) if self.detached else self.second(z1)

    def rsample_with_log_prob(
        self, n_samples: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n_samples reparameterized codes z = [z1, z2], (n_samples, batch, d1 + d2), z1 ~ q(z1|x) then
        z2 ~ q(z2|z1), and log q(z|x) = log q(z1|x) + log q(z2|z1), (n_samples, batch)."""
        z1 = self.first.rsample(n_samples, generator)
        mu2, logvar2 = self._second(z1)
        z2 = reparameterize(mu2, logvar2, generator=generator)
        log_q = self.first.log_prob(z1) + diagonal_gaussian_log_prob(z2, mu2, logvar2)
        return torch.cat([z1, z2], dim=-1), log_q

    def rsample(self, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n_samples reparameterized codes, (n_samples, batch, d1 + d2)."""
        return self.rsample_with_log_prob(n_samples, generator)[0]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z1|x) + log q(z2|z1) for z: (..., batch, d1 + d2). Returns (..., batch)."""
        z1, z2 = z[..., : self.d1], z[..., self.d1 :]
        mu2, logvar2 = self._second(z1)
        return self.first.log_prob(z1) + diagonal_gaussian_log_prob(z2, mu2, logvar2)

    def detach(self) -> TwoLayerPosterior:
        """This q with its parameters held constant inside ``log_prob`` (gradient to z only)."""
        first = DiagonalGaussian(self.first.mu.detach(), self.first.logvar.detach())
        return TwoLayerPosterior(first, self.second, detached=True)


class TwoLayerEncoder(nn.Module):
    """The recognition model q(z1|x) q(z2|z1). ``posterior(x)`` is the ``TwoLayerPosterior`` every bound uses;
    ``forward(x)`` gives (mu, logvar), each (batch, d1 + d2), of the deterministic pass through the means,
    [mu1(x), mu2(mu1(x))] and [logvar1(x), logvar2(mu1(x))]: what ``posterior_mean``, ``reconstruct`` and
    ``interpolate`` look at (the decoder reads its first d1 entries, E_q[z1|x] = mu1(x))."""

    def __init__(
        self,
        input_dim: int = 784,
        latent_dims: tuple[int, int] = (100, 50),
        hidden_x: tuple[int, ...] = (200, 200),
        hidden_z: tuple[int, ...] = (100, 100),
    ) -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.latent_dims = tuple(latent_dims)
        self.latent_dim = sum(self.latent_dims)
        self.first = GaussianLayer(input_dim, tuple(hidden_x), latent_dims[0])
        self.second = GaussianLayer(latent_dims[0], tuple(hidden_z), latent_dims[1])

    def posterior(self, x: torch.Tensor) -> TwoLayerPosterior:
        return TwoLayerPosterior(DiagonalGaussian(*self.first(x)), self.second)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu1, logvar1 = self.first(x)
        mu2, logvar2 = self.second(mu1)
        return torch.cat([mu1, mu2], dim=-1), torch.cat([logvar1, logvar2], dim=-1)


class TwoLayerPrior(nn.Module):
    """p(z) = p(z2) p(z1|z2) for codes z = [z1, z2]: p(z2) = N(0, I) and p(z1|z2) a learnable Gaussian layer
    (50 -> 100 -> 100 tanh -> 100 in Burda et al.). latent_dim = d1 + d2."""

    def __init__(self, latent_dims: tuple[int, int] = (100, 50), hidden_z: tuple[int, ...] = (100, 100)) -> None:
        super().__init__()
        self.latent_dims = tuple(latent_dims)
        self.latent_dim = sum(self.latent_dims)
        self.first = GaussianLayer(latent_dims[1], tuple(hidden_z), latent_dims[0])  # p(z1|z2)
        self.register_buffer("_like", torch.empty(0), persistent=False)  # moves with .to() and .double()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z2) + log p(z1|z2) for z: (..., d1 + d2). Returns (...)."""
        z1, z2 = z[..., : self.latent_dims[0]], z[..., self.latent_dims[0] :]
        return standard_normal_log_prob(z2) + diagonal_gaussian_log_prob(z1, *self.first(z2))

    def sample(
        self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n codes: z2 ~ N(0, I), then z1 ~ p(z1|z2). (n, d1 + d2), on ``device`` (default: the prior's)."""
        check_positive_int("n", n)
        like = self._like
        z2 = torch.randn(n, self.latent_dims[1], device=like.device, dtype=like.dtype, generator=generator)
        z1 = reparameterize(*self.first(z2), generator=generator)
        return torch.cat([z1, z2], dim=-1).to(like.device if device is None else device)

    def extra_repr(self) -> str:
        return f"latent_dims={self.latent_dims}"


class FirstLayerDecoder(nn.Module):
    """p(x|z) = p(x|z1): z = [z1, z2]: (..., d1 + d2) -> its first d1 entries -> tanh network -> output_dim
    likelihood parameters (Bernoulli logits in Burda et al.: 100 -> 200 -> 200 tanh -> 784)."""

    def __init__(
        self, latent_dims: tuple[int, int] = (100, 50), hidden_x: tuple[int, ...] = (200, 200), output_dim: int = 784
    ) -> None:
        super().__init__()
        self.latent_dims = tuple(latent_dims)
        self.latent_dim = sum(self.latent_dims)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.body = tanh_mlp((latent_dims[0], *hidden_x))
        self.out = nn.Linear(hidden_x[-1], output_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z[..., : self.latent_dims[0]]))


def two_layer_parts(
    input_dim: int = 784,
    output_dim: int | None = None,
    latent_dims: tuple[int, int] = BURDA_TWO_LAYER["latent_dims"],
    hidden_x: tuple[int, ...] = BURDA_TWO_LAYER["hidden_x"],
    hidden_z: tuple[int, ...] = BURDA_TWO_LAYER["hidden_z"],
) -> tuple[TwoLayerEncoder, FirstLayerDecoder, TwoLayerPrior]:
    """(encoder, decoder, prior) of the two-stochastic-layer model, Burda et al.'s sizes by default, with
    Glorot-uniform weights and zero biases (the paper's initialization). Pass them to ``vaelab.VAE`` with a
    likelihood: ``VAE(encoder, decoder, BernoulliLikelihood(), prior)``."""
    encoder = TwoLayerEncoder(input_dim, latent_dims, hidden_x, hidden_z)
    decoder = FirstLayerDecoder(latent_dims, hidden_x, input_dim if output_dim is None else output_dim)
    prior = TwoLayerPrior(latent_dims, hidden_z)
    for module in (*encoder.modules(), *decoder.modules(), *prior.modules()):
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return encoder, decoder, prior
