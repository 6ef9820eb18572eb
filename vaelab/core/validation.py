"""Checks at vaelab's public boundary.

A user mistake (wrong shape, pixels in 0..255, NaN in the data, k = 0) should end in one sentence
that names the argument, what was given, what was expected and the likely fix, raised as
``ValueError`` or ``TypeError`` before torch produces a deep stack trace. The public entry points
(``elbo``, ``iwae_bound``, ``log_importance_weights``, ``log_likelihood_estimate``, ``fit``, the
diagnostics) call these; the math they call (prior, recognition model, decoder, likelihood, KL)
assumes its inputs are valid and checks nothing.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "check_model_input",
    "check_finite",
    "check_tensor",
    "check_same_device",
    "check_unit_interval",
    "check_choice",
    "check_integer",
    "check_number",
    "check_positive_int",
    "check_nonnegative",
    "check_logvar_range",
    "check_matching_shapes",
    "check_fits_module",
]


def check_tensor(
    name: str, value: object, *, ndim: int | None = None, min_ndim: int = 0, floating: bool = True
) -> torch.Tensor:
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


def _shortest(value: torch.Tensor) -> str:
    """The shortest decimal that reads back as this 0-d tensor's value in its own dtype
    (1.0000001 for float32, not 1 nor 1.00000011920929)."""
    if value.dtype in (torch.float16, torch.float32, torch.float64):
        return str(value.detach().cpu().numpy())
    return f"{value.item():.6g}"


def check_finite(name: str, x: torch.Tensor, fix: str = "clean the data before computing a likelihood") -> None:
    """Raise if ``x`` holds NaN or Inf, naming how many entries and where the first one is."""
    bad = ~torch.isfinite(x.detach())
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        where = f"row {first[0]}, column {first[1]}" if len(first) == 2 else f"index {first}"
        count = int(bad.sum())
        verb = "values is" if count == 1 else "values are"
        raise ValueError(
            f"{name} must be finite, but {count} of {x.numel()} {verb} NaN or Inf "
            f"(the first at {where}: {x[first].item()}); {fix}."
        )


def check_unit_interval(name: str, x: torch.Tensor) -> None:
    """Raise if ``x`` has values outside [0, 1] (Bernoulli support) or non-finite values; the
    message gives the actual offending values, in full precision."""
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    if not (torch.isfinite(lo) and torch.isfinite(hi)):
        check_finite(name, x)
    if lo < 0 or hi > 1:
        outside = int(((x < 0) | (x > 1)).sum())
        parts = ([f"a smallest value of {_shortest(lo)}"] if lo < 0 else []) + (
            [f"a largest value of {_shortest(hi)}"] if hi > 1 else []
        )
        if hi > 1.5:
            fix = "did you forget to divide by 255? use x / 255"
        elif lo > -1e-3 and hi < 1 + 1e-3:
            fix = "rounding errors? clip them with x.clamp(0, 1)"
        else:
            fix = "rescale the data to [0, 1], or use a Gaussian likelihood"
        verb = "values is" if outside == 1 else "values are"
        raise ValueError(
            f"{name} must lie in [0, 1] for a Bernoulli likelihood, but {outside} of {x.numel()} {verb} "
            f"outside it, with {' and '.join(parts)} ({fix})."
        )


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a clear error naming them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value


def check_integer(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as int if it is an integer in [low, high] (either bound may be open), else raise
    a clear error."""
    is_integer = isinstance(value, int) or (isinstance(value, numbers.Integral) and not isinstance(value, bool))
    if is_integer and not isinstance(value, bool) and (low is None or value >= low) and (high is None or value <= high):
        return int(value)  # the common case first: no message is built
    expected = "an integer" + (f" from {low} to {high}" if low is not None and high is not None else "")
    expected += f" >= {low}" if low is not None and high is None else ""
    if not is_integer or isinstance(value, bool):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__}).")
    fix = f"; use {name}={low} or more" if low is not None and high is None else ""
    raise ValueError(f"{name} must be {expected}, got {value}{fix}.")


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as int if it is an integer >= 1, else raise a clear error."""
    return check_integer(name, value, low=1)


def check_number(
    name: str,
    value: object,
    low: float | None = 0.0,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    unit: str = "",
) -> float:
    """Return ``value`` as float if it is a finite real number in the range (by default >= 0), else raise
    a clear error that names the range."""
    real = isinstance(value, (float, int)) or isinstance(value, numbers.Real)
    if real and not isinstance(value, bool):
        number = float(value)
        below = low is not None and (number < low if low_inclusive else number <= low)
        above = high is not None and (number > high if high_inclusive else number >= high)
        if math.isfinite(number) and not below and not above:
            return number  # the common case first: no message is built
    parts = ([f"{'>=' if low_inclusive else '>'} {low:g}"] if low is not None else []) + (
        [f"{'<=' if high_inclusive else '<'} {high:g}"] if high is not None else []
    )
    expected = "a finite number" + (" " + " and ".join(parts) if parts else "") + unit
    if not real or isinstance(value, bool):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__}).")
    raise ValueError(f"{name} must be {expected}, got {float(value)}.")


def check_nonnegative(name: str, value: object, unit: str = "") -> float:
    """Return ``value`` as float if it is a finite number >= 0, else raise a clear error."""
    return check_number(name, value, low=0.0, unit=unit)


def check_logvar_range(logvar: float, logvar_min: float, logvar_max: float) -> float:
    """Return ``logvar``, a Gaussian likelihood's log sigma^2, if it is finite and in [logvar_min, logvar_max]."""
    if not math.isfinite(logvar):
        raise ValueError(f"logvar must be a finite number, got {logvar}.")
    if not logvar_min <= logvar <= logvar_max:
        raise ValueError(
            f"logvar must lie in [{logvar_min:g}, {logvar_max:g}] (sigma^2 from "
            f"{math.exp(logvar_min):.2g} to {math.exp(logvar_max):.2g}), got {logvar}; "
            "pixels in [0, 1] call for a logvar between about -9 and 0."
        )
    return logvar


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


def check_model_input(model: object, x: object) -> torch.Tensor:
    """The data check of the public entry points: ``x`` is a non-empty (batch, D) floating tensor
    that fits ``model`` (D pixels, its device and dtype), holds no NaN or Inf, and lies in [0, 1]
    when the likelihood is Bernoulli (the likelihood's own ``check_support``). Returns ``x``; raises a
    one-sentence error otherwise."""
    if not all(hasattr(model, part) for part in ("encoder", "decoder", "likelihood", "prior")):
        raise TypeError(
            f"model must be a vaelab.VAE (encoder, decoder, likelihood, prior), got "
            f"{type(model).__name__}; build one with vaelab.build_vae(...)."
        )
    check_tensor("x", x, ndim=2)
    assert isinstance(x, torch.Tensor)
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (batch size 0); pass at least one example.")
    expected = getattr(model.encoder, "input_dim", None)
    if expected is not None and x.shape[1] != expected:
        raise ValueError(
            f"x has {x.shape[1]} features per example but the model expects input_dim={expected}; "
            f"flatten images to (batch, {expected}) with x.view(len(x), -1)."
        )
    param = next(model.parameters(), None)
    if param is not None:
        check_fits_module("x", x, param, "model")
    model.likelihood.check_support("x", x)  # e.g. [0, 1] for a Bernoulli likelihood; never NaN or Inf
    return x
