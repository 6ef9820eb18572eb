"""Grey pixels as 8-bit levels (chapter 14): the conventions and support checks shared by the likelihoods for
grey images (``continuous_bernoulli``, ``discretized_logistic``, ``dequantization``).

* x: (batch, D) grey pixels in [0, 1]; an 8-bit level k in {0, ..., 255} is stored as x = k/255 (what
  ``vaelab.load_mnist`` and ``vaelab.load_fashion_mnist`` return with ``binarization="none"``).
* params: (..., batch, P * D), the decoder's output; P = ``params_per_pixel`` (1 for the continuous
  Bernoulli, 2 for the discretized logistic, 3 M for a mixture of M), so a decoder for D pixels needs
  ``output_dim = likelihood.params_per_pixel * D``.
* log_prob(x, params) returns (..., batch): log p(x|z) summed over the D pixels, in nats.

The continuous Bernoulli is a density on [0, 1]; the discretized logistics are probabilities of the 256
levels, so their -log p(x|z) converts to bits per dimension directly (``vaelab.models.dequantization``),
while a density must first go through dequantization.
"""

from __future__ import annotations

import torch

from ..core.validation import check_finite

__all__ = ["LEVELS", "check_grey_pixels", "check_8bit_levels"]

LEVELS = 256  # levels of an 8-bit pixel; level k is stored as k / (LEVELS - 1)


def check_grey_pixels(name: str, x: torch.Tensor, likelihood: str) -> None:
    """Raise a one-sentence ValueError unless ``x`` is finite and lies in [0, 1]."""
    check_finite(name, x)
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    if lo < 0 or hi > 1:
        outside = int(((x < 0) | (x > 1)).sum())
        fix = "did you forget to divide by 255? use x / 255" if hi > 1.5 else "clip them with x.clamp(0, 1)"
        raise ValueError(
            f"{name} must lie in [0, 1] for a {likelihood} likelihood, but {outside} of {x.numel()} values are "
            f"outside it (smallest {lo.item():.6g}, largest {hi.item():.6g}); {fix}."
        )


def check_8bit_levels(name: str, x: torch.Tensor, likelihood: str) -> None:
    """Raise a one-sentence ValueError unless ``x`` holds 8-bit grey levels k/255, k = 0, ..., 255 (to 1e-3 of
    a level), the support of a likelihood over the 256 levels."""
    check_grey_pixels(name, x, likelihood)
    scaled = x.detach() * (LEVELS - 1)
    off = (scaled - scaled.round()).abs() > 1e-3
    if bool(off.any()):
        first = x.detach().flatten()[off.flatten().nonzero()[0, 0]].item()
        raise ValueError(
            f"{name} must hold 8-bit grey levels k/255 for a {likelihood} likelihood, but {int(off.sum())} of "
            f"{x.numel()} values lie between levels (the first is {first:.6g}); load grey images with "
            "binarization='none', or round them with torch.round(x * 255) / 255."
        )
