"""Choosing the device to train on: "auto" picks CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from .messages import user_error

__all__ = ["resolve_device"]

_KNOWN = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a torch.device for "auto", "cpu", "cuda", "cuda:N", "mps" or a torch.device.

    Raises ValueError for an unknown name or a device this machine does not have.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    unknown = (
        f"unknown device {device!r}; use one of {', '.join(_KNOWN)} (or 'cuda:N').",
        f"unknown device {device!r}; use --device with one of {', '.join(_KNOWN)} (or cuda:N).",
    )
    if isinstance(device, str) and device.split(":")[0] not in _KNOWN:
        raise user_error(ValueError, *unknown)
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise user_error(ValueError, *unknown) from None
    missing = {"cuda": "no CUDA GPU is available", "mps": "Apple MPS is not available"}.get(resolved.type)
    if missing and not (torch.cuda.is_available() if resolved.type == "cuda" else _mps_available()):
        text = f"device {str(resolved)!r} was asked for but {missing}"
        raise user_error(ValueError, f"{text}; use device='auto' or 'cpu'.", f"{text}; use --device auto or cpu.")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise user_error(
            ValueError,
            f"device {str(resolved)!r} does not exist: this machine has "
            f"{torch.cuda.device_count()} CUDA GPU(s); use 'cuda:0' or 'auto'.",
        )
    return resolved


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
