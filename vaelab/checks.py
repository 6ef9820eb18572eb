"""Homework checks: run a student's implementation against vaelab's reference.

Each ``check_*`` function calls the student's function on a fixed list of random and edge-case
inputs (fixed seeds, so the verdict is the same on every run) and returns a ``CheckResult``:
truthy if every case passed. Its text is one line on success, e.g.
``check_kl_standard_normal: passed (12 cases)``; on failure it names the input, what was
expected, what came back and a hint aimed at the mistake it recognizes (a sign error, a missing
1/2, the standard deviation used as the variance, an average where a sum belongs, a missing
``log k``, an overflow, no gradient reaching ``mu``, a wrong shape, ...).

A check never raises because of the student's code (a ``NotImplementedError`` stub, an exception,
a wrong shape, NaN): it reports. ``raise_on_failure=True`` raises ``AssertionError`` with the
message instead, for use in ``assert``-style grading scripts. The global random state is left as
it was.

* ``check_reparameterize(fn)``: fn(mu, logvar) -> z ~ N(mu, diag(exp(logvar))), shape of mu.
* ``check_kl_standard_normal(fn)``: fn(mu, logvar) -> KL(N(mu, diag(exp(logvar))) || N(0, I)),
  (batch,).
* ``check_gaussian_log_likelihood(fn)``: fn(x, mean, logvar) -> sum_i log N(x_i | mean_i,
  exp(logvar)), (batch,); logvar a float or a tensor broadcastable to x.
* ``check_bernoulli_log_likelihood(fn)``: fn(x, logits) -> sum_i log Bernoulli(x_i |
  sigmoid(logits_i)), (batch,).
* ``check_elbo(fn)``: fn(model, x) -> one-sample reparameterized ELBO estimate with the
  closed-form KL, (batch,); checked statistically and for gradient flow to the encoder.
* ``check_iwae_bound(fn)``: fn(log_weights: (k, batch)) -> log (1/k) sum_i exp(log_w_i), (batch,).
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .kl import kl_standard_normal
from .likelihoods import bernoulli_log_prob, gaussian_log_prob
from .linear_gaussian import LinearGaussianModel
from .model import VAE, build_vae

__all__ = [
    "CheckResult",
    "check_reparameterize",
    "check_kl_standard_normal",
    "check_gaussian_log_likelihood",
    "check_bernoulli_log_likelihood",
    "check_elbo",
    "check_iwae_bound",
    "summary",
]

F64 = torch.float64
_LOG_2PI = math.log(2.0 * math.pi)
_Z = 5.0  # statistical checks allow this many standard errors


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check. Truthy iff the check passed; ``repr`` is the message.

    name: the check; passed; cases: how many cases ran (all of them on success);
    message: the full text. On failure also case (the input), expected, got and hint.
    """

    name: str
    passed: bool
    cases: int
    message: str
    case: str | None = None
    expected: str | None = None
    got: str | None = None
    hint: str | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    __str__ = __repr__


class _Failure(Exception):
    """Raised inside a check when the student's function fails a case."""

    def __init__(self, case: str, expected: str | None = None, got: str | None = None,
                 hint: str | None = None, headline: str | None = None) -> None:
        super().__init__(case)
        self.case, self.expected, self.got, self.hint, self.headline = case, expected, got, hint, headline


class _Runner:
    """Counts cases, calls the student's function safely, turns a failure into a CheckResult."""

    def __init__(self, name: str, fn: Any) -> None:
        self.name = name
        self.fn = fn
        self.fn_name = getattr(fn, "__name__", type(fn).__name__)
        self.count = 0
        self.total = 0

    def case(self, description: str) -> str:
        self.count += 1
        return f"case {self.count} of {self.total}: {description}"

    def call(self, case: str, *args: Any, exception_hint: Callable[[BaseException], str | None] | None = None) -> Any:
        try:
            return self.fn(*args)
        except NotImplementedError as error:
            detail = f" ({error})" if str(error) else ""
            raise _Failure(
                case, headline=(
                    f"not implemented yet: {self.fn_name} raised NotImplementedError{detail}. "
                    "Replace the `raise NotImplementedError(...)` line with your implementation "
                    "and run this cell again."),
            ) from None
        except Exception as error:  # noqa: BLE001 - the student's bug is reported, not raised
            where = _student_frame(error)
            hint = (exception_hint(error) if exception_hint else None) or _generic_exception_hint(error)
            raise _Failure(case, expected="a tensor", got=f"{type(error).__name__}: {error}{where}",
                           hint=hint) from None


def _student_frame(error: BaseException) -> str:
    """' (in f, line 3: z = ...)' for the deepest frame outside vaelab and torch, if any."""
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        path = frame.filename.replace("\\", "/")
        if "/torch/" in path or path.endswith("vaelab/checks.py"):
            continue
        code = f": {frame.line.strip()}" if frame.line else ""
        return f" (in {frame.name}, line {frame.lineno}{code})"
    return ""


def _generic_exception_hint(error: BaseException) -> str:
    text = str(error)
    if "leaf Variable that requires grad" in text or "in-place operation" in text:
        return ("do not modify the inputs in place (x += ..., x.exp_()); build new tensors, "
                "e.g. std = torch.exp(0.5 * logvar).")
    if "numpy" in text.lower():
        return ("stay in torch: numpy (and .item(), math.* on tensors) breaks the gradient; use "
                "torch.exp, torch.log, .sum(dim=-1) ...")
    if "size of tensor" in text or "shape" in text or "dimension" in text.lower():
        return ("a shape mismatch inside your function: print the shapes of the inputs and of "
                "your intermediate tensors; the input that triggered it is listed above.")
    return "read the error above; the input that triggered it is listed above."


def _run(name: str, fn: Any, body: Callable[[_Runner], None], total: int,
         raise_on_failure: bool) -> CheckResult:
    runner = _Runner(name, fn)
    runner.total = total
    if not callable(fn):
        result = CheckResult(name, False, 0,
                             f"{name}: FAILED: expected your function, got {type(fn).__name__} "
                             f"{fn!r:.60}; pass the function itself, e.g. {name}(my_function) "
                             "(no parentheses after my_function).",
                             hint="pass the function itself, not its result.")
    else:
        try:
            with torch.random.fork_rng(devices=[]):
                body(runner)
            result = CheckResult(name, True, runner.count, f"{name}: passed ({runner.count} cases)")
        except _Failure as failure:
            result = _failure_result(name, runner, failure)
    if raise_on_failure and not result.passed:
        raise AssertionError(result.message)
    return result


def _failure_result(name: str, runner: _Runner, failure: _Failure) -> CheckResult:
    if failure.headline:
        lines = [f"{name}: {failure.headline}", f"  first input: {failure.case}"]
    else:
        lines = [f"{name}: FAILED on {failure.case}"]
        if failure.expected is not None:
            lines.append(f"  expected: {failure.expected}")
        if failure.got is not None:
            lines.append(f"  got:      {failure.got}")
        if failure.hint:
            lines.append(f"  hint: {failure.hint}")
    return CheckResult(name, False, runner.count, "\n".join(lines), case=failure.case,
                       expected=failure.expected, got=failure.got,
                       hint=failure.hint or failure.headline)


# ---------------------------------------------------------------------------------------------
# Formatting and comparison helpers


def _fmt(t: torch.Tensor, limit: int = 4) -> str:
    flat = t.detach().reshape(-1).double().tolist()
    shown = ", ".join(f"{v:.6g}" for v in flat[:limit])
    more = f", ... ({len(flat)} values)" if len(flat) > limit else ""
    return f"[{shown}{more}] shape {tuple(t.shape)}"


def _fmt_at(expected: torch.Tensor, got: torch.Tensor) -> tuple[str, str]:
    """Both tensors formatted; when they are long, also the entry with the largest error."""
    e, g = expected.detach().double(), got.detach().double()
    if e.numel() <= 4:
        return _fmt(e), _fmt(g)
    diff = (e - g).abs().nan_to_num(float("inf"))
    i = int(diff.reshape(-1).argmax())
    return (f"{_fmt(e)}; entry {i}: {e.reshape(-1)[i].item():.6g}",
            f"{_fmt(g)}; entry {i}: {g.reshape(-1)[i].item():.6g}")


def _close(got: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> bool:
    got = got.detach().double()
    expected = expected.detach().double()
    return got.shape == expected.shape and bool(torch.allclose(got, expected, rtol=rtol, atol=atol))


def _as_output(out: Any, case: str, shape: tuple[int, ...], reduced: str, kept: str, inner: int = -1,
               dim: int = -1) -> torch.Tensor:
    """Check the type and shape of a per-example output, with a hint for the usual slips.

    reduced: what the function sums over (e.g. "latent dimensions (dim -1)"), of size inner
    along dimension dim of the input; kept: the name of the dimension kept ("batch").
    """
    if isinstance(out, tuple):
        raise _Failure(case, expected=f"one tensor of shape {shape}",
                       got=f"a tuple of {len(out)} items",
                       hint="return only the tensor (e.g. `return value`, not `return value, other`; "
                            "for vaelab.elbo take its `.elbo` field).")
    if not isinstance(out, torch.Tensor):
        raise _Failure(case, expected=f"a torch.Tensor of shape {shape}", got=f"{type(out).__name__} {out!r:.60}",
                       hint="return a torch.Tensor computed with torch operations (not a float, "
                            "numpy array or list): use torch.exp/torch.log, not math.* or numpy, and no .item().")
    if not out.is_floating_point():
        raise _Failure(case, expected=f"a floating-point tensor of shape {shape}", got=f"dtype {out.dtype}",
                       hint="compute in floating point; an integer result means a cast went wrong.")
    got_shape = tuple(out.shape)
    if got_shape != shape:
        batch = shape[0]
        if got_shape == () or (got_shape == (1,) and inner != 1):
            hint = (f"you reduced over the {kept} too (a single number): return one value per example, "
                    f"shape {shape}; reduce only over the {reduced}, e.g. .sum(dim={dim}) (a bare .sum() or "
                    ".mean() also sums over the batch).")
        elif got_shape in ((batch, inner), (inner, batch)):
            hint = f"you did not reduce over the {reduced}: e.g. .sum(dim={dim})."
        elif got_shape == (inner,):
            hint = (f"you reduced over the {kept} dimension instead of over the {reduced}; "
                    "keep one value per example.")
        else:
            hint = f"return one value per example, shape {shape}, summed over the {reduced}."
        raise _Failure(case, expected=f"shape {shape}", got=f"shape {got_shape}: {_fmt(out)}", hint=hint)
    return out


def _compare(case: str, got: torch.Tensor, expected: torch.Tensor, variants: list[tuple[Any, str]],
             generic: Callable[[torch.Tensor, torch.Tensor], str | None], rtol: float = 1e-6,
             atol: float = 1e-6) -> None:
    """Fail with the hint of the first known wrong variant that ``got`` matches, else a generic one.

    variants: (value of the wrong formula on this input or a callable returning it, hint).
    """
    if _close(got, expected, rtol, atol):
        return
    exp_text, got_text = _fmt_at(expected, got)
    hint = None
    if not torch.isfinite(got).all():
        hint = generic(got, expected)
    else:
        for value, variant_hint in variants:
            try:
                value = value() if callable(value) else value
            except Exception:  # noqa: BLE001 - a variant that cannot be formed here does not apply
                continue
            if (value.shape == expected.shape and torch.isfinite(value).all()
                    and not _close(value, expected, rtol, atol) and _close(got, value, 1e-4, 1e-5)):
                hint = variant_hint
                break
        if hint is None:
            hint = generic(got, expected)
    raise _Failure(case, expected=exp_text, got=got_text, hint=hint)


def _check_finite(case: str, out: torch.Tensor, expected: torch.Tensor, hint: str) -> None:
    if not torch.isfinite(out).all() and torch.isfinite(expected).all():
        exp_text, got_text = _fmt_at(expected, out)
        raise _Failure(case, expected=exp_text, got=got_text, hint=hint)


def _unchanged(case: str, names: Iterable[str], before: Iterable[torch.Tensor], after: Iterable[torch.Tensor]) -> None:
    for name, b, a in zip(names, before, after):
        if isinstance(a, torch.Tensor) and not torch.equal(b, a.detach()):
            raise _Failure(case, expected=f"{name} left unchanged", got=f"{name} was modified",
                           hint=f"your function changed its input {name} in place; build new tensors "
                                "instead (e.g. z = mu + std * eps, not mu += ...).")


def _grad_check(runner: _Runner, case: str, inputs: dict[str, torch.Tensor],
                call: Callable[[], Any], expected_grads: Callable[[torch.Tensor], dict[str, torch.Tensor]],
                what: str, no_grad_hint: str | dict[str, str]) -> None:
    """Call, backpropagate sum(output) and compare the input gradients with the expected ones.

    no_grad_hint: the hint when no gradient arrives, or one per input name."""
    hints = no_grad_hint if isinstance(no_grad_hint, dict) else dict.fromkeys(inputs, no_grad_hint)
    out = call()
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise _Failure(case, expected=f"{what} that carries a gradient to " + " and ".join(inputs),
                       got="a tensor with requires_grad=False" if isinstance(out, torch.Tensor)
                       else type(out).__name__, hint=next(iter(hints.values())))
    out.sum().backward()
    expected = expected_grads(out.detach())
    for name, tensor in inputs.items():
        grad = tensor.grad
        if grad is None or not torch.any(grad != 0):
            raise _Failure(case, expected=f"a gradient for {name}: {_fmt(expected[name])}",
                           got="no gradient" if grad is None else "a gradient of zeros", hint=hints[name])
        if not _close(grad, expected[name], 1e-5, 1e-7):
            exp_text, got_text = _fmt_at(expected[name], grad)
            raise _Failure(case, expected=f"d sum(output) / d {name} = {exp_text}", got=got_text,
                           hint=f"the value is right but its gradient with respect to {name} is not: "
                                "a .detach(), a constant or an in-place edit is cutting or changing the "
                                "computation graph.")


# ---------------------------------------------------------------------------------------------
# KL(N(mu, diag exp(logvar)) || N(0, I))


def _kl_variants(mu: torch.Tensor, lv: torch.Tensor, desc: str) -> list[tuple[Any, str]]:
    mu, lv = mu.detach().double(), lv.detach().double()
    return [
        (lambda: -kl_standard_normal(mu, lv),
         f"your KL is negative for {desc} (a KL is never negative): you return -KL. Kingma and "
         "Welling's 1/2 sum(1 + logvar - mu^2 - exp(logvar)) is the *negative* KL; "
         "KL = 1/2 sum(mu^2 + exp(logvar) - logvar - 1)."),
        (lambda: 0.5 * (mu**2 + lv.exp() + lv - 1).sum(-1),
         "check the sign of the log-variance term: KL = 1/2 sum(mu^2 + exp(logvar) - logvar - 1)."),
        (lambda: (mu**2 + lv.exp() - lv - 1).sum(-1),
         "the factor 1/2 is missing: KL = 1/2 sum(mu^2 + exp(logvar) - logvar - 1)."),
        (lambda: 0.5 * (mu**2 + lv.exp() - lv - 1).mean(-1),
         "you averaged over the latent dimensions; the KL of independent dimensions is their sum: "
         "use .sum(dim=-1)."),
        (lambda: 0.5 * (mu**2 + (0.5 * lv).exp() - lv - 1).sum(-1),
         "you used the standard deviation exp(logvar / 2) where the variance exp(logvar) belongs."),
        (lambda: 0.5 * (mu**2 + (2 * lv).exp() - 2 * lv - 1).sum(-1),
         "you treated logvar as log(sigma): it is log(sigma^2), so the variance is exp(logvar) "
         "and log(sigma^2) is logvar itself."),
        (lambda: 0.5 * (mu**2 + lv.exp() - lv).sum(-1),
         "the -1 is missing: for mu=0, logvar=0, q equals p and the KL must be 0."),
        (lambda: 0.5 * (lv.exp() - lv - 1).sum(-1),
         "the mu^2 term is missing: moving the mean away from 0 must cost KL."),
        (lambda: 0.5 * (mu + lv.exp() - lv - 1).sum(-1),
         "square the mean: the term is mu^2, not mu."),
        (lambda: 0.5 * ((-lv).exp() * (1 + mu**2) + lv - 1).sum(-1),
         "you computed KL(p || q), the reverse direction; the ELBO needs KL(q || p) = "
         "1/2 sum(mu^2 + exp(logvar) - logvar - 1)."),
    ]


def _kl_generic(mu: torch.Tensor, lv: torch.Tensor, desc: str) -> Callable[[torch.Tensor, torch.Tensor], str]:
    def generic(got: torch.Tensor, expected: torch.Tensor) -> str:
        if not torch.isfinite(got).all():
            return ("your KL is NaN or infinite where the exact value is finite: compute the variance "
                    "as torch.exp(logvar) (not from a log of a possibly negative number).")
        if (got < -1e-9).any():
            return (f"your KL is negative for {desc}, but a KL divergence is never negative: check the "
                    "sign of the log-variance term and the overall sign.")
        return "compare your formula term by term with KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - logvar_j - 1)."
    return generic


def check_kl_standard_normal(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                             raise_on_failure: bool = False) -> CheckResult:
    """Check fn(mu, logvar) -> KL(N(mu, diag(exp(logvar))) || N(0, I)), shape (batch,).

    mu, logvar: (batch, latent_dim). Compared with ``vaelab.kl_standard_normal`` on 12 cases:
    single numbers (including the zero of the KL), batches of random inputs, extreme
    log-variances, float32 input, and the gradient with respect to mu and logvar.
    """
    g = torch.Generator().manual_seed(20240)
    cases: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    for m, v in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.0, -1.0), (-2.0, 0.5)]:
        cases.append((f"mu={m:g}, logvar={v:g}", torch.tensor([[m]], dtype=F64), torch.tensor([[v]], dtype=F64)))
    cases.append(("mu=[[0, 0, 0], [1, -1, 2]], logvar=[[0, 0, 0], [0.5, -0.5, 1]]",
                  torch.tensor([[0.0, 0, 0], [1, -1, 2]], dtype=F64),
                  torch.tensor([[0.0, 0, 0], [0.5, -0.5, 1]], dtype=F64)))
    for batch, dim in [(4, 3), (7, 20)]:
        cases.append((f"random mu ~ N(0, 1), logvar ~ U(-2, 2), shape ({batch}, {dim})",
                      torch.randn(batch, dim, generator=g, dtype=F64),
                      4 * torch.rand(batch, dim, generator=g, dtype=F64) - 2))
    cases.append(("extreme log-variances mu=[[0, 3, -1]], logvar=[[-30, 10, 1e-6]]",
                  torch.tensor([[0.0, 3.0, -1.0]], dtype=F64), torch.tensor([[-30.0, 10.0, 1e-6]], dtype=F64)))
    mu32 = torch.randn(5, 4, generator=g)
    lv32 = 2 * torch.rand(5, 4, generator=g) - 1
    cases.append(("float32 mu ~ N(0, 1), logvar ~ U(-1, 1), shape (5, 4)", mu32, lv32))

    def body(r: _Runner) -> None:
        for desc, mu, lv in cases:
            case = r.case(desc)
            before = (mu.clone(), lv.clone())
            out = _as_output(r.call(case, mu, lv), case, (mu.shape[0],), "latent dimensions (dim -1)", "batch",
                             mu.shape[1])
            _unchanged(case, ("mu", "logvar"), before, (mu, lv))
            expected = kl_standard_normal(mu.double(), lv.double())
            rtol = 1e-5 if mu.dtype == torch.float32 else 1e-7
            _compare(case, out, expected, _kl_variants(mu, lv, desc), _kl_generic(mu, lv, desc), rtol=rtol, atol=rtol)
        # Gradient: d KL / d mu = mu, d KL / d logvar = (exp(logvar) - 1) / 2.
        case = r.case("gradient of sum(KL) with respect to mu and logvar, shape (3, 2)")
        mu = torch.tensor([[0.5, -1.0], [2.0, 0.0], [0.0, 0.3]], dtype=F64, requires_grad=True)
        lv = torch.tensor([[0.0, 1.0], [-1.0, 0.5], [2.0, -0.2]], dtype=F64, requires_grad=True)
        _grad_check(r, case, {"mu": mu, "logvar": lv}, lambda: r.call(case, mu, lv),
                    lambda _: {"mu": mu.detach(), "logvar": 0.5 * torch.expm1(lv.detach())}, "a KL",
                    "the KL must be differentiable in mu and logvar (the encoder learns from it): use "
                    "torch operations only, no .item(), numpy, math.* or .detach().")
        # Several latent sizes in one batch row each: a (1, 1) input must give shape (1,).
        case = r.case("batch of one: mu=[[0.7]], logvar=[[-0.4]] must give shape (1,)")
        mu, lv = torch.tensor([[0.7]], dtype=F64), torch.tensor([[-0.4]], dtype=F64)
        out = _as_output(r.call(case, mu, lv), case, (1,), "latent dimensions (dim -1)", "batch", 1)
        _compare(case, out, kl_standard_normal(mu, lv), _kl_variants(mu, lv, "mu=0.7, logvar=-0.4"),
                 _kl_generic(mu, lv, "mu=0.7, logvar=-0.4"))

    return _run("check_kl_standard_normal", fn, body, len(cases) + 2, raise_on_failure)


# ---------------------------------------------------------------------------------------------
# Gaussian log-likelihood


def _gauss_variants(x: torch.Tensor, m: torch.Tensor, lv: Any) -> list[tuple[Any, str]]:
    x, m = x.double(), m.double()
    lv = torch.as_tensor(lv, dtype=F64)
    d = x.shape[-1]

    def ll(var: torch.Tensor, log_norm: torch.Tensor, half: float = 0.5, const: float = _LOG_2PI) -> torch.Tensor:
        return -(half * (x - m) ** 2 / var + 0.5 * log_norm + 0.5 * const).sum(-1)

    ref = gaussian_log_prob(x, m, lv)
    return [
        (lambda: ref / d,
         "you averaged over the pixels; the log-likelihood of an image is the sum over its pixels "
         "(nats per image): use .sum(dim=-1)."),
        (lambda: ll(lv.exp(), lv, const=0.0),
         "the normalizing constant -1/2 log(2 pi) per pixel is missing (it does not change the "
         "gradient, but the value is not a log-density without it)."),
        (lambda: ll(lv.exp(), lv, half=1.0),
         "the factor 1/2 in front of the squared error is missing: -(x - mean)^2 / (2 exp(logvar))."),
        (lambda: ll(lv.expand_as(x), lv.abs().log()),
         "logvar is the log of the variance: divide by exp(logvar), not by logvar."),
        (lambda: ll((2 * lv).exp(), 2 * lv),
         "you treated logvar as log(sigma): it is log(sigma^2), so the variance is exp(logvar)."),
        (lambda: ll((0.5 * lv).exp(), lv),
         "you divided by the standard deviation exp(logvar / 2); the squared error is divided by the "
         "variance exp(logvar)."),
        (lambda: ll(lv.exp(), torch.zeros(())),
         "the -1/2 logvar term (the log of the normalizer sigma) is missing; it matters whenever the "
         "variance is not 1."),
        (lambda: -ref,
         "you return -log p (a loss); return the log-likelihood itself."),
        (lambda: ll(lv.exp(), -lv),
         "check the sign of the log-variance term: log N = -1/2 [(x - mean)^2 / exp(logvar) + logvar + log 2 pi]."),
    ]


def _gauss_generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return ("your log-likelihood is NaN or infinite where the exact value is finite: divide by "
                "torch.exp(logvar) (not by logvar, which can be 0) and avoid log of a variance that can be 0.")
    return ("compare term by term with sum_i -1/2 [(x_i - mean_i)^2 / exp(logvar) + logvar + log(2 pi)], "
            "summed over the pixels (dim -1).")


def _float_logvar_hint(error: BaseException) -> str | None:
    text = str(error)
    if isinstance(error, TypeError) and "float" in text:
        return ("logvar may be a plain Python float (e.g. 0.0): convert it first with "
                "logvar = torch.as_tensor(logvar, dtype=x.dtype).")
    return None


def check_gaussian_log_likelihood(fn: Callable[..., torch.Tensor], *,
                                  raise_on_failure: bool = False) -> CheckResult:
    """Check fn(x, mean, logvar) -> sum_i log N(x_i | mean_i, exp(logvar)), shape (batch,).

    x, mean: (batch, D); logvar: a float or a tensor broadcastable to x (0-d, per pixel (1, D) or
    per entry (batch, D)). Compared with ``vaelab.gaussian_log_prob`` on 12 cases, including the
    gradient with respect to the mean.
    """
    g = torch.Generator().manual_seed(20241)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, dtype=F64)

    cases: list[tuple[str, torch.Tensor, torch.Tensor, Any]] = [
        ("x=[[0]], mean=[[0]], logvar=0.0 (a float)", torch.zeros(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), 0.0),
        ("x=[[1]], mean=[[0]], logvar=0.0", torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), 0.0),
        ("x=[[1]], mean=[[0]], logvar=2.0", torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), 2.0),
        ("x=[[0.5, 1]], mean=[[0, 0.25]], logvar=-1.5", torch.tensor([[0.5, 1.0]], dtype=F64),
         torch.tensor([[0.0, 0.25]], dtype=F64), -1.5),
        ("random x, mean in [0, 1] of shape (4, 784), logvar=0.0", rnd(4, 784), rnd(4, 784), 0.0),
        ("random x, mean of shape (3, 10), logvar=torch.tensor(-1.0) (0-d tensor)", rnd(3, 10), rnd(3, 10),
         torch.tensor(-1.0, dtype=F64)),
        ("random x, mean of shape (3, 6), per-pixel logvar of shape (1, 6)", rnd(3, 6), rnd(3, 6),
         4 * rnd(1, 6) - 2),
        ("random x, mean of shape (2, 5), logvar of shape (2, 5)", rnd(2, 5), rnd(2, 5), 4 * rnd(2, 5) - 2),
        ("small variance: random x, mean of shape (2, 8), logvar=-6.0", rnd(2, 8), rnd(2, 8), -6.0),
        ("float32 random x, mean of shape (3, 784), logvar=torch.tensor(0.5)",
         torch.rand(3, 784, generator=g), torch.rand(3, 784, generator=g), torch.tensor(0.5)),
    ]

    def body(r: _Runner) -> None:
        for desc, x, m, lv in cases:
            case = r.case(desc)
            out = _as_output(r.call(case, x, m, lv, exception_hint=_float_logvar_hint), case, (x.shape[0],),
                             "pixels (dim -1)", "batch", x.shape[1])
            expected = gaussian_log_prob(x.double(), m.double(), torch.as_tensor(lv, dtype=F64))
            rtol = 1e-5 if x.dtype == torch.float32 else 1e-7
            _compare(case, out, expected, _gauss_variants(x, m, lv), _gauss_generic, rtol=rtol, atol=rtol)
        case = r.case("gradient with respect to mean: (x - mean) / exp(logvar), shape (2, 3), logvar=0.5")
        x = torch.tensor([[0.1, 0.9, 0.5], [1.0, 0.0, 0.3]], dtype=F64)
        m = torch.tensor([[0.4, 0.2, 0.5], [0.0, 0.6, 0.9]], dtype=F64, requires_grad=True)
        _grad_check(r, case, {"mean": m}, lambda: r.call(case, x, m, 0.5),
                    lambda _: {"mean": (x - m.detach()) / math.exp(0.5)}, "a log-likelihood",
                    "the log-likelihood must be differentiable in the mean (the decoder learns from it): "
                    "use torch operations only, no .item(), numpy or .detach().")
        case = r.case("batch of one: x=[[2]], mean=[[1]], logvar=torch.tensor([[1.0]]) must give shape (1,)")
        x, m, lv = torch.tensor([[2.0]], dtype=F64), torch.tensor([[1.0]], dtype=F64), torch.tensor([[1.0]], dtype=F64)
        out = _as_output(r.call(case, x, m, lv, exception_hint=_float_logvar_hint), case, (1,),
                         "pixels (dim -1)", "batch", 1)
        _compare(case, out, gaussian_log_prob(x, m, lv), _gauss_variants(x, m, lv), _gauss_generic)

    return _run("check_gaussian_log_likelihood", fn, body, len(cases) + 2, raise_on_failure)


# ---------------------------------------------------------------------------------------------
# Bernoulli log-likelihood


def _bern_variants(x: torch.Tensor, logits: torch.Tensor) -> list[tuple[Any, str]]:
    x, logits = x.double(), logits.double()
    ls, lns = torch.nn.functional.logsigmoid(logits), torch.nn.functional.logsigmoid(-logits)
    ref = bernoulli_log_prob(x, logits)
    return [
        (lambda: -ref,
         "you return the binary cross-entropy (a loss, >= 0); the log-likelihood is its negative."),
        (lambda: ref / x.shape[-1],
         "you averaged over the pixels; the log-likelihood of an image is the sum over its pixels: "
         "use .sum(dim=-1) (F.binary_cross_entropy_with_logits(..., reduction='none').sum(-1))."),
        (lambda: (x * lns + (1 - x) * ls).sum(-1),
         "x and 1 - x are swapped: the pixel is 1 with probability sigmoid(logits), so "
         "log p = x log sigmoid(logits) + (1 - x) log(1 - sigmoid(logits))."),
        (lambda: (x * ls).sum(-1),
         "the (1 - x) log(1 - sigmoid(logits)) term is missing: pixels that are 0 have probability "
         "1 - sigmoid(logits)."),
        (lambda: (x * logits.log() + (1 - x) * (1 - logits).log()).sum(-1),
         "logits are not probabilities: the probability is sigmoid(logits)."),
        (lambda: -torch.nn.functional.binary_cross_entropy_with_logits(x, logits, reduction="none").sum(-1),
         "the arguments of F.binary_cross_entropy_with_logits are swapped: it takes (input=logits, "
         "target=x)."),
        (lambda: (x * logits.sigmoid().log() + (1 - x) * (-logits).log()).sum(-1),
         "log(1 - sigmoid(logits)) = log sigmoid(-logits), not log(-logits)."),
    ]


def _bern_generic_for(logits: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], str]:
    moderate = bool(logits.abs().max() < 20)

    def generic(got: torch.Tensor, expected: torch.Tensor) -> str:
        if not torch.isfinite(got).all() and moderate:
            return ("NaN or -inf for moderate logits: logits are not probabilities (they can be 0 or "
                    "negative); the probability is sigmoid(logits), or better, compute from the logits with "
                    "F.logsigmoid or F.binary_cross_entropy_with_logits.")
        return _bern_generic(got, expected)
    return generic


def _bern_generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return ("your log-likelihood is -inf or NaN for large |logits|: sigmoid(logits) rounds to exactly "
                "0 or 1, and log(0) = -inf. Compute it stably from the logits: "
                "-F.binary_cross_entropy_with_logits(logits, x, reduction='none').sum(-1), or "
                "x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits).")
    if (got > 1e-9).any():
        return "a log-probability of binary pixels is <= 0; yours is positive: check the sign."
    return ("for large |logits| sigmoid then log loses precision (or is clamped); compute from the logits "
            "with F.logsigmoid or F.binary_cross_entropy_with_logits. Otherwise compare with "
            "sum_i [x_i log sigmoid(l_i) + (1 - x_i) log(1 - sigmoid(l_i))].")


def check_bernoulli_log_likelihood(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                                   raise_on_failure: bool = False) -> CheckResult:
    """Check fn(x, logits) -> sum_i log Bernoulli(x_i | sigmoid(logits_i)), shape (batch,).

    x: (batch, D) binary; logits: (batch, D). Compared with ``vaelab.bernoulli_log_prob`` on 11
    cases; the last ones use logits of +-100 and +-150, where sigmoid rounds to 0 or 1 and only a stable
    formula (logsigmoid, binary_cross_entropy_with_logits) gives the right, finite answer.
    """
    g = torch.Generator().manual_seed(20242)

    def binary(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=g, dtype=F64) < 0.3).to(F64)

    cases: list[tuple[str, torch.Tensor, torch.Tensor]] = [
        ("x=[[1]], logits=[[0]]", torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64)),
        ("x=[[1]], logits=[[2]]", torch.ones(1, 1, dtype=F64), torch.full((1, 1), 2.0, dtype=F64)),
        ("x=[[0]], logits=[[2]]", torch.zeros(1, 1, dtype=F64), torch.full((1, 1), 2.0, dtype=F64)),
        ("x=[[0, 1, 1]], logits=[[-1, 0.5, -3]]", torch.tensor([[0.0, 1, 1]], dtype=F64),
         torch.tensor([[-1.0, 0.5, -3.0]], dtype=F64)),
        ("random binary x, logits ~ N(0, 4) of shape (4, 784)", binary(4, 784),
         2 * torch.randn(4, 784, generator=g, dtype=F64)),
        ("random binary x, logits ~ N(0, 1) of shape (6, 5)", binary(6, 5), torch.randn(6, 5, generator=g, dtype=F64)),
        ("float32 random binary x, logits ~ N(0, 4) of shape (3, 784)", binary(3, 784).float(),
         2 * torch.randn(3, 784, generator=g)),
        ("batch of one: x=[[1, 0]], logits=[[0.3, 0.3]] must give shape (1,)", torch.tensor([[1.0, 0.0]], dtype=F64),
         torch.tensor([[0.3, 0.3]], dtype=F64)),
        ("large logits: x=[[1, 0, 1, 0]], logits=[[100, -100, 30, -30]] (confident and right)",
         torch.tensor([[1.0, 0, 1, 0]], dtype=F64), torch.tensor([[100.0, -100, 30, -30]], dtype=F64)),
        ("large logits: x=[[0, 1]], logits=[[150, -150]] (confident and wrong, log p = -300)",
         torch.tensor([[0.0, 1.0]], dtype=F64), torch.tensor([[150.0, -150.0]], dtype=F64)),
    ]

    def body(r: _Runner) -> None:
        for desc, x, logits in cases:
            case = r.case(desc)
            out = _as_output(r.call(case, x, logits), case, (x.shape[0],), "pixels (dim -1)", "batch", x.shape[1])
            expected = bernoulli_log_prob(x.double(), logits.double())
            rtol = 1e-5 if x.dtype == torch.float32 else 1e-7
            _compare(case, out, expected, _bern_variants(x, logits), _bern_generic_for(logits), rtol=rtol, atol=rtol)
        case = r.case("gradient with respect to logits: x - sigmoid(logits), shape (2, 3)")
        x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=F64)
        logits = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.0, -0.5]], dtype=F64, requires_grad=True)
        _grad_check(r, case, {"logits": logits}, lambda: r.call(case, x, logits),
                    lambda _: {"logits": x - logits.detach().sigmoid()}, "a log-likelihood",
                    "the log-likelihood must be differentiable in the logits (the decoder learns from it): "
                    "use torch operations only, no .item(), numpy or .detach().")

    return _run("check_bernoulli_log_likelihood", fn, body, len(cases) + 1, raise_on_failure)


# ---------------------------------------------------------------------------------------------
# log-mean-exp of importance weights


def _iwae_reference(lw: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(lw.double(), dim=0) - math.log(lw.shape[0])


def _iwae_variants(lw: torch.Tensor) -> list[tuple[Any, str]]:
    lw = lw.double()
    k, batch = lw.shape
    lse = torch.logsumexp(lw, dim=0)
    return [
        (lambda: lse,
         f"the -log k is missing: L_k = log (1/k) sum_i w_i = logsumexp(log_w, dim=0) - log k "
         f"(here k={k})."),
        (lambda: lse + math.log(k),
         "check the sign of log k: L_k = logsumexp(log_w, dim=0) - log k."),
        (lambda: lw.mean(0),
         "you averaged the log-weights, which gives the ELBO (L_1 on average), not L_k: average the "
         "weights inside the log, logsumexp(log_w, dim=0) - log k."),
        (lambda: lse / k,
         "you divided the log by k; the 1/k belongs inside the log: logsumexp(log_w, dim=0) - log k."),
        (lambda: lw.max(0).values,
         "the largest log-weight alone is not the bound: L_k = logsumexp(log_w, dim=0) - log k."),
        (lambda: lse - math.log(batch),
         f"you subtracted log(batch size) = log {batch}; subtract log k = log {k}, the number of "
         "samples (dim 0)."),
        (lambda: torch.logsumexp(lw, dim=1) - math.log(batch),
         "you reduced over the batch dimension: log_weights is (k, batch), reduce over dim 0."),
        (lambda: torch.logsumexp(lw, dim=1) - math.log(k),
         "you reduced over the batch dimension: log_weights is (k, batch), reduce over dim 0."),
    ]


def _iwae_generic(got: torch.Tensor, expected: torch.Tensor) -> str:
    if not torch.isfinite(got).all():
        return ("log(mean(exp(log_w))) underflows to log(0) = -inf (or overflows to inf) when the log-weights "
                "are large in magnitude, e.g. -1000 nats for an image: use torch.logsumexp(log_w, dim=0) - "
                "log k, which subtracts the maximum before exponentiating.")
    return "compare with L_k = log (1/k) sum_i exp(log_w_i) = torch.logsumexp(log_w, dim=0) - log k."


def check_iwae_bound(fn: Callable[[torch.Tensor], torch.Tensor], *, raise_on_failure: bool = False) -> CheckResult:
    """Check fn(log_weights) -> L_k = log (1/k) sum_{i=1}^k exp(log_w_i), shape (batch,).

    log_weights: (k, batch), one column per example. 12 cases: k = 1 (L_1 is the ELBO), equal
    weights, a square (k = batch) input that reveals the wrong reduction dimension, log-weights
    around -1000 and +800 nats (naive exp under/overflows), a zero weight (log w = -inf), k = 1000,
    float32, and the gradient (the normalized weights).
    """
    g = torch.Generator().manual_seed(20243)
    inf = float("inf")
    cases: list[tuple[str, torch.Tensor]] = [
        ("k=1: log_weights=[[-3, 0.5]]", torch.tensor([[-3.0, 0.5]], dtype=F64)),
        ("equal weights: log_weights = zeros of shape (5, 3) (k=5, batch=3)", torch.zeros(5, 3, dtype=F64)),
        ("log_weights = log([[1, 2], [3, 4]]) (k=2, batch=2)", torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64).log()),
        ("random log_weights ~ N(-90, 9) of shape (10, 4)", -90 + 3 * torch.randn(10, 4, generator=g, dtype=F64)),
        ("square input: random log_weights ~ N(0, 4) of shape (3, 3)", 2 * torch.randn(3, 3, generator=g, dtype=F64)),
        ("k=1000 samples: log_weights ~ N(-100, 100) of shape (1000, 2)",
         -100 + 10 * torch.randn(1000, 2, generator=g, dtype=F64)),
        ("a zero weight: log_weights=[[-inf, 0], [1, -inf], [2, 3]]",
         torch.tensor([[-inf, 0.0], [1.0, -inf], [2.0, 3.0]], dtype=F64)),
        ("float32 log_weights ~ N(-50, 25) of shape (8, 3)", -50 + 5 * torch.randn(8, 3, generator=g)),
        ("very negative log-weights ~ N(-1000, 25), as for MNIST images, shape (20, 3)",
         -1000 + 5 * torch.randn(20, 3, generator=g, dtype=F64)),
        ("very large log-weights ~ N(800, 25), shape (20, 3)", 800 + 5 * torch.randn(20, 3, generator=g, dtype=F64)),
    ]

    def body(r: _Runner) -> None:
        for desc, lw in cases:
            case = r.case(desc)
            before = lw.clone()
            out = _as_output(r.call(case, lw), case, (lw.shape[1],), "k samples (dim 0)", "batch", lw.shape[0], 0)
            _unchanged(case, ("log_weights",), (before,), (lw,))
            rtol = 1e-6 if lw.dtype == torch.float32 else 1e-9
            _compare(case, out, _iwae_reference(lw), _iwae_variants(lw), _iwae_generic, rtol=rtol, atol=1e-7)
        case = r.case("gradient: d L_k / d log_w_i = w_i / sum_j w_j, shape (4, 2)")
        lw = torch.tensor([[0.0, -5.0], [1.0, -4.0], [-2.0, -6.0], [0.5, -4.5]], dtype=F64, requires_grad=True)
        _grad_check(r, case, {"log_weights": lw}, lambda: r.call(case, lw),
                    lambda _: {"log_weights": torch.softmax(lw.detach(), dim=0)}, "a bound",
                    "the bound must be differentiable in the log-weights (IWAE trains with it): use torch "
                    "operations only, no .item(), numpy or .detach().")
        case = r.case("k=4, batch=1: log_weights of shape (4, 1) must give shape (1,)")
        lw = torch.tensor([[-1.0], [-2.0], [-3.0], [-4.0]], dtype=F64)
        out = _as_output(r.call(case, lw), case, (1,), "k samples (dim 0)", "batch", 4, 0)
        _compare(case, out, _iwae_reference(lw), _iwae_variants(lw), _iwae_generic, rtol=1e-9, atol=1e-9)

    return _run("check_iwae_bound", fn, body, len(cases) + 2, raise_on_failure)


# ---------------------------------------------------------------------------------------------
# Reparameterization


def _moment_bound(n: int) -> tuple[float, float]:
    """5 standard errors of the sample mean and of the sample variance of n standard normals."""
    return _Z / math.sqrt(n), _Z * math.sqrt(2.0 / (n - 1))


def check_reparameterize(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                         raise_on_failure: bool = False) -> CheckResult:
    """Check fn(mu, logvar) -> z ~ N(mu, diag(exp(logvar))), same shape as mu.

    mu, logvar: (batch, latent_dim). 8 cases: shapes; the mean and variance of 20,000 draws per
    dimension (within 5 standard errors of mu and exp(logvar)); independent noise across rows and
    dimensions; z = mu when the variance is tiny; fresh noise on every call; the gradient
    dz/dmu = 1 and dz/dlogvar = (z - mu) / 2 (the reparameterization trick); float32 input.
    """
    name = "check_reparameterize"

    def sample(r: _Runner, case: str, mu: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
        before = (mu.clone(), lv.clone())
        out = r.call(case, mu, lv)
        if isinstance(out, tuple):
            raise _Failure(case, expected=f"one tensor z of shape {tuple(mu.shape)}",
                           got=f"a tuple of {len(out)} items",
                           hint="return only z (not z together with eps, mu or std).")
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise _Failure(case, expected=f"a floating-point tensor of shape {tuple(mu.shape)}",
                           got=f"{type(out).__name__} {out!r:.60}",
                           hint="return z = mu + std * eps as a torch tensor.")
        if tuple(out.shape) != tuple(mu.shape):
            hint = "z must have the shape of mu: draw eps with torch.randn_like(mu)."
            if out.dim() == mu.dim() + 1:
                hint = "z must have the shape of mu (one sample per row), without an extra sample dimension."
            raise _Failure(case, expected=f"shape {tuple(mu.shape)}", got=f"shape {tuple(out.shape)}", hint=hint)
        _unchanged(case, ("mu", "logvar"), before, (mu, lv))
        if not torch.isfinite(out).all():
            raise _Failure(case, expected="finite samples", got=_fmt(out),
                           hint="z contains NaN or inf: compute std = torch.exp(0.5 * logvar) (logvar may be "
                                "negative, so do not take its square root or log).")
        return out

    def body(r: _Runner) -> None:
        torch.manual_seed(1234)
        case = r.case("shapes: mu, logvar of shape (1, 1), (4, 3) and (2, 20)")
        for shape in [(1, 1), (4, 3), (2, 20)]:
            sample(r, case, torch.zeros(shape, dtype=F64), torch.zeros(shape, dtype=F64))

        n = 20_000
        mu_row = torch.tensor([0.0, 1.5, -2.0, 0.5], dtype=F64)
        lv_row = torch.tensor([0.0, 1.0, -1.5, 2.0], dtype=F64)
        desc = f"{n} rows of mu=[0, 1.5, -2, 0.5], logvar=[0, 1, -1.5, 2]: sample mean and variance"
        case = r.case(desc)
        mu, lv = mu_row.expand(n, 4).clone(), lv_row.expand(n, 4).clone()
        z = sample(r, case, mu, lv).detach().double()
        mean, var = z.mean(0), z.var(0)
        std = (0.5 * lv_row).exp()
        tol_mean, tol_var = _moment_bound(n)
        if var.max() < 1e-12:
            raise _Failure(case, expected=f"variance exp(logvar) = {_fmt(lv_row.exp())}",
                           got=f"variance {_fmt(var)}: every row is the same",
                           hint="every row got the same noise (or none): draw one eps per entry, "
                                "eps = torch.randn_like(mu), not torch.randn(latent_dim) or a fixed number.")
        spread = torch.maximum(std, var.sqrt())
        if not ((mean - mu_row).abs() <= tol_mean * spread).all():
            hint = "the samples are not centred at mu: z = mu + std * eps with eps ~ N(0, I)."
            if ((mean - mu_row - 0.5 * std).abs() <= tol_mean * spread).all():
                hint = ("the samples are centred at mu + std / 2: torch.rand draws uniform noise on [0, 1); "
                        "use standard normal noise, torch.randn_like(mu).")
            elif (mean.abs() <= tol_mean * var.sqrt()).all():
                hint = "the samples are centred at 0, not at mu: did you forget to add mu?"
            raise _Failure(case, expected=f"sample mean ~ mu = {_fmt(mu_row)} (within {_Z:g} standard errors)",
                           got=f"sample mean {_fmt(mean)}", hint=hint)
        if not ((var / lv_row.exp() - 1).abs() <= tol_var).all():
            variants = [
                ((2 * lv_row).exp(), "you multiplied eps by the variance exp(logvar); multiply by the standard "
                                     "deviation std = exp(logvar / 2)."),
                (lv_row**2, "you multiplied eps by logvar itself; the standard deviation is exp(logvar / 2)."),
                ((-lv_row).exp(), "check the sign in the exponent: std = exp(+logvar / 2)."),
                (torch.ones(4, dtype=F64), "the spread of z does not depend on logvar: multiply eps by "
                                           "std = exp(logvar / 2)."),
                ((2 * lv_row).exp() / 4, "the 1/2 belongs inside the exponent: std = exp(0.5 * logvar), "
                                          "not 0.5 * exp(logvar)."),
                ((0.5 * lv_row).exp(), "you used exp(logvar / 4) as std (variance exp(logvar / 2)); "
                                       "std = exp(logvar / 2)."),
            ]
            hint = "the variance of z should be exp(logvar): z = mu + exp(0.5 * logvar) * eps."
            for value, variant_hint in variants:
                if ((var - value).abs() <= tol_var * value + 1e-12).all():
                    hint = variant_hint
                    break
            raise _Failure(case, expected=f"sample variance ~ exp(logvar) = {_fmt(lv_row.exp())} "
                                          f"(within {_Z:g} standard errors)",
                           got=f"sample variance {_fmt(var)}", hint=hint)

        case = r.case(f"{n} rows: noise independent across latent dimensions")
        eps = (z - mu_row) / std
        corr = torch.corrcoef(eps.T)
        off = (corr - torch.eye(4, dtype=F64)).abs().max()
        if off > _Z / math.sqrt(n):
            raise _Failure(case, expected=f"correlation between dimensions ~ 0 (|r| < {_Z / math.sqrt(n):.3f})",
                           got=f"max |r| = {off.item():.3f}",
                           hint="every latent dimension got the same noise: draw one eps per entry, "
                                "eps = torch.randn_like(mu), not torch.randn(batch, 1).")

        case = r.case("tiny variance: mu=[[1, -2, 3]], logvar=[[-40, -40, -40]] gives z = mu")
        mu = torch.tensor([[1.0, -2.0, 3.0]], dtype=F64)
        lv = torch.full((1, 3), -40.0, dtype=F64)
        z = sample(r, case, mu, lv)
        if not _close(z, mu, 0.0, 1e-6):
            raise _Failure(case, expected=_fmt(mu), got=_fmt(z),
                           hint="with variance exp(-40) ~ 4e-18, z must equal mu: z = mu + exp(0.5 * logvar) * eps.")

        case = r.case("two calls with the same mu=0, logvar=0 of shape (3, 2) give different z")
        mu, lv = torch.zeros(3, 2, dtype=F64), torch.zeros(3, 2, dtype=F64)
        z1, z2 = sample(r, case, mu, lv), sample(r, case, mu, lv)
        if torch.equal(z1, z2):
            raise _Failure(case, expected="fresh noise on every call", got=f"the same z twice: {_fmt(z1)}",
                           hint="do not call torch.manual_seed or reuse a stored eps inside the function; "
                                "draw new noise with torch.randn_like(mu) on every call.")

        case = r.case("gradient of sum(z): dz/dmu = 1 and dz/dlogvar = (z - mu) / 2, shape (4, 3)")
        mu = torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.5, 0.0], [-0.5, 0.0, 1.0], [0.3, -2.0, 0.7]], dtype=F64,
                          requires_grad=True)
        lv = torch.tensor([[0.0, 1.0, -1.0], [0.5, -0.5, 2.0], [1.5, 0.0, -2.0], [0.2, 0.4, -0.3]], dtype=F64,
                          requires_grad=True)
        _grad_check(r, case, {"mu": mu, "logvar": lv}, lambda: sample(r, case, mu, lv),
                    lambda z: {"mu": torch.ones_like(mu), "logvar": 0.5 * (z - mu.detach())}, "z",
                    {"mu": "no gradient reaches mu: did you sample with torch.randn, torch.normal(mu, std) or "
                           "Normal(...).sample() without the reparameterization? Write z = mu + std * eps with "
                           "eps = torch.randn_like(mu) and std = torch.exp(0.5 * logvar) (or use .rsample()).",
                     "logvar": "no gradient with respect to logvar reaches it: compute std = torch.exp(0.5 * "
                               "logvar) with torch operations, without .detach(), math.exp, float() or .item()."})

        case = r.case("float32 mu, logvar of shape (5, 2) give float32 z")
        mu32, lv32 = torch.zeros(5, 2), torch.zeros(5, 2)
        z = sample(r, case, mu32, lv32)
        if z.dtype != torch.float32:
            raise _Failure(case, expected="dtype torch.float32 (the dtype of mu)", got=f"dtype {z.dtype}",
                           hint="create the noise with mu's dtype and device: eps = torch.randn_like(mu).")

    return _run(name, fn, body, 7, raise_on_failure)


# ---------------------------------------------------------------------------------------------
# ELBO


_ELBO_COPIES = 2000  # one-sample estimates per example: the statistical check averages them
_ELBO_REF_SAMPLES = 20_000


def _elbo_models() -> list[tuple[str, VAE, torch.Tensor]]:
    """Two small float64 VAEs with fixed weights and their data (4 distinct examples each).

    A Bernoulli MLP VAE (16 pixels, 2 latents, decoder weights scaled up so that decoding z = mu
    differs clearly from averaging over z ~ q) and a linear-Gaussian VAE (6 dimensions) with a
    deliberately imperfect encoder.
    """
    torch.manual_seed(7)
    bern = build_vae(latent_dim=2, hidden_dim=16, side=4, likelihood="bernoulli").double()
    with torch.no_grad():
        for p in bern.decoder.parameters():
            p.mul_(2.0)
        bern.encoder.head.bias[:2].copy_(torch.tensor([1.5, -1.0]))  # a KL of about 1.8 nats
        bern.encoder.head.bias[2:].fill_(-0.5)
    g = torch.Generator().manual_seed(8)
    x_bern = (torch.rand(4, 16, generator=g, dtype=F64) < 0.5).to(F64)
    lin = LinearGaussianModel.random(data_dim=6, latent_dim=2, sigma2=0.5, seed=3)
    encoder = lin.exact_encoder()
    with torch.no_grad():
        encoder.linear.weight.mul_(0.8)
        encoder.logvar.add_(0.7)
    gauss = lin.vae(encoder)
    x_gauss = lin.sample(4, generator=g)
    return [("a Bernoulli MLP VAE (16 pixels, 2 latents)", bern, x_bern),
            ("a linear-Gaussian VAE (6 dimensions, Gaussian likelihood)", gauss, x_gauss)]


def _elbo_reference(model: VAE, x: torch.Tensor, samples: int = _ELBO_REF_SAMPLES) -> dict[str, torch.Tensor]:
    """Monte Carlo reference for E_q[one-sample ELBO] and E_q[its gradient in mu and logvar].

    Returns per example (batch,): 'mean', 'std' of the one-sample estimate, the variant values
    'recon' (E_q log p(x|z)), 'kl', 'plugin' (log p(x | z = mu)), and per (batch, latent):
    'gmu', 'gmu_std', 'glv', 'glv_std' (mean and std of d estimate / d mu, d logvar).
    """
    with torch.enable_grad():
        mu, lv = model.encode(x)
        mu, lv = mu.detach().requires_grad_(), lv.detach().requires_grad_()
        eps = torch.randn(samples, *mu.shape, dtype=mu.dtype)
        z = mu + (0.5 * lv).exp() * eps
        recon = model.likelihood.log_prob(x, model.decode(z), validate=False)  # (S, batch)
        kl = kl_standard_normal(mu, lv)
        est = recon - kl
        gmu, glv = torch.autograd.grad(est.sum(), (mu, lv))  # sums over S
        # Per-sample gradients are needed for standard errors: d recon_s/dz_s via a second pass.
        zs = z.detach().requires_grad_()
        recon_s = model.likelihood.log_prob(x, model.decode(zs), validate=False)
        (dz,) = torch.autograd.grad(recon_s.sum(), zs)  # (S, batch, latent)
    std = (0.5 * lv).exp().detach()
    per_gmu = dz - mu.detach()
    per_glv = dz * 0.5 * std * eps - 0.5 * torch.expm1(lv.detach())
    with torch.no_grad():
        plugin = model.likelihood.log_prob(x, model.decode(mu), validate=False) - kl
    return {
        "mean": est.mean(0).detach(), "std": est.std(0).detach(), "recon": recon.mean(0).detach(),
        "kl": kl.detach(), "plugin": plugin.detach(),
        "gmu": gmu / samples, "gmu_std": per_gmu.std(0), "glv": glv / samples, "glv_std": per_glv.std(0),
    }


class _EncoderTap:
    """Forward hook that keeps the encoder's outputs (mu, logvar) and their gradients."""

    def __init__(self, model: VAE) -> None:
        self.outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.handle = model.encoder.register_forward_hook(self._hook)

    def _hook(self, module: Any, inputs: Any, output: Any) -> None:
        mu, lv = output
        if mu.requires_grad:
            mu.retain_grad()
            lv.retain_grad()
        self.outputs.append((mu, lv))

    def grads(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gmu = glv = None
        for mu, lv in self.outputs:
            if mu.grad is not None:
                gmu = mu.grad if gmu is None else gmu + mu.grad
            if lv.grad is not None:
                glv = lv.grad if glv is None else glv + lv.grad
        return gmu, glv


def check_elbo(fn: Callable[[VAE, torch.Tensor], torch.Tensor], *, raise_on_failure: bool = False) -> CheckResult:
    """Check fn(model, x) -> a one-sample reparameterized ELBO estimate, shape (batch,):
    log p(x | z) - KL(q(z|x) || p(z)) with z = mu + exp(logvar / 2) * eps ~ q(z|x) and the
    closed-form KL, where the likelihood is ``model.likelihood.log_prob(x, model.decode(z))``.

    x: (batch, D). 8 cases on two small fixed VAEs (a Bernoulli MLP and a linear-Gaussian one):
    the output shape; the average of 2000 one-sample estimates per example against a 20,000-sample
    reference (within 5 standard errors); fresh noise per example; and the gradients reaching the
    encoder's mu and logvar (on average equal to the reference's, within 5 standard errors).
    """
    name = "check_elbo"

    def body(r: _Runner) -> None:
        torch.manual_seed(99)
        models = _elbo_models()
        for label, model, x in models:
            model.requires_grad_(True)
            batch = x.shape[0]

            d = x.shape[1]
            case = r.case(f"{label}: x of shape (1, {d}) and ({batch}, {d}) give shapes (1,), ({batch},)")
            for rows in (1, batch):
                out = r.call(case, model, x[:rows])
                _as_output(out, case, (rows,), "pixels (dim -1)", "batch", x.shape[1])

            desc = (f"{label}: mean of {_ELBO_COPIES} one-sample estimates for each of {batch} examples "
                    f"(each example repeated {_ELBO_COPIES} times in one batch)")
            case = r.case(desc)
            ref = _elbo_reference(model, x)
            x_rep = x.repeat(_ELBO_COPIES, 1)
            tap = _EncoderTap(model)
            try:
                out = _as_output(r.call(case, model, x_rep), case, (len(x_rep),), "pixels (dim -1)", "batch",
                                 x.shape[1])
                values = out.detach().double().reshape(_ELBO_COPIES, batch)
                mean, spread = values.mean(0), values.std(0)
                scale = torch.maximum(spread, ref["std"])
                tol = _Z * torch.sqrt(scale**2 / _ELBO_COPIES + ref["std"] ** 2 / _ELBO_REF_SAMPLES)
                if not torch.isfinite(values).all():
                    raise _Failure(case, expected=_fmt(ref["mean"]), got=_fmt(out),
                                   hint="NaN or inf in your ELBO: compute log p(x|z) with "
                                        "model.likelihood.log_prob(x, model.decode(z)) (the decoder outputs "
                                        "logits or means, not probabilities).")
                if not ((mean - ref["mean"]).abs() <= tol).all():
                    d = x.shape[1]
                    if (spread < 1e-9 * (1 + ref["std"])).all() and not ((mean - ref["plugin"]).abs() <= tol).all():
                        raise _Failure(case, expected=f"spread (std) of the copies ~ {_fmt(ref['std'])}",
                                       got=f"spread {_fmt(spread)}",
                                       hint="every example got the same noise: draw eps with the shape of mu, "
                                            "eps = torch.randn_like(mu), not torch.randn(latent_dim).")
                    variants = [
                        (ref["recon"] + ref["kl"], "you added the KL: ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z))."),
                        (-ref["mean"], "you return -ELBO (the loss); return the ELBO itself."),
                        (ref["plugin"], "you decoded the posterior mean mu without sampling: the ELBO needs "
                                        "z ~ q(z|x), z = mu + exp(0.5 * logvar) * eps."),
                        (ref["recon"] / d - ref["kl"], "you averaged log p(x|z) over the pixels; sum them "
                                                      "(nats per image)."),
                        (ref["recon"], "the KL term is missing: ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z))."),
                        (ref["recon"] - _ELBO_COPIES * ref["kl"].sum(),
                         "you subtracted the KL summed over the whole batch; subtract each example's own KL."),
                        (-ref["kl"], "the reconstruction term log p(x|z) is missing."),
                    ]
                    hint = None
                    for value, variant_hint in variants:
                        if ((mean - value).abs() <= tol).all():
                            hint = variant_hint
                            break
                    if hint is None and label.startswith("a linear-Gaussian"):
                        hint = ("right for the Bernoulli VAE, wrong for a Gaussian likelihood: compute "
                                "log p(x|z) with model.likelihood.log_prob(x, model.decode(z)) instead of a "
                                "fixed formula, so the ELBO works for every likelihood.")
                    if hint is None:
                        hint = ("compare with log p(x|z) - KL, where z = mu + exp(0.5 * logvar) * eps, "
                                "log p(x|z) = model.likelihood.log_prob(x, model.decode(z)) and "
                                "KL = vaelab.kl_standard_normal(mu, logvar).")
                    raise _Failure(case, expected=f"average {_fmt(ref['mean'])} (within {_Z:g} standard errors, "
                                                  f"{_fmt(tol)})", got=f"average {_fmt(mean)}", hint=hint)

                case = r.case(f"{label}: the {_ELBO_COPIES} copies of an example get independent noise")
                if (spread < 1e-9 * (1 + ref["std"])).any():
                    raise _Failure(case, expected=f"spread (std) ~ {_fmt(ref['std'])}", got=f"spread {_fmt(spread)}",
                                   hint="every example got the same noise: draw eps with the shape of mu, "
                                        "eps = torch.randn_like(mu), not torch.randn(latent_dim).")


                case = r.case(f"{label}: gradients reaching the encoder's mu and logvar (averaged over the copies)")
                no_grad_hint = ("no gradient reaches the encoder: the ELBO must be computed with torch operations "
                                "from model.encode(x), without torch.no_grad(), .detach(), .item() or .sample().")
                if not out.requires_grad:
                    raise _Failure(case, expected="an ELBO that carries a gradient", got="requires_grad=False",
                                   hint=no_grad_hint)
                out.sum().backward()
                gmu, glv = tap.grads()
                if gmu is None or glv is None:
                    raise _Failure(case, expected="gradients for mu and logvar", got="no gradient", hint=no_grad_hint)
                mu, lv = tap.outputs[0]
                gmu = gmu.double().reshape(_ELBO_COPIES, batch, -1)
                glv = glv.double().reshape(_ELBO_COPIES, batch, -1)
                for symbol, grad, key in (("mu", gmu, "gmu"), ("logvar", glv, "glv")):
                    kl_only = (-mu.detach() if symbol == "mu" else -0.5 * torch.expm1(lv.detach())).double()
                    kl_only = kl_only.reshape(_ELBO_COPIES, batch, -1)
                    if torch.allclose(grad, kl_only, rtol=1e-6, atol=1e-9):
                        raise _Failure(case, expected=f"d ELBO / d {symbol} including the reconstruction term",
                                       got=f"only the KL's gradient {_fmt(kl_only[0])}",
                                       hint=f"no gradient reaches {symbol} through z: did you sample with "
                                            "torch.randn (or .sample(), torch.normal, .detach()) without the "
                                            "reparameterization? Use z = mu + exp(0.5 * logvar) * eps.")
                    g_mean = grad.mean(0)
                    g_tol = _Z * torch.sqrt(torch.maximum(grad.std(0), ref[key + "_std"]) ** 2 / _ELBO_COPIES
                                            + ref[key + "_std"] ** 2 / _ELBO_REF_SAMPLES) + 1e-9
                    if not ((g_mean - ref[key]).abs() <= g_tol).all():
                        raise _Failure(case, expected=f"average d ELBO / d {symbol} ~ {_fmt(ref[key])}",
                                       got=f"average {_fmt(g_mean)}",
                                       hint=f"the ELBO's value is right on average but its gradient in {symbol} "
                                            "is not: is part of the computation detached, or is the KL computed "
                                            "from a detached mu/logvar?")
            finally:
                tap.handle.remove()
                model.zero_grad(set_to_none=True)

    return _run(name, fn, body, 8, raise_on_failure)


# ---------------------------------------------------------------------------------------------


def summary(*results: CheckResult | Iterable[CheckResult]) -> CheckResult:
    """Combine check results into one: passed iff all passed; its text lists what still fails.

    ``summary(r1, r2, ...)`` or ``summary([r1, r2, ...])``.
    """
    flat: list[CheckResult] = []
    for item in results:
        if isinstance(item, CheckResult):
            flat.append(item)
        else:
            flat.extend(item)
    passed = [r for r in flat if r.passed]
    failed = [r for r in flat if not r.passed]
    if not failed:
        message = f"summary: all {len(flat)} checks passed"
    else:
        names = ", ".join(r.name for r in failed)
        message = f"summary: {len(passed)} of {len(flat)} checks passed; still to do: {names}"
    return CheckResult("summary", not failed and bool(flat), sum(r.cases for r in flat), message)
