"""A compiled training step, chosen explicitly: ``fit(..., compile=True)``.

At small batches a step's time goes to per-step overhead (Python, autograd bookkeeping, many small
elementwise kernels), not to the matrix products. ``torch.compile`` traces the objective from the
reading-path code itself (``vaelab.core``: whatever model, prior, likelihood and objective ``fit``
trains) into one graph: AOTAutograd derives its backward, and inductor fuses the elementwise work
into a few C++ (CPU) or Triton (GPU) kernels, so autograd sees one node per step instead of dozens.
``loss.backward()`` and the fused Adam step stay in ``fit``'s loop, as they read.

What stays the same, and what does not:

* **Random draws.** The graph is compiled with inductor's ``fallback_random``: its ``torch.randn``
  is torch's own, drawn from the same generator in the same order, so a compiled run draws exactly
  the noise of ``fit``'s documented contract. Its numbers differ from the eager run's only by float
  rounding (fused kernels sum in another order): the same run, not a bit-identical one.
* **KL warm-up.** The warm-up's weight changes every step, and the objective checks it in Python,
  which would compile a graph per value; steps with kl_weight != 1 run eagerly, the rest compiled.
* **Compile time** is spent on the first step of each new batch shape (the full batches, then the
  last, smaller one: one static graph each); ``compile_seconds`` adds it up (``fit`` records it in the
  History). Compiled graphs are cached for the process: a second ``fit`` of the same model and
  objective does not compile again. torch's recompile limit is raised to 64 graphs per function.
* **Fallback.** Where compiling fails (no C++ compiler, an unsupported torch, a model dynamo cannot
  trace), the step runs eagerly from then on, after a one-line notice; the random state is restored
  first, so the eager step draws what the compiled one would have.

The only change the trace needs: ``vaelab.core.softplus`` is an ``autograd.Function`` with a
forward-mode rule (``jvp``), which dynamo cannot trace, so inside a compiled graph it is replaced by
the same function (same forward, same backward) without one.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from typing import Any

import torch

from ..core import softplus as _softplus_module
from ..utils.messages import notice

__all__ = ["COMPILE_MODES", "CompiledObjective", "compile_mode"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")


def compile_mode(compile: bool | str) -> str | None:
    """``fit``'s compile argument as a torch.compile mode: False -> None (eager), True -> "default",
    or one of ``COMPILE_MODES`` ("reduce-overhead" adds CUDA graphs on a GPU)."""
    if compile is False or compile is None:
        return None
    if compile is True:
        return "default"
    if isinstance(compile, str) and compile in COMPILE_MODES:
        return compile
    raise ValueError(
        f"compile must be True, False or a torch.compile mode ({', '.join(map(repr, COMPILE_MODES))}), "
        f"got {compile!r}; compile=True compiles the training step with the default mode."
    )


class _TracedSoftplus(torch.autograd.Function):
    """``vaelab.core.softplus.softplus`` without the forward-mode rule dynamo cannot trace:
    max(l, 0) - log sigmoid(|l|), with d/dl = sigmoid(l)."""

    @staticmethod
    def forward(logits: torch.Tensor) -> torch.Tensor:
        return logits.clamp(min=0) - torch.sigmoid(logits.abs()).log()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (logits,) = ctx.saved_tensors
        return grad * torch.sigmoid(logits)


_substituted = False


def _substitute_softplus() -> None:
    """Tell dynamo to trace ``_TracedSoftplus`` where the reading path calls ``softplus`` (once)."""
    global _substituted
    if _substituted:
        return
    _substituted = True
    substitute = getattr(torch._dynamo, "substitute_in_graph", None)
    if substitute is None:  # an older torch: the softplus stays a graph break, which still works
        return

    @substitute(_softplus_module.softplus)
    def softplus(logits: torch.Tensor) -> torch.Tensor:
        return _TracedSoftplus.apply(logits)


def _compile(function: Any, mode: str) -> Any:
    """torch.compile with inductor, the mode's options and torch's own random draws."""
    options = dict(torch._inductor.list_mode_options(mode)) if mode != "default" else {}
    options["fallback_random"] = True  # the eager run's torch.randn, from the same generator
    if not (inspect.isfunction(function) or isinstance(function, torch.nn.Module)):
        function = function.__call__  # an objective object: compile its bound __call__
    # one static graph per batch shape (the full batches, the last one): the objective's shape checks
    # do not trace with a symbolic batch size; the limit leaves room for several models and batch sizes
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(function, options=options, dynamic=False)


class CompiledObjective:
    """``objective`` (the protocol of ``vaelab.core.objectives``) compiled by ``torch.compile``; see the
    module docstring. Called like the objective; ``settings()`` and ``kl_weighted`` are its own, so a
    compiled run is the same run as an eager one (resumable in either mode). ``compile_seconds``:
    the time of the calls that compiled; ``failed``: the error that made it fall back to eager."""

    def __init__(self, objective: Any, mode: str = "default") -> None:
        self.objective, self.mode = objective, mode
        self.kl_weighted = getattr(objective, "kl_weighted", False)
        self.compile_seconds = 0.0
        self.failed: BaseException | None = None
        self._seen: set[tuple] = set()  # input shapes already compiled
        try:
            _substitute_softplus()
            self._compiled = _compile(objective, mode)
        except Exception as err:  # torch.compile itself unavailable (platform, Python version)
            self._fall_back(err)

    def settings(self) -> dict[str, object]:
        return self.objective.settings()

    def __repr__(self) -> str:
        return f"CompiledObjective({self.objective!r}, mode={self.mode!r})"

    def __call__(self, model: Any, x: torch.Tensor, kl_weight: float = 1.0) -> tuple[torch.Tensor, Any]:
        if self.failed is not None or kl_weight != 1.0:
            return self.objective(model, x, kl_weight)
        shape = (tuple(x.shape), x.dtype, x.device.type)
        if shape in self._seen:
            return self._compiled(model, x, 1.0)
        rng = _rng_state(x.device)
        tic = time.perf_counter()
        try:
            with _backward_compiled_now():  # so that compile_seconds holds the backward's compile too
                result = self._compiled(model, x, 1.0)
        except Exception as err:
            _set_rng_state(x.device, rng)  # the eager step draws what the compiled one would have
            result = self.objective(model, x, kl_weight)  # an error of the objective itself is raised here
            self._fall_back(err)
            return result
        self.compile_seconds += time.perf_counter() - tic
        self._seen.add(shape)
        return result

    def _fall_back(self, err: BaseException) -> None:
        self.failed = err
        reason = (str(err).strip().splitlines() or [""])[0][:160]
        notice(f"cannot compile the training step ({type(err).__name__}: {reason}); training eagerly.")


def _backward_compiled_now() -> Any:
    """A context in which AOTAutograd compiles the backward graph with the forward (not lazily at the
    first backward), where this torch has the switch."""
    config = torch._functorch.config
    if "force_non_lazy_backward_lowering" in getattr(config, "_config", {}):
        return config.patch(force_non_lazy_backward_lowering=True)
    return contextlib.nullcontext()


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
