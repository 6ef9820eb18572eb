"""The check of spherical interpolation (slerp) between two latent codes, and its catalogue of
typical mistakes.

Chapter 7: under N(0, I_d) almost all prior mass lies in a thin shell of radius about sqrt(d), and
the midpoint of the straight line between two codes falls inside it. Slerp moves along the arc
between the two codes instead (Shoemake 1985; White 2016 for generative models):

    slerp(z_a, z_b; t) = (sin((1 - t) omega) z_a + sin(t omega) z_b) / sin(omega),
    cos(omega) = z_a . z_b / (|z_a| |z_b|),

which tends to the straight line (1 - t) z_a + t z_b as omega -> 0 (parallel codes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._runner import DEFAULT_HINT, F64, CheckResult, Failure, Hint, Runner, compare, fmt, run_check, unchanged

__all__ = ["check_slerp"]

# The ready-made functions this task refuses (allow=... permits them): none in torch or vaelab.
REFUSED: tuple[str, ...] = ()

_PARALLEL = 1e-6  # below this sin(omega) the reference returns the straight line, slerp's limit

_FORMULA = "slerp(z_a, z_b; t) = (sin((1 - t) omega) z_a + sin(t omega) z_b) / sin(omega)"


def slerp_reference(z_a: torch.Tensor, z_b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Slerp in float64: z_a, z_b (d,), t (steps,) -> (steps, d); the straight line when the codes
    are parallel (sin(omega) < 1e-6), which is slerp's limit as omega -> 0."""
    z_a, z_b, t = z_a.detach().double(), z_b.detach().double(), t.detach().double()[:, None]
    omega = _omega(z_a, z_b)
    if math.sin(omega) < _PARALLEL:
        return (1 - t) * z_a + t * z_b
    return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / math.sin(omega)


def _omega(z_a: torch.Tensor, z_b: torch.Tensor) -> float:
    cos = (z_a @ z_b / (z_a.norm() * z_b.norm())).clamp(-1.0, 1.0)
    return math.acos(cos.item())


def _slerp_variants(z_a: torch.Tensor, z_b: torch.Tensor, t: torch.Tensor) -> list[tuple[Any, str]]:
    """The typical wrong paths on this input, each with the hint aimed at it."""
    z_a, z_b, t = z_a.detach().double(), z_b.detach().double(), t.detach().double()[:, None]
    omega = _omega(z_a, z_b)
    norm_a, norm_b = z_a.norm(), z_b.norm()
    line = (1 - t) * z_a + t * z_b

    def arc(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
        return (torch.sin((1 - t) * w) * a + torch.sin(t * w) * b) / math.sin(w)

    def omega_one_norm() -> torch.Tensor:  # cos(omega) = z_a . z_b / |z_a|^2
        return arc(z_a, z_b, math.acos(max(-1.0, min(1.0, (z_a @ z_b / norm_a**2).item()))))

    def omega_unnormalized() -> torch.Tensor:  # cos(omega) = z_a . z_b
        return arc(z_a, z_b, math.acos(max(-1.0, min(1.0, (z_a @ z_b).item()))))

    return [
        (
            line,
            "this is the straight line (1 - t) z_a + t z_b, whose norm dips in the middle (to about 0.71 "
            "|z| for two orthogonal codes of norm |z|). Slerp follows the arc: " + _FORMULA + ".",
        ),
        (
            lambda: arc(z_b, z_a, omega),
            "your path runs from z_b to z_a: t = 0 must give z_a, so z_a's weight is sin((1 - t) omega) / "
            "sin(omega) and z_b's is sin(t omega) / sin(omega).",
        ),
        (
            lambda: torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b,
            Hint(
                kind="the division by the sine of the angle is missing: without it, the path does not start at z_a.",
                fix="divide by sin(omega): without it t = 0 gives sin(omega) z_a instead of z_a. " + _FORMULA + ".",
            ),
        ),
        (
            lambda: (torch.cos((1 - t) * omega) * z_a + torch.cos(t * omega) * z_b) / math.cos(omega),
            "the weights are sines, not cosines: " + _FORMULA + ".",
        ),
        (
            lambda: (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / math.sin(omega) ** 2,
            Hint(
                kind="you divided by the sine of the angle twice; divide once.",
                fix="divide by sin(omega) once: " + _FORMULA + ".",
            ),
        ),
        (
            lambda: arc(z_a / norm_a, z_b / norm_b, omega),
            "every point of your path has norm 1: you interpolated the directions z_a / |z_a| and "
            "z_b / |z_b| only. Apply the formula to z_a and z_b themselves, so that the path starts at z_a "
            "and ends at z_b.",
        ),
        (
            lambda: line / line.norm(dim=1, keepdim=True) * ((1 - t) * norm_a + t * norm_b),
            "you rescaled the straight line to the interpolated norm: a good path too, but not slerp, which "
            "turns at a constant angular speed: " + _FORMULA + ".",
        ),
        (
            omega_one_norm,
            "the angle is wrong when the two norms differ: cos(omega) = z_a . z_b / (|z_a| |z_b|), divided "
            "by both norms.",
        ),
        (
            omega_unnormalized,
            "the angle is wrong: cos(omega) is the cosine of the angle between the codes, z_a . z_b / "
            "(|z_a| |z_b|), not the dot product z_a . z_b itself.",
        ),
    ]


def _generic(parallel: bool) -> Callable[[torch.Tensor, torch.Tensor], str]:
    def generic(got: torch.Tensor, expected: torch.Tensor) -> str:
        if not torch.isfinite(got).all():
            if parallel:
                return (
                    "NaN or inf for parallel codes: there omega = 0 and sin(omega) = 0, so the formula divides "
                    "0 by 0 (and rounding can put the cosine just above 1, where arccos is NaN). Clamp the "
                    "cosine to [-1, 1] and, when sin(omega) is tiny (say below 1e-6), return the straight "
                    "line (1 - t) z_a + t z_b, the limit of slerp as omega -> 0."
                )
            return (
                "NaN or inf: compute cos(omega) = z_a . z_b / (|z_a| |z_b|) (normalized, so it lies in "
                "[-1, 1]), clamp it to [-1, 1] against rounding before torch.arccos, and divide by "
                "sin(omega) only when it is not tiny."
            )
        if not torch.allclose(got[0].double(), expected[0], rtol=1e-4, atol=1e-6):
            return "t = 0 must give z_a exactly (and t = 1 must give z_b); check the weights of z_a and z_b."
        return "compare your path term by term with " + _FORMULA + ", cos(omega) = z_a . z_b / (|z_a| |z_b|)."

    return generic


def _exception_hint(error: BaseException) -> str | None:
    text = str(error)
    if "size of tensor" in text or "broadcast" in text or "shape" in text:
        return (
            "a shape mismatch: t has shape (steps,) and the codes (d,); use t[:, None] (shape (steps, 1)) "
            "so that each value of t weights a whole code, giving a result of shape (steps, d)."
        )
    if "only one element tensors" in text or "Boolean value of Tensor" in text:
        return (
            "t is a tensor of shape (steps,), not one number: compute all the steps at once with t[:, None] "
            "instead of float(t) or `if t ...`."
        )
    return None


def _as_path(out: Any, case: str, steps: int, d: int) -> torch.Tensor:
    shape = (steps, d)
    if not isinstance(out, torch.Tensor):
        raise Failure(
            case,
            expected=f"a torch.Tensor of shape {shape}",
            got=f"{type(out).__name__} {out!r:.60}",
            hint="return one tensor of shape (steps, d), e.g. torch.stack of the points or the formula "
            "with t[:, None]; not a list, tuple or numpy array.",
        )
    if not out.is_floating_point():
        raise Failure(
            case,
            expected=f"a floating-point tensor of shape {shape}",
            got=f"dtype {out.dtype}",
            hint="compute in floating point; an integer result means a cast went wrong.",
        )
    got = tuple(out.shape)
    if got == shape:
        return out
    if got == (d, steps):
        hint = "your result is transposed: return one row per value of t, shape (steps, d)."
    elif got in ((steps,), (d,), ()):
        hint = (
            "t has shape (steps,) and the codes (d,): multiply with t[:, None] (shape (steps, 1)) so that "
            "each value of t weights a whole code, giving shape (steps, d)."
        )
    elif out.numel() == steps * d:
        hint = f"return shape (steps, d) = {shape}: one row per value of t."
    else:
        hint = f"return one code per value of t: shape (steps, d) = {shape}."
    raise Failure(case, expected=f"shape {shape}", got=f"shape {got}: {fmt(out)}", hint=hint)


def check_slerp(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    hint: str = DEFAULT_HINT,
    allow: Iterable[str] | bool = (),
    raise_on_failure: bool = False,
) -> CheckResult:
    """Check fn(z_a, z_b, t) -> the points slerp(z_a, z_b; t) of the arc from z_a to z_b, (steps, d).

    z_a, z_b: (d,) latent codes; t: (steps,) values in [0, 1]. slerp(z_a, z_b; t) =
    (sin((1 - t) omega) z_a + sin(t omega) z_b) / sin(omega) with cos(omega) = z_a . z_b /
    (|z_a| |z_b|); for parallel codes (omega = 0) its limit, the straight line (1 - t) z_a + t z_b.
    7 cases: two orthogonal unit codes (the midpoint is (e1 + e2) / sqrt 2), random 20-D codes,
    codes of different norms, a single t, float32 codes, equal codes and parallel codes of different
    norms (where sin(omega) = 0). The inputs must be left unchanged.
    """
    g = torch.Generator().manual_seed(20247)
    cases: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, bool]] = [
        (
            "orthogonal unit codes z_a = [1, 0], z_b = [0, 1], t = [0, 0.5, 1]",
            torch.tensor([1.0, 0.0], dtype=F64),
            torch.tensor([0.0, 1.0], dtype=F64),
            torch.tensor([0.0, 0.5, 1.0], dtype=F64),
            False,
        ),
        (
            "random codes z_a, z_b ~ N(0, I_20), t = 10 points from 0 to 1",
            torch.randn(20, generator=g, dtype=F64),
            torch.randn(20, generator=g, dtype=F64),
            torch.linspace(0, 1, 10, dtype=F64),
            False,
        ),
        (
            "codes of different norms |z_a| = 1, |z_b| = 4 at 60 degrees, 3-D, t = [0, 0.25, 0.5, 0.75, 1]",
            torch.tensor([1.0, 0.0, 0.0], dtype=F64),
            4 * torch.tensor([0.5, math.sqrt(3) / 2, 0.0], dtype=F64),
            torch.linspace(0, 1, 5, dtype=F64),
            False,
        ),
        (
            "a single value t = [0.3] for random 4-D codes (result of shape (1, 4))",
            torch.randn(4, generator=g, dtype=F64),
            torch.randn(4, generator=g, dtype=F64),
            torch.tensor([0.3], dtype=F64),
            False,
        ),
        (
            "float32 codes z_a, z_b ~ N(0, I_8), t = 6 points from 0 to 1",
            torch.randn(8, generator=g),
            torch.randn(8, generator=g),
            torch.linspace(0, 1, 6),
            False,
        ),
    ]
    equal = [(torch.randn(d, generator=g, dtype=dtype), dtype) for d in (3, 20, 50) for dtype in (torch.float32, F64)]
    parallel_a = torch.randn(6, generator=g, dtype=F64)

    def run_case(r: Runner, case: str, z_a: torch.Tensor, z_b: torch.Tensor, t: torch.Tensor, parallel: bool) -> None:
        before = (z_a.clone(), z_b.clone(), t.clone())
        out = _as_path(r.call(case, z_a, z_b, t, exception_hint=_exception_hint), case, len(t), len(z_a))
        unchanged(case, ("z_a", "z_b", "t"), before, (z_a, z_b, t))
        tol = 1e-5 if torch.float32 in (z_a.dtype, out.dtype) else 1e-9
        compare(
            case,
            out,
            slerp_reference(z_a, z_b, t),
            [] if parallel else _slerp_variants(z_a, z_b, t),
            _generic(parallel),
            rtol=tol,
            atol=tol,
        )

    def body(r: Runner) -> None:
        for desc, z_a, z_b, t, parallel in cases:
            run_case(r, r.case(desc), z_a, z_b, t, parallel)
        case = r.case(
            "equal codes z_b = z_a (omega = 0) in 3, 20 and 50 dimensions, float32 and float64: every point is z_a"
        )
        for z, dtype in equal:
            run_case(r, case, z, z.clone(), torch.linspace(0, 1, 5, dtype=dtype), True)
        case = r.case("parallel codes of different norms, z_b = 3 z_a in 6-D (omega = 0): the straight line")
        run_case(r, case, parallel_a, 3 * parallel_a, torch.linspace(0, 1, 5, dtype=F64), True)

    return run_check(
        "check_slerp", fn, body, len(cases) + 2, raise_on_failure, hint=hint, forbidden=REFUSED, allow=allow
    )
