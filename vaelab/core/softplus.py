"""softplus(l) = log(1 + e^l), the function inside the Bernoulli log-likelihood (chapter 4).

log p(x|z) = sum_i [x_i l_i - softplus(l_i)] for the decoder's logits l. Written as

    softplus(l) = max(l, 0) - log sigmoid(|l|),

it never overflows (e^l is never formed) and is exact to a rounding or two of max(1, softplus(l))
for every l: sigmoid(|l|) lies in [1/2, 1), so its logarithm is accurate to a rounding of 1 (2e-16
in float64), and for large |l| it tends to -e^{-|l|}, the term that a threshold drops (F.softplus
returns l itself for l > 20). Its derivative is sigmoid(l), written out in ``backward``.

Why not ``torch.nn.functional.softplus``? It computes the same function with ``log1p``, and with
torch 2.14 on a CPU with AVX-512 the float32 ``log1p`` kernel ran about ten times slower than ``log``
(``benchmarks/speed.py``, figure 5): in a training step of the 784-400-20 VAE it took a quarter of
all the time outside the matrix products. This form uses only ``log`` and
``sigmoid``, one formula on every device.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["softplus"]


class _Softplus(torch.autograd.Function):
    """max(l, 0) - log sigmoid(|l|), with d/dl = sigmoid(l) (also in forward mode and under vmap)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(logits: torch.Tensor) -> torch.Tensor:
        return logits.clamp(min=0).sub_(torch.sigmoid(logits.abs()).log_())

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (logits,) = ctx.saved_tensors
        return grad * torch.sigmoid(logits)

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        (logits,) = ctx.saved_tensors
        return tangent * torch.sigmoid(logits)


def softplus(logits: torch.Tensor) -> torch.Tensor:
    """softplus(l) = log(1 + e^l) elementwise, for any l (no overflow), with gradient sigmoid(l)."""
    return _Softplus.apply(logits)
