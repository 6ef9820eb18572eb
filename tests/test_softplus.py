"""vaelab.softplus against 50-digit mpmath, torch's F.softplus and sigmoid, in every autograd mode.

softplus is the one formula of the Bernoulli log-likelihood that training runs through, written
with log and sigmoid instead of torch's log1p (see vaelab/core/softplus.py), and with its derivative
written out by hand: so the value, the gradient, the second derivative, forward mode and vmap are
each checked against an independent computation.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vaelab.core.softplus import softplus

F64 = torch.float64
GRID = [0.0, 1e-300, -1e-300, 1e-8, -1e-8, 0.5, -0.5, 3.0, -3.0, 15.0, -15.0, 20.5, -20.5, 36.0, 40.0, -40.0]
GRID += [88.0, -88.0, 300.0, -300.0, 1e4, -1e4]


@pytest.mark.parametrize("dtype, ulps", [(F64, 2.0), (torch.float32, 2.0)])
def test_value_is_exact_to_rounding_against_mpmath(dtype, ulps):
    """|error| <= 2 ulp of max(1, softplus(l)): the log of sigmoid(|l|) in [1/2, 1) is accurate to a
    rounding of 1, so even the e^{-|l|} tail that F.softplus's threshold drops is kept."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    ours = softplus(torch.tensor(GRID, dtype=dtype)).double()
    eps = torch.finfo(dtype).eps
    for logit, value in zip(GRID, ours.tolist()):
        exact = mpmath.log(1 + mpmath.e ** mpmath.mpf(float(torch.tensor(logit, dtype=dtype))))
        tolerance = ulps * eps * max(1.0, float(exact))
        assert abs(value - float(exact)) <= tolerance, (dtype, logit, value, float(exact))


def test_matches_torch_softplus_on_random_logits():
    logits = 8 * torch.randn(64, 784, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(softplus(logits), F.softplus(logits, threshold=1e9), rtol=2e-7, atol=2e-7)
    torch.testing.assert_close(softplus(logits.double()), F.softplus(logits.double(), threshold=1e9))


def test_special_values():
    out = softplus(torch.tensor([float("inf"), float("-inf"), float("nan")]))
    assert out[0] == float("inf") and out[1] == 0.0 and out[2].isnan()


def test_gradient_is_sigmoid_everywhere_including_zero():
    """d/dl softplus(l) = sigmoid(l); at l = 0 it is 1/2 (a max(l, 0) - log sigmoid(|l|) left to
    autograd would give 0 or 1 there, from the kinks of max and |.|)."""
    logits = torch.tensor(GRID, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(softplus(logits).sum(), logits)
    torch.testing.assert_close(grad, torch.sigmoid(logits.detach()), rtol=1e-15, atol=0)
    assert grad[0].item() == 0.5


def test_gradcheck_and_second_derivative():
    """Numerical first and second derivatives (gradcheck, gradgradcheck); the second is
    sigmoid(l) (1 - sigmoid(l)), through the hand-written backward."""
    logits = torch.tensor([-6.0, -1.0, 0.0, 0.3, 2.0, 9.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(softplus, (logits,))
    assert torch.autograd.gradgradcheck(softplus, (logits,))
    (grad,) = torch.autograd.grad(softplus(logits).sum(), logits, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), logits)
    s = torch.sigmoid(logits.detach())
    torch.testing.assert_close(second, s * (1 - s))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # raised inside torch.func
def test_forward_mode_and_torch_func_transforms():
    logits = torch.linspace(-30, 30, 61, dtype=F64)
    tangent = torch.randn(61, dtype=F64, generator=torch.Generator().manual_seed(1))
    value, jvp = torch.func.jvp(softplus, (logits,), (tangent,))
    torch.testing.assert_close(value, F.softplus(logits, threshold=1e9))
    torch.testing.assert_close(jvp, tangent * torch.sigmoid(logits))
    batched = logits.reshape(61, 1).expand(61, 3)
    torch.testing.assert_close(torch.func.vmap(softplus)(batched), F.softplus(batched, threshold=1e9))
    torch.testing.assert_close(torch.func.grad(lambda v: softplus(v).sum())(logits), torch.sigmoid(logits))
    torch.testing.assert_close(
        torch.func.vmap(torch.func.grad(lambda v: softplus(v).sum()))(batched.T.contiguous()),
        torch.sigmoid(batched.T),
    )


def test_keeps_shape_dtype_and_does_not_modify_its_input():
    for dtype in (torch.float32, F64):
        logits = torch.randn(2, 3, 5, dtype=dtype)
        before = logits.clone()
        out = softplus(logits)
        assert out.shape == logits.shape and out.dtype == dtype
        assert torch.equal(logits, before)
