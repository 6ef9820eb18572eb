"""The deterministic autoencoder of chapter 2: x -> z = f(x) -> x_hat = g(z), no probabilities.

    encoder f: input_dim -> hidden_dim (ReLU) -> latent_dim          (a code, not a distribution)
    decoder g: latent_dim -> hidden_dim (ReLU) -> input_dim logits,  x_hat = sigmoid(logits)

It is trained to reconstruct grey MNIST pixels in [0, 1] with the binary cross-entropy summed over
pixels, sum_i -[x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)], per image (the same expression as
the Bernoulli "likelihood" of chapter 4, here used only as a loss). Nothing in it says which
codes are likely, which is why chapter 2 shows that it is not a generative model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.validation import check_positive_int, check_tensor, check_unit_interval
from ..data import ImageData
from ..utils.devices import resolve_device
from ..utils.progress import progress_bar

__all__ = ["Autoencoder", "reconstruction_loss", "fit_autoencoder"]


class Autoencoder(nn.Module):
    """A deterministic MLP autoencoder, input_dim-hidden_dim-latent_dim and back.

    ``encode``: x (batch, input_dim) -> z (batch, latent_dim); ``decode_logits``: z (..., latent_dim)
    -> logits (..., input_dim); ``decode``: z -> sigmoid(logits), images in [0, 1];
    ``forward`` (= reconstruct): x -> decode(encode(x)), (batch, input_dim).
    """

    def __init__(self, input_dim: int = 784, hidden_dim: int = 400, latent_dim: int = 2) -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.encoder = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, input_dim))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code z = f(x). x: (batch, input_dim) -> (batch, latent_dim)."""
        check_tensor("x", x, ndim=2)
        if x.shape[1] != self.input_dim:
            raise ValueError(
                f"x has {x.shape[1]} features per example but the autoencoder expects "
                f"input_dim={self.input_dim}; flatten 28x28 images to 784 with x.view(len(x), -1)."
            )
        return self.encoder(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid outputs for codes z: (..., latent_dim) -> (..., input_dim)."""
        check_tensor("z", z, min_ndim=1)
        if z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"z has shape {tuple(z.shape)} but the autoencoder has latent_dim={self.latent_dim}; "
                "its last dimension must equal latent_dim."
            )
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The image g(z) = sigmoid(logits) in [0, 1] for codes z: (..., latent_dim) -> (..., input_dim)."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction g(f(x)), (batch, input_dim)."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """g(f(x)) without gradients, (batch, input_dim)."""
        return self(x)


def reconstruction_loss(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between x (batch, D) in [0, 1] and its reconstruction, summed over the
    D pixels, in nats per image. Returns (batch,)."""
    check_tensor("x", x, ndim=2)
    check_unit_interval("x", x)
    logits = model.decode_logits(model.encode(x))
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def fit_autoencoder(
    model: Autoencoder,
    data: ImageData | torch.Tensor,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool | None = None,
) -> list[float]:
    """Train ``model`` with Adam on the mean ``reconstruction_loss``, shuffling every epoch.

    data: an ``ImageData`` (its ``batches`` are used, so a "dynamic" binarization is honoured) or a
    tensor (N, D) in [0, 1]. progress: a tqdm bar over epochs (default: on unless $CI or $VAELAB_QUIET is set).
    Returns the mean training loss of each epoch in nats per image (a list of ``epochs`` floats).
    """
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}; a typical Adam learning rate is 1e-3.")
    if isinstance(data, torch.Tensor):
        check_tensor("data", data, ndim=2)
        data = ImageData(data, torch.zeros(len(data), dtype=torch.long, device=data.device))
    elif not isinstance(data, ImageData):
        raise TypeError(f"data must be an ImageData or a (N, D) tensor, got {type(data).__name__}.")
    if data.images.shape[1] != model.input_dim:
        raise ValueError(
            f"data has {data.images.shape[1]} pixels per image but the model expects input_dim={model.input_dim}."
        )
    check_unit_interval("data", data.images)
    device = resolve_device(device)
    model.to(device)
    data = data.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in progress_bar(range(epochs), enabled=progress, desc="autoencoder"):
        total = torch.zeros((), device=device)
        for x in data.batches(batch_size, shuffle=True, generator=generator):
            loss = reconstruction_loss(model, x).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(x)
        losses.append(total.item() / len(data))
    model.eval()
    return losses
