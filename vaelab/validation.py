"""Checks at vaelab's public boundary.

A user mistake (wrong shape, pixels in 0..255, k = 0) should end in one sentence that names the
argument, what was given, what was expected and the likely fix, raised as ``ValueError`` or
``TypeError`` before torch produces a deep stack trace. Every public function calls these.
"""

from __future__ import annotations

import torch

__all__ = [
    "check_tensor",
    "check_same_device",
    "check_unit_interval",
    "check_positive_int",
    "check_matching_shapes",
    "check_fits_module",
]


def check_tensor(name: str, value: object, *, ndim: int | None = None, min_ndim: int = 0,
                 floating: bool = True) -> torch.Tensor:
    """Return ``value`` if it is a tensor of the right kind, else raise a clear error."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(value).__name__}; "
            f"convert it with torch.as_tensor({name}, dtype=torch.float32)."
        )
    if floating and not value.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {value.dtype}; "
            f"convert it with {name}.float() (and divide uint8 pixels by 255)."
        )
    if ndim is not None and value.dim() != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}; "
            "flatten images to (batch, pixels) with x.view(x.shape[0], -1)."
        )
    if value.dim() < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(value.shape)}; "
            "add a batch dimension with x.unsqueeze(0)."
        )
    return value


def check_same_device(**tensors: torch.Tensor) -> None:
    """Raise if the tensors live on different devices (a classic CPU/CUDA mix-up)."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(
            f"tensors are on different devices ({listing}); move them together with "
            ".to(device), e.g. x = x.to(next(model.parameters()).device)."
        )


def check_unit_interval(name: str, x: torch.Tensor) -> None:
    """Raise if ``x`` has values outside [0, 1] (Bernoulli support) or non-finite values."""
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    if not (torch.isfinite(lo) and torch.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or Inf; clean the data before computing a likelihood.")
    if lo < 0 or hi > 1:
        hint = " (did you forget to divide by 255?)" if hi > 1.5 else ""
        raise ValueError(
            f"{name} must lie in [0, 1] for a Bernoulli likelihood, got values in "
            f"[{lo.item():.4g}, {hi.item():.4g}]{hint}."
        )


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as int if it is an integer >= 1, else raise a clear error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r} ({type(value).__name__}).")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}; use {name}=1 or more.")
    return value


def check_matching_shapes(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise if two tensors that are combined elementwise have different shapes or devices."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; "
            "they must match (check the batch and latent sizes)."
        )
    check_same_device(**{name_a: a, name_b: b})


def check_fits_module(name: str, x: torch.Tensor, weight: torch.Tensor, module: str) -> None:
    """Raise if ``x`` is not on the device or not of the dtype of ``module``'s parameter
    ``weight`` (torch would otherwise fail deep inside a matrix product)."""
    if x.device != weight.device:
        raise ValueError(
            f"{name} is on {x.device} but the {module} is on {weight.device}; move one of them, "
            f"e.g. {name} = {name}.to(model.device)."
        )
    if x.dtype != weight.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the {module} computes in {weight.dtype}; convert it "
            f"with {name}.to({weight.dtype}) (or the model with model.to({x.dtype}))."
        )
