"""check_slerp passes correct spherical interpolations and catches the typical wrong ones.

Correct formulations (the formula with a clamp and a fallback, a rotation in the plane of the two
codes built by Gram-Schmidt, numpy) pass; each mistake of the catalogue fails with the hint aimed
at it; a stub reports "not implemented yet". The check's reference is compared with properties
that do not use its formula: the end points, the angle to z_a growing linearly in t, a constant
norm for codes of equal norm, and the path staying in the plane of the two codes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelab import checks
from vaelab.checks import CheckResult
from vaelab.checks.slerp import slerp_reference


def slerp_formula(z_a, z_b, t):
    """The textbook formula, the cosine clamped, the straight line for parallel codes."""
    cos = (z_a @ z_b / (z_a.norm() * z_b.norm())).clamp(-1, 1)
    omega = torch.arccos(cos)
    t = t[:, None]
    if torch.sin(omega) < 1e-6:
        return (1 - t) * z_a + t * z_b
    return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)


def slerp_rotation(z_a, z_b, t):
    """Rotate in the plane spanned by the codes: z_a = |a| u, z_b = |b| (cos w u + sin w v)."""
    norm_a, norm_b = z_a.norm(), z_b.norm()
    u = z_a / norm_a
    rest = z_b - (z_b @ u) * u
    if rest.norm() <= 1e-5 * norm_b:  # parallel (up to rounding): the straight line
        return torch.stack([(1 - s) * z_a + s * z_b for s in t])
    v = rest / rest.norm()
    omega = torch.atan2(z_b @ v, z_b @ u)
    points = []
    for s in t:
        a = torch.sin((1 - s) * omega) / torch.sin(omega) * norm_a
        b = torch.sin(s * omega) / torch.sin(omega) * norm_b
        direction_b = torch.cos(omega) * u + torch.sin(omega) * v
        points.append(a * u + b * direction_b)
    return torch.stack(points)


def slerp_numpy(z_a, z_b, t):
    a, b, s = z_a.numpy(), z_b.numpy(), t.numpy()[:, None]
    cos = np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1.0, 1.0)
    omega = np.arccos(cos)
    if np.sin(omega) < 1e-6:
        return torch.from_numpy((1 - s) * a + s * b)
    return torch.from_numpy((np.sin((1 - s) * omega) * a + np.sin(s * omega) * b) / np.sin(omega))


def slerp_where(z_a, z_b, t):
    """torch.where picks the straight line where sin(omega) is tiny (both branches computed)."""
    cos = torch.clamp(torch.dot(z_a, z_b) / (torch.linalg.norm(z_a) * torch.linalg.norm(z_b)), -1, 1)
    omega = torch.acos(cos)
    t = t.unsqueeze(1)
    line = (1 - t) * z_a + t * z_b
    arc = (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)
    return torch.where(torch.sin(omega) < 1e-6, line, arc)


CORRECT = {"formula": slerp_formula, "rotation": slerp_rotation, "numpy": slerp_numpy, "where": slerp_where}


def _omega(z_a, z_b):
    return torch.arccos((z_a @ z_b / (z_a.norm() * z_b.norm())).clamp(-1, 1))


def no_clamp(z_a, z_b, t):
    omega = torch.arccos(z_a @ z_b / (z_a.norm() * z_b.norm()))
    t = t[:, None]
    line = (1 - t) * z_a + t * z_b
    arc = (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)
    return torch.where(torch.sin(omega) < 1e-6, line, arc)


def no_clamp_normalized_first(z_a, z_b, t):
    omega = torch.arccos((z_a / z_a.norm()) @ (z_b / z_b.norm()))
    t = t[:, None]
    line = (1 - t) * z_a + t * z_b
    arc = (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)
    return torch.where(torch.sin(omega) < 1e-6, line, arc)


def no_fallback(z_a, z_b, t):
    omega = _omega(z_a, z_b)
    t = t[:, None]
    return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)


def unnormalized_cosine(z_a, z_b, t):
    omega = torch.arccos(z_a @ z_b)
    t = t[:, None]
    return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)


def unnormalized_cosine_clamped(z_a, z_b, t):
    omega = torch.arccos((z_a @ z_b).clamp(-1, 1))
    t = t[:, None]
    line = (1 - t) * z_a + t * z_b
    arc = (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)
    return torch.where(torch.sin(omega) < 1e-6, line, arc)


def one_norm_cosine(z_a, z_b, t):
    omega = torch.arccos((z_a @ z_b / z_a.norm() ** 2).clamp(-1, 1))
    t = t[:, None]
    return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)


def directions_only(z_a, z_b, t):
    return slerp_formula(z_a / z_a.norm(), z_b / z_b.norm(), t)


def nlerp(z_a, z_b, t):
    t = t[:, None]
    line = (1 - t) * z_a + t * z_b
    return line / line.norm(dim=1, keepdim=True) * ((1 - t) * z_a.norm() + t * z_b.norm())


def no_unsqueeze(z_a, z_b, t):
    omega = _omega(z_a, z_b)
    return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)


def scalar_t(z_a, z_b, t):
    omega = _omega(z_a, z_b)
    return (math.sin((1 - float(t)) * omega) * z_a + math.sin(float(t) * omega) * z_b) / math.sin(omega)


def in_place(z_a, z_b, t):
    z_a /= 1.0  # harmless value, but it writes into the input
    z_a.mul_(1.0 + 1e-3)
    return slerp_formula(z_a, z_b, t)


MISTAKES = {
    "straight line": (lambda a, b, t: (1 - t[:, None]) * a + t[:, None] * b, "straight line"),
    "end points swapped": (lambda a, b, t: slerp_formula(b, a, t), "runs from z_b to z_a"),
    "no division by sin": (
        lambda a, b, t: torch.sin((1 - t[:, None]) * _omega(a, b)) * a + torch.sin(t[:, None] * _omega(a, b)) * b,
        "divide by sin(omega)",
    ),
    "cosines instead of sines": (
        lambda a, b, t: (
            (torch.cos((1 - t[:, None]) * _omega(a, b)) * a + torch.cos(t[:, None] * _omega(a, b)) * b)
            / torch.cos(_omega(a, b))
        ),
        "sines, not cosines",
    ),
    "divided by sin twice": (lambda a, b, t: slerp_formula(a, b, t) / torch.sin(_omega(a, b)), "once"),
    "directions only": (directions_only, "norm 1"),
    "normalized straight line": (nlerp, "rescaled the straight line"),
    "cosine divided by |z_a|^2": (one_norm_cosine, "divided by both norms"),
    "cosine not normalized": (unnormalized_cosine, "not the dot product"),
    "cosine not normalized, clamped": (unnormalized_cosine_clamped, "not the dot product"),
    "no fallback for parallel codes": (no_fallback, "limit of slerp"),
    "no clamp": (no_clamp, "Clamp the cosine"),
    "no clamp, normalized first": (no_clamp_normalized_first, "Clamp the cosine"),
    "t without [:, None]": (no_unsqueeze, "t[:, None]"),
    "t used as one number": (scalar_t, "t is a tensor of shape (steps,)"),
    "transposed": (lambda a, b, t: slerp_formula(a, b, t).T.contiguous(), "transposed"),
    "a list of points": (lambda a, b, t: list(slerp_formula(a, b, t)), "return one tensor"),
    "modifies z_a in place": (in_place, "in place"),
}


@pytest.mark.parametrize("fn", list(CORRECT.values()), ids=list(CORRECT))
def test_slerp_check_passes_correct_implementations(fn):
    result = checks.check_slerp(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_slerp: passed (7 cases)"


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_slerp_check_catches_mistake_with_its_hint(mistake):
    fn, hint = MISTAKES[mistake]
    result = checks.check_slerp(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message
    assert "expected" in result.message and "got" in result.message


def test_straight_line_fails_on_the_first_case_with_the_midpoint():
    result = checks.check_slerp(MISTAKES["straight line"][0], hint="fix")
    assert result.case.startswith("case 1 of 7: orthogonal unit codes")
    # expected midpoint (1, 1) / sqrt 2; the straight line gives (1/2, 1/2)
    assert f"{1 / math.sqrt(2):.6g}" in result.expected and "0.5" in result.got


def test_stub_reports_not_implemented_without_raising():
    def stub(z_a, z_b, t):
        raise NotImplementedError("your code here")

    result = checks.check_slerp(stub)
    assert isinstance(result, CheckResult) and not result
    assert "not implemented yet" in result.message


def test_raise_on_failure_raises_assertion_error_with_the_message():
    with pytest.raises(AssertionError, match="straight line"):
        checks.check_slerp(MISTAKES["straight line"][0], raise_on_failure=True)


def test_not_a_function_is_reported():
    result = checks.check_slerp(torch.zeros(3))
    assert not result and "pass the function itself" in result.message


def test_check_leaves_the_global_random_state_alone():
    state = torch.get_rng_state()
    checks.check_slerp(slerp_formula)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("seed", range(5))
def test_reference_has_the_properties_of_the_arc(seed):
    """Independent of the formula: end points, angle to z_a linear in t, norm and plane."""
    g = torch.Generator().manual_seed(seed)
    d = 3 + 7 * seed
    z_a = torch.randn(d, generator=g, dtype=torch.float64)
    z_b = torch.randn(d, generator=g, dtype=torch.float64)
    z_b = z_b / z_b.norm() * z_a.norm()  # equal norms: slerp keeps the norm
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    path = slerp_reference(z_a, z_b, t)
    torch.testing.assert_close(path[0], z_a)
    torch.testing.assert_close(path[-1], z_b)
    torch.testing.assert_close(path.norm(dim=1), z_a.norm().expand(11))
    angle_total = math.acos((z_a @ z_b / (z_a.norm() * z_b.norm())).item())
    angles = torch.arccos((path @ z_a / (path.norm(dim=1) * z_a.norm())).clamp(-1, 1))
    torch.testing.assert_close(angles, t * angle_total, atol=1e-6, rtol=0)
    # every point is a combination of z_a and z_b: least squares in their span leaves no residual
    basis = torch.stack([z_a, z_b], dim=1)
    coefficients = torch.linalg.lstsq(basis, path.T).solution
    torch.testing.assert_close(basis @ coefficients, path.T)


def test_reference_of_parallel_codes_is_the_straight_line():
    z = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    for z_b in (z, 3 * z):
        torch.testing.assert_close(slerp_reference(z, z_b, t), (1 - t[:, None]) * z + t[:, None] * z_b)


def test_arbitrary_exception_is_reported_with_its_line():
    def broken(z_a, z_b, t):
        return torch.ones(2, 3) @ torch.ones(1000, 3)  # a shape error inside the student's code

    result = checks.check_slerp(broken, hint="fix")
    assert not result
    assert "RuntimeError" in result.message and "in broken, line" in result.message


def test_nan_output_fails_cleanly_with_the_nan_hint():
    def nan(z_a, z_b, t):
        return torch.full((len(t), len(z_a)), float("nan"), dtype=z_a.dtype)

    result = checks.check_slerp(nan, hint="fix")
    assert not result and "NaN or inf" in result.message
