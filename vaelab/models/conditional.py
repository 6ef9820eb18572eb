"""A conditional VAE: q(z|x, y) and p(x|z, y) for a class label y (Sohn et al. 2015; chapter 11).

Conditioning by composition: ``ConditionalVAE`` wraps ANY encoder and decoder whose inputs are one
label wider and feeds them the one-hot y concatenated to their input,

    q_phi(z|x, y) = encoder([x, onehot(y)]),   p_theta(x|z, y) = likelihood(decoder([z, onehot(y)])),

with the prior p(z) = N(0, I) independent of y. Its ELBO bounds log p(x|y):

    log p_theta(x|y) >= E_q(z|x,y)[log p_theta(x|z, y)] - KL(q(z|x, y) || p(z)).

``model.given(y)`` is a VAE-like view (``posterior(x)``, ``decode(z)``, ``likelihood``, ``prior``,
``latent_dim``, ``device``, ``parameters()``) whose posterior and decoder see y, so every objective
(``vaelab.elbo``, ``iwae_bound``, ``log_likelihood_estimate``, ...) works on
``model.given(y)`` unchanged. y: an int (the same label for every row) or a (batch,) integer tensor.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..core.conveniences import LatentModel, with_prior
from ..core.generative import BernoulliLikelihood, Likelihood, MLPDecoder, StandardNormalPrior
from ..core.recognition import DiagonalGaussian, MLPEncoder
from ..core.validation import check_positive_int

__all__ = ["ConditionalVAE", "ConditionedVAE", "one_hot_labels", "build_conditional_vae"]


def one_hot_labels(
    y: object,
    n_classes: int,
    batch: int | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """onehot(y) as floats: (n_classes,) for an int or 0-d y, (batch, n_classes) for y: (batch,).

    Checks y: integers in 0..n_classes-1, one per example (``batch`` rows when given), on ``device``.
    """
    if isinstance(y, bool) or not isinstance(y, (int, torch.Tensor)):
        raise TypeError(
            f"y must be an int or an integer torch.Tensor of labels, got {type(y).__name__}; "
            "use y = data.labels[:len(x)] or y = 3."
        )
    y = torch.as_tensor(y, device=device)
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"y must hold integer labels, got dtype {y.dtype}; convert with y.long().")
    if y.dim() > 1:
        raise ValueError(
            f"y must be an int or a (batch,) tensor of labels, got shape {tuple(y.shape)}; flatten it with y.view(-1)."
        )
    if y.dim() == 1 and batch is not None and len(y) != batch:
        raise ValueError(f"y has {len(y)} labels but x has {batch} rows; pass one label per row of x.")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ValueError(f"y must lie in 0..{n_classes - 1} (n_classes={n_classes}), got the label {bad}.")
    if device is not None and y.device != torch.device(device):
        y = y.to(device)
    return F.one_hot(y.long(), n_classes).to(dtype)


class LabelledNetwork(nn.Module):
    """net([v, onehot(y)]): a network whose last input dimension is ``n_classes`` wider than v's.

    ``forward(v, y_onehot)`` with v: (..., batch, n) and y_onehot: (batch, n_classes) or (n_classes,),
    broadcast over v's leading dimensions. ``input_dim`` (for an encoder) and ``latent_dim`` (for a
    decoder) are those of v, the net's minus the label.
    """

    def __init__(self, net: nn.Module, n_classes: int, width_attr: str) -> None:
        super().__init__()
        self.net = net
        self.n_classes = n_classes
        width = getattr(net, width_attr, None)
        if not isinstance(width, int) or width <= n_classes:
            raise ValueError(
                f"the {'encoder' if width_attr == 'input_dim' else 'decoder'} must take "
                f"{width_attr} = data size + n_classes (> {n_classes}), got {width_attr}={width!r}; "
                f"build it with {width_attr} widened by n_classes={n_classes}."
            )
        setattr(self, width_attr, width - n_classes)
        if hasattr(net, "latent_dim") and width_attr == "input_dim":
            self.latent_dim = net.latent_dim

    def forward(self, v: torch.Tensor, y_onehot: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([v, y_onehot.to(v.dtype).expand(*v.shape[:-1], self.n_classes)], dim=-1))


class _Given(nn.Module):
    """A LabelledNetwork with its label fixed: forward(v) = net([v, onehot(y)])."""

    def __init__(self, labelled: LabelledNetwork, y_onehot: torch.Tensor) -> None:
        super().__init__()
        self.labelled = labelled
        self.y_onehot = y_onehot
        for attr in ("input_dim", "latent_dim"):
            if hasattr(labelled, attr):
                setattr(self, attr, getattr(labelled, attr))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.labelled(v, self.y_onehot)


class ConditionedVAE(LatentModel, nn.Module):
    """The view ``ConditionalVAE.given(y)``: a VAE of p(x|y) for fixed labels y, sharing the
    conditional model's parameters. posterior(x) = q(z|x, y); decode(z) = the decoder's output for
    [z, onehot(y)]; likelihood and prior are the model's."""

    def __init__(self, model: ConditionalVAE, y_onehot: torch.Tensor) -> None:
        super().__init__()
        self.encoder = _Given(model.encoder, y_onehot)
        self.decoder = _Given(model.decoder, y_onehot)
        self.likelihood = model.likelihood
        self.prior = model.prior
        self.y_onehot = y_onehot

    def _check_rows(self, name: str, rows: int) -> None:
        if self.y_onehot.dim() == 2 and len(self.y_onehot) != rows:
            raise ValueError(
                f"{name} has {rows} rows but this view holds {len(self.y_onehot)} labels; "
                f"call model.given(y) with one label per row of {name}, or with one int (functions that "
                "split x into batches, like log_likelihood_estimate: one label at a time, "
                "model.given(c) on x[y == c])."
            )

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z|x, y) for x: (batch, D)."""
        self._check_rows("x", x.shape[0])
        return DiagonalGaussian(*self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters of p(x|z, y) for z: (..., batch, latent_dim) -> (..., batch, D)."""
        if z.dim() >= 2:
            self._check_rows("z", z.shape[-2])
        return self.decoder(z)

    @torch.no_grad()
    def sample(self, n: int | None = None, mean: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images from p(x|y): z ~ p(z), then E[x|z, y] (mean=True) or x ~ p(x|z, y). One per label
        when the view holds a (batch,) of labels (n must then be None or batch), else n of them."""
        rows = len(self.y_onehot) if self.y_onehot.dim() == 2 else n
        if rows is None or (n is not None and n != rows):
            raise ValueError(
                f"n must be given for a single label and equal the number of labels "
                f"otherwise, got n={n!r} for {self.y_onehot.shape[0] if rows else 1} label(s)."
            )
        params = self.decode(self.prior.sample(check_positive_int("n", rows), generator=generator))
        return self.likelihood.mean(params) if mean else self.likelihood.sample(params, generator)


class ConditionalVAE(LatentModel, nn.Module):
    """p(z) p(x|z, y) with recognition model q(z|x, y), for flattened data x: (batch, D) and labels
    y in 0..n_classes-1 (Sohn et al. 2015).

    encoder: any encoder taking input_dim = D + n_classes and returning (mu, logvar) (e.g.
    ``MLPEncoder(D + n_classes, hidden, d)``); decoder: any decoder taking latent_dim = d + n_classes
    (e.g. ``MLPDecoder(d + n_classes, hidden, D)``). ``given(y)`` is the VAE of p(x|y) that every
    objective accepts: ``vaelab.elbo(model.given(y), x)``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        n_classes: int = 10,
        prior: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.n_classes = check_positive_int("n_classes", n_classes)
        self.encoder = LabelledNetwork(encoder, n_classes, "input_dim")
        self.decoder = LabelledNetwork(decoder, n_classes, "latent_dim")
        self.likelihood = likelihood
        latent_dim = self.decoder.latent_dim
        if getattr(encoder, "latent_dim", latent_dim) != latent_dim:
            raise ValueError(
                f"the encoder's latent_dim ({encoder.latent_dim}) must equal the decoder's latent_dim "
                f"minus n_classes ({latent_dim}); build the decoder with latent_dim + n_classes inputs."
            )
        self.prior = with_prior(self, prior, latent_dim, StandardNormalPrior)

    def given(self, y: int | torch.Tensor) -> ConditionedVAE:
        """The VAE of p(x|y): y an int (every row) or a (batch,) integer tensor (one label per row)."""
        param = next(self.parameters())
        return ConditionedVAE(self, one_hot_labels(y, self.n_classes, device=param.device, dtype=param.dtype))


def build_conditional_vae(
    latent_dim: int = 20, hidden_dim: int = 400, input_dim: int = 784, n_classes: int = 10
) -> ConditionalVAE:
    """The MLP conditional VAE with a Bernoulli likelihood: (input_dim + n_classes)-hidden_dim-latent_dim
    encoder and (latent_dim + n_classes)-hidden_dim-input_dim decoder, ReLU, like ``build_vae``'s MLP."""
    check_positive_int("n_classes", n_classes)
    encoder = MLPEncoder(check_positive_int("input_dim", input_dim) + n_classes, hidden_dim, latent_dim)
    decoder = MLPDecoder(check_positive_int("latent_dim", latent_dim) + n_classes, hidden_dim, input_dim)
    return ConditionalVAE(encoder, decoder, BernoulliLikelihood(), n_classes)
