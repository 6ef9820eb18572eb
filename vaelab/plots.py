"""Figures for the book. Every function returns the matplotlib Figure (a notebook shows it, a
test inspects it) and keeps its width at most 8 inches so it fits the page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .core.model import VAE
from .train.training import History

__all__ = [
    "image_grid",
    "plot_reconstructions",
    "plot_training_curves",
    "plot_latent_scatter",
    "manifold_codes",
    "plot_latent_manifold",
    "plot_interpolation",
    "MAX_WIDTH",
]

MAX_WIDTH = 8.0


def _as_images(images: torch.Tensor | np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    array = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    return array.reshape(-1, *image_shape)


def _tile(images: np.ndarray, nrow: int) -> np.ndarray:
    n, h, w = images.shape
    rows = -(-n // nrow)
    canvas = np.ones((rows * (h + 1) + 1, nrow * (w + 1) + 1))
    for i, image in enumerate(images):
        r, c = divmod(i, nrow)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = image
    return canvas


def image_grid(
    images: torch.Tensor | np.ndarray,
    nrow: int = 10,
    title: str | None = None,
    image_shape: tuple[int, int] = (28, 28),
    width: float = 6.0,
) -> Figure:
    """Show images (N, H*W) or (N, H, W) with values in [0, 1] as a grid, ``nrow`` per row."""
    array = _as_images(images, image_shape)
    canvas = _tile(array, nrow)
    width = min(width, MAX_WIDTH)
    fig, ax = plt.subplots(figsize=(width, width * canvas.shape[0] / canvas.shape[1] + (0.4 if title else 0)))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_reconstructions(
    originals: torch.Tensor,
    reconstructions: torch.Tensor,
    n: int = 10,
    title: str = "Originals (top) and reconstructions (bottom)",
    image_shape: tuple[int, int] = (28, 28),
) -> Figure:
    """Two rows: n originals above their reconstructions."""
    both = torch.cat([originals[:n].detach().cpu(), reconstructions[:n].detach().cpu()])
    return image_grid(both, nrow=n, title=title, image_shape=image_shape)


def plot_training_curves(
    histories: History | Mapping[str, History], title: str = "ELBO during training", x: str = "epoch"
) -> Figure:
    """Train (dashed) and test (solid) ELBO in nats per image against ``x`` ("epoch" or
    "examples_seen"), one colour per run."""
    if not isinstance(histories, Mapping):  # one History
        histories = {"": histories}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (label, history) in enumerate(histories.items()):
        colour = f"C{i}"
        xs = getattr(history, x)
        prefix = f"{label}: " if label else ""
        ax.plot(xs, history.train_elbo, "--", color=colour, label=f"{prefix}train")
        if not all(np.isnan(history.test_elbo)):
            ax.plot(xs, history.test_elbo, "-", color=colour, marker="o", ms=3, label=f"{prefix}test")
    ax.set_xlabel("training examples seen" if x == "examples_seen" else "epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("ELBO (nats per image)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_latent_scatter(
    codes: torch.Tensor, labels: torch.Tensor, title: str = "Posterior means coloured by digit", max_points: int = 5000
) -> Figure:
    """Scatter of 2-D codes (N, 2) (e.g. posterior means) coloured by digit label."""
    codes = codes.detach().cpu()[:max_points]
    labels = labels.detach().cpu()[:max_points]
    if codes.shape[1] != 2:
        raise ValueError(
            f"codes must be (N, 2) for a scatter, got {tuple(codes.shape)}; "
            "train a 2-D latent model or project the codes first."
        )
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def manifold_codes(n: int = 20, eps: float = 0.05) -> torch.Tensor:
    """(n*n, 2) latent codes through the inverse Gaussian CDF of an evenly spaced grid in
    (eps, 1 - eps)^2, as in Kingma and Welling (2013, Fig. 4): equal prior mass per cell.
    Row r, column c holds (Phi^{-1}(u_c), Phi^{-1}(u_{n-1-r})), so z_2 increases upward."""
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}.")
    u = torch.linspace(eps, 1 - eps, n, dtype=torch.float64)
    values = torch.distributions.Normal(0.0, 1.0).icdf(u).float()
    z1 = values.repeat(n)
    z2 = values.flip(0).repeat_interleave(n)
    return torch.stack([z1, z2], dim=1)


def plot_latent_manifold(
    model: VAE,
    n: int = 20,
    eps: float = 0.05,
    title: str = "Learned MNIST manifold",
    image_shape: tuple[int, int] = (28, 28),
) -> Figure:
    """Decoded means of ``manifold_codes(n, eps)`` for a 2-D latent model, tiled n x n."""
    if model.latent_dim != 2:
        raise ValueError(f"the manifold grid needs a 2-D latent space, the model has latent_dim={model.latent_dim}.")
    images = model.decode_mean(manifold_codes(n, eps).to(model.device))
    return image_grid(images, nrow=n, title=title, image_shape=image_shape, width=6.5)


def plot_interpolation(
    model: VAE,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    steps: int = 10,
    title: str = "Interpolating between posterior means",
    image_shape: tuple[int, int] = (28, 28),
) -> Figure:
    """One strip per (x_a, x_b) pair: decoded means along the line between their codes."""
    rows = [model.interpolate(a.to(model.device), b.to(model.device), steps).cpu() for a, b in pairs]
    return image_grid(torch.cat(rows), nrow=steps, title=title, image_shape=image_shape)
