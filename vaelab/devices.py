"""Choosing the device to train on: "auto" picks CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]

_KNOWN = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a torch.device for "auto", "cpu", "cuda", "cuda:N", "mps" or a torch.device.

    Raises ValueError for an unknown name or a device this machine does not have.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if isinstance(device, str) and device.split(":")[0] not in _KNOWN:
        raise ValueError(f"unknown device {device!r}; use one of {', '.join(_KNOWN)} (or 'cuda:N').")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use one of {', '.join(_KNOWN)}.") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use device='auto' or 'cpu'.")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but Apple MPS is not available; use device='auto' or 'cpu'.")
    return resolved
