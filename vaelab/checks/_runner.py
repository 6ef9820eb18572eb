"""The runner of the homework checks: ``CheckResult``, ``summary`` and the helpers a check is made of.

A check is a function ``check_<name>(fn, *, raise_on_failure=False) -> CheckResult`` that builds its cases
(fixed seeds), then hands a ``body(runner)`` to ``run_check``. Inside the body:

* ``case = runner.case("description")`` numbers the case; ``runner.call(case, *args)`` calls the student's
  function, turning a ``NotImplementedError`` or any exception into a reported failure;
* ``as_output`` checks type and shape (with hints for a wrong reduction), ``unchanged`` that the inputs
  were not modified in place, ``compare`` the value against the reference, naming the first known wrong
  variant (a catalogue of typical mistakes) the result matches, ``grad_check`` the gradients;
* ``raise Failure(case, expected=..., got=..., hint=...)`` reports anything else.

``run_check`` forks the global random state, so a check leaves it as it was.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "CheckResult",
    "summary",
    "Hint",
    "HINT_LEVELS",
    "DEFAULT_HINT",
    "code_in",
    "Failure",
    "Runner",
    "run_check",
    "fmt",
    "fmt_at",
    "close",
    "as_output",
    "compare",
    "check_finite",
    "dtype_runs",
    "unchanged",
    "grad_check",
    "F64",
    "LOG_2PI",
    "Z_SCORE",
]

F64 = torch.float64
LOG_2PI = math.log(2.0 * math.pi)
Z_SCORE = 5.0  # statistical checks allow this many standard errors

# How much a failed check's hint reveals: "where" (only the failing input, expected and returned
# values), "kind" (also the kind of mistake, without the answer's code; the default) or "fix"
# (also the fix, code included).
HINT_LEVELS = ("where", "kind", "fix")
DEFAULT_HINT = "kind"


@dataclass(frozen=True)
class Hint:
    """A hint at two levels: ``kind`` names the mistake without the answer's code, ``fix`` shows the fix.

    A plain string given where a hint is expected is the ``fix`` text; its ``kind`` is derived by
    ``kind_of`` (the clauses before the first one that contains code).
    """

    kind: str
    fix: str


HintLike = str | Hint | None

# Code in a hint: backticks, a module or method call, a function applied to something, an
# assignment or equation (also +=), a Python power, indexing with [:, a derivative h'(a), the absolute
# value of an expression. Naming a term ("the mu^2 term") is not code.
_CODE = re.compile(r"`|\b(torch|F|np|math|vaelab)\.\w|\.\w+\(|\b\w+\(|=|\*\*|\[:|\w'\(|\|[^|]*[-+*/][^|]*\|")
_CLAUSE = re.compile(r"(?=: |; |\. |, e\.g\.|, or |, so |, then )")


def code_in(text: str) -> list[str]:
    """The pieces of ``text`` that look like code (empty when it reads as words only)."""
    return [m.group(0) for m in _CODE.finditer(text)]


def kind_of(text: str) -> str:
    """The clauses of a fix-level hint before the first one that shows code."""
    kept = ""
    for piece in _CLAUSE.split(text):
        if code_in(piece) or re.search(r"\be\.g\b", piece):
            break
        kept += piece
    while kept.count("(") > kept.count(")"):
        kept = kept[: kept.rfind("(")]
    kept = kept.strip().rstrip(":;,.").strip()
    if len(kept) < 12:
        return "the values differ from the expected ones on this input; compare your formula with the task."
    return kept + "."


def hint_text(hint: HintLike, level: str) -> str | None:
    """The text of ``hint`` at ``level`` (None at "where")."""
    if hint is None or level == "where":
        return None
    if isinstance(hint, Hint):
        return hint.fix if level == "fix" else hint.kind
    return hint if level == "fix" else kind_of(hint)


def check_hint_level(hint: str) -> str:
    if hint not in HINT_LEVELS:
        raise ValueError(
            f"hint={hint!r} is not a hint level; use one of {', '.join(map(repr, HINT_LEVELS))} "
            f"(the default, {DEFAULT_HINT!r}, names the kind of mistake without the answer's code)."
        )
    return hint


# ---------------------------------------------------------------------------------------------
# Ready-made functions a task may refuse


def _resolve(name: str) -> Any:
    """The object a dotted name refers to ("F." is torch.nn.functional), or None if it does not exist."""
    path = "torch.nn.functional." + name[2:] if name.startswith("F.") else name
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep
    for m in (torch, os, traceback)
    if getattr(m, "__file__", None)
) + (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,)


def _library_frame(frame: Any) -> bool:
    """True for a frame in torch, vaelab or the standard library (not the student's code)."""
    return frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_LIBRARY_DIRS)


class _Watch:
    """Records calls from the student's code (not from torch or vaelab) to forbidden functions."""

    def __init__(self, forbidden: dict[str, Any]) -> None:
        self.codes: dict[Any, str] = {}
        self.builtins: dict[int, str] = {}
        for name, obj in forbidden.items():
            code = getattr(obj, "__code__", None)
            if code is not None:
                self.codes[code] = name
            else:
                self.builtins[id(obj)] = name
        self.seen: list[str] = []

    def name_of(self, fn: Any) -> str | None:
        """The forbidden name ``fn`` is (also through functools.partial), or None."""
        while isinstance(fn, functools.partial):
            fn = fn.func
        code = getattr(fn, "__code__", None)
        return self.codes.get(code) if code is not None else self.builtins.get(id(fn))

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            name = self.codes.get(frame.f_code)
            if name is not None and not _library_frame(frame.f_back):
                self.seen.append(name)
        elif event == "c_call":
            name = self.builtins.get(id(arg))
            if name is not None and not _library_frame(frame):
                self.seen.append(name)

    def __enter__(self) -> _Watch:
        self.previous = sys.getprofile()
        if self.codes or self.builtins:
            sys.setprofile(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.setprofile(self.previous)


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


class Failure(Exception):
    """Raised inside a check when the student's function fails a case."""

    def __init__(
        self,
        case: str,
        expected: str | None = None,
        got: str | None = None,
        hint: HintLike = None,
        headline: str | None = None,
    ) -> None:
        super().__init__(case)
        self.case, self.expected, self.got, self.hint, self.headline = case, expected, got, hint, headline


class Runner:
    """Counts cases, calls the student's function safely, turns a failure into a CheckResult."""

    def __init__(self, name: str, fn: Any, forbidden: dict[str, Any] | None = None) -> None:
        self.name = name
        self.fn = fn
        self.fn_name = getattr(fn, "__name__", type(fn).__name__)
        self.count = 0
        self.total = 0
        self.forbidden = forbidden or {}

    def case(self, description: str) -> str:
        self.count += 1
        return f"case {self.count} of {self.total}: {description}"

    def call(self, case: str, *args: Any, exception_hint: Callable[[BaseException], HintLike] | None = None) -> Any:
        watch = _Watch(self.forbidden)
        itself = watch.name_of(self.fn)
        if itself is not None:  # the ready-made function handed in directly (my_kl = vaelab.kl_standard_normal)
            self._refuse(case, [itself])
        try:
            with watch:
                return self._call(case, args, exception_hint)
        finally:
            if watch.seen:
                self._refuse(case, watch.seen)

    def _refuse(self, case: str, seen: list[str]) -> None:
        names = ", ".join(dict.fromkeys(seen))
        raise Failure(
            case,
            headline=(
                f"not allowed in this task: {self.fn_name} calls {names}, a ready-made version of what this task "
                "asks you to write; replace that call with your own computation and run this cell again."
            ),
        ) from None

    def _call(self, case: str, args: tuple[Any, ...], exception_hint: Any) -> Any:
        try:
            return self.fn(*args)
        except NotImplementedError as error:
            detail = f" ({error})" if str(error) else ""
            raise Failure(
                case,
                headline=(
                    f"not implemented yet: {self.fn_name} raised NotImplementedError{detail}. "
                    "Replace the `raise NotImplementedError(...)` line with your implementation "
                    "and run this cell again."
                ),
            ) from None
        except Exception as error:  # noqa: BLE001 - the student's bug is reported, not raised
            where = _student_frame(error)
            hint = (exception_hint(error) if exception_hint else None) or _generic_exception_hint(error)
            raise Failure(case, expected="a tensor", got=f"{type(error).__name__}: {error}{where}", hint=hint) from None


def _student_frame(error: BaseException) -> str:
    """' (in f, line 3: z = ...)' for the deepest frame outside vaelab and torch, if any."""
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        path = frame.filename.replace("\\", "/")
        if "/torch/" in path or "/vaelab/checks/" in path:
            continue
        code = f": {frame.line.strip()}" if frame.line else ""
        return f" (in {frame.name}, line {frame.lineno}{code})"
    return ""


def _generic_exception_hint(error: BaseException) -> str:
    text = str(error)
    if "leaf Variable that requires grad" in text or "in-place operation" in text:
        return (
            "do not modify the inputs in place (x += ..., x.exp_()); build new tensors, "
            "e.g. std = torch.exp(0.5 * logvar)."
        )
    if "numpy" in text.lower():
        return (
            "stay in torch: numpy (and .item(), math.* on tensors) breaks the gradient; use "
            "torch.exp, torch.log, .sum(dim=-1) ..."
        )
    if "size of tensor" in text or "shape" in text or "dimension" in text.lower():
        return (
            "a shape mismatch inside your function: print the shapes of the inputs and of "
            "your intermediate tensors; the input that triggered it is listed above."
        )
    return "read the error above; the input that triggered it is listed above."


def forbidden_functions(names: Iterable[str], allow: Iterable[str] | bool = ()) -> dict[str, Any]:
    """The ready-made functions ``names`` (dotted, "F." for torch.nn.functional) less those in ``allow``.

    allow=True allows them all. Names that do not exist in this version of torch or vaelab are skipped.
    """
    if allow is True:
        return {}
    if allow is False or allow is None:
        allow = ()
    if isinstance(allow, str):
        allow = (allow,)
    allowed = set(allow)
    unknown = allowed - set(names)
    if unknown:
        raise ValueError(
            f"allow={sorted(unknown)!r} names functions this check does not refuse; allow any of "
            f"{', '.join(names)}, or allow=True for all of them."
        )
    found = {name: _resolve(name) for name in names if name not in allowed}
    return {name: obj for name, obj in found.items() if obj is not None}


def run_check(
    name: str,
    fn: Any,
    body: Callable[[Runner], None],
    total: int,
    raise_on_failure: bool,
    *,
    hint: str = DEFAULT_HINT,
    forbidden: Iterable[str] = (),
    allow: Iterable[str] | bool = (),
) -> CheckResult:
    """Run ``body`` on a Runner for ``fn``; the student's calls to ``forbidden`` (less ``allow``) fail the check.

    hint: "where", "kind" or "fix", how much a failure's hint reveals (see ``HINT_LEVELS``).
    """
    check_hint_level(hint)
    runner = Runner(name, fn, forbidden_functions(tuple(forbidden), allow))
    runner.total = total
    if not callable(fn):
        result = CheckResult(
            name,
            False,
            0,
            f"{name}: FAILED: expected your function, got {type(fn).__name__} "
            f"{fn!r:.60}; pass the function itself, e.g. {name}(my_function) "
            "(no parentheses after my_function).",
            hint="pass the function itself, not its result.",
        )
    else:
        try:
            with torch.random.fork_rng(devices=[]):
                body(runner)
            result = CheckResult(name, True, runner.count, f"{name}: passed ({runner.count} cases)")
        except Failure as failure:
            result = _failure_result(name, runner, failure, hint)
    if raise_on_failure and not result.passed:
        raise AssertionError(result.message)
    return result


def _failure_result(name: str, runner: Runner, failure: Failure, level: str = DEFAULT_HINT) -> CheckResult:
    hint = hint_text(failure.hint, level)
    if failure.headline:
        lines = [f"{name}: {failure.headline}", f"  first input: {failure.case}"]
    else:
        lines = [f"{name}: FAILED on {failure.case}"]
        if failure.expected is not None:
            lines.append(f"  expected: {failure.expected}")
        if failure.got is not None:
            lines.append(f"  got:      {failure.got}")
        if hint:
            lines.append(f"  hint: {hint}")
    return CheckResult(
        name,
        False,
        runner.count,
        "\n".join(lines),
        case=failure.case,
        expected=failure.expected,
        got=failure.got,
        hint=hint or failure.headline,
    )


# ---------------------------------------------------------------------------------------------
# Formatting and comparison helpers


def fmt(t: torch.Tensor, limit: int = 4) -> str:
    flat = t.detach().reshape(-1).double().tolist()
    shown = ", ".join(f"{v:.6g}" for v in flat[:limit])
    more = f", ... ({len(flat)} values)" if len(flat) > limit else ""
    return f"[{shown}{more}] shape {tuple(t.shape)}"


def fmt_at(expected: torch.Tensor, got: torch.Tensor) -> tuple[str, str]:
    """Both tensors formatted; when they are long, also the entry with the largest error."""
    e, g = expected.detach().double(), got.detach().double()
    if e.numel() <= 4:
        return fmt(e), fmt(g)
    diff = (e - g).abs().nan_to_num(float("inf"))
    i = int(diff.reshape(-1).argmax())
    return (
        f"{fmt(e)}; entry {i}: {e.reshape(-1)[i].item():.6g}",
        f"{fmt(g)}; entry {i}: {g.reshape(-1)[i].item():.6g}",
    )


def close(got: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> bool:
    got = got.detach().double()
    expected = expected.detach().double()
    return got.shape == expected.shape and bool(torch.allclose(got, expected, rtol=rtol, atol=atol))


def as_output(
    out: Any, case: str, shape: tuple[int, ...], reduced: str, kept: str, inner: int = -1, dim: int = -1
) -> torch.Tensor:
    """Check the type and shape of a per-example output, with a hint for the usual slips.

    reduced: what the function sums over (e.g. "latent dimensions (dim -1)"), of size inner
    along dimension dim of the input; kept: the name of the dimension kept ("batch").
    """
    if isinstance(out, tuple):
        raise Failure(
            case,
            expected=f"one tensor of shape {shape}",
            got=f"a tuple of {len(out)} items",
            hint=Hint(
                kind="return only the tensor, not a tuple or a named tuple of several values.",
                fix="return only the tensor (e.g. `return value`, not `return value, other`; "
                "for vaelab.elbo take its `.elbo` field).",
            ),
        )
    if not isinstance(out, torch.Tensor):
        raise Failure(
            case,
            expected=f"a torch.Tensor of shape {shape}",
            got=f"{type(out).__name__} {out!r:.60}",
            hint=Hint(
                kind=("return a tensor computed with torch operations, not a Python number, a numpy array or a list."),
                fix="return a torch.Tensor computed with torch operations (not a float, "
                "numpy array or list): use torch.exp/torch.log, not math.* or numpy, and no .item().",
            ),
        )
    if not out.is_floating_point():
        raise Failure(
            case,
            expected=f"a floating-point tensor of shape {shape}",
            got=f"dtype {out.dtype}",
            hint="compute in floating point; an integer result means a cast went wrong.",
        )
    got_shape = tuple(out.shape)
    if got_shape != shape:
        batch = shape[0]
        if got_shape == () or (got_shape == (1,) and inner != 1):
            hint = (
                f"you reduced over the {kept} too (a single number): return one value per example, "
                f"shape {shape}; reduce only over the {reduced}, e.g. .sum(dim={dim}) (a bare .sum() or "
                ".mean() also sums over the batch)."
            )
        elif got_shape in ((batch, inner), (inner, batch)):
            hint = f"you did not reduce over the {reduced}: e.g. .sum(dim={dim})."
        elif got_shape == (inner,):
            hint = f"you reduced over the {kept} dimension instead of over the {reduced}; keep one value per example."
        else:
            hint = f"return one value per example, shape {shape}, summed over the {reduced}."
        raise Failure(case, expected=f"shape {shape}", got=f"shape {got_shape}: {fmt(out)}", hint=hint)
    return out


def compare(
    case: str,
    got: torch.Tensor,
    expected: torch.Tensor,
    variants: list[tuple[Any, str]],
    generic: Callable[[torch.Tensor, torch.Tensor], str | None],
    rtol: float = 1e-6,
    atol: float = 1e-6,
) -> None:
    """Fail with the hint of the first known wrong variant that ``got`` matches, else a generic one.

    variants: (value of the wrong formula on this input or a callable returning it, hint).
    """
    if close(got, expected, rtol, atol):
        return
    exp_text, got_text = fmt_at(expected, got)
    hint = None
    if not torch.isfinite(got).all():
        hint = generic(got, expected)
    else:
        for value, variant_hint in variants:
            try:
                value = value() if callable(value) else value
            except Exception:  # noqa: BLE001 - a variant that cannot be formed here does not apply
                continue
            if (
                value.shape == expected.shape
                and torch.isfinite(value).all()
                and not close(value, expected, rtol, atol)
                and close(got, value, 1e-4, 1e-5)
            ):
                hint = variant_hint
                break
        if hint is None:
            hint = generic(got, expected)
    raise Failure(case, expected=exp_text, got=got_text, hint=hint)


def dtype_runs(
    case: str, tensors: tuple[Any, ...], float32_too: bool
) -> list[tuple[str, tuple[Any, ...], float | None]]:
    """The runs of one case: as given, then, if ``float32_too``, its float64 tensors again in float32.

    A task that says "stays finite" must stay finite in float32, the dtype models train in, where exp
    overflows at 89 instead of 710. Returns (case text, tensors, rtol for the float32 run or None).
    """
    runs: list[tuple[str, tuple[Any, ...], float | None]] = [(case, tensors, None)]
    if float32_too and any(isinstance(t, torch.Tensor) and t.dtype == F64 for t in tensors):
        as32 = tuple(t.float() if isinstance(t, torch.Tensor) and t.dtype == F64 else t for t in tensors)
        runs.append((f"{case}, the same input in float32 (the training dtype)", as32, 1e-4))
    return runs


def check_finite(case: str, out: torch.Tensor, expected: torch.Tensor, hint: str) -> None:
    if not torch.isfinite(out).all() and torch.isfinite(expected).all():
        exp_text, got_text = fmt_at(expected, out)
        raise Failure(case, expected=exp_text, got=got_text, hint=hint)


def unchanged(case: str, names: Iterable[str], before: Iterable[torch.Tensor], after: Iterable[torch.Tensor]) -> None:
    for name, b, a in zip(names, before, after):
        if isinstance(a, torch.Tensor) and not torch.equal(b, a.detach()):
            raise Failure(
                case,
                expected=f"{name} left unchanged",
                got=f"{name} was modified",
                hint=f"your function changed its input {name} in place; build new tensors "
                "instead (e.g. z = mu + std * eps, not mu += ...).",
            )


def grad_check(
    runner: Runner,
    case: str,
    inputs: dict[str, torch.Tensor],
    call: Callable[[], Any],
    expected_grads: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    what: str,
    no_grad_hint: str | dict[str, str],
) -> None:
    """Call, backpropagate sum(output) and compare the input gradients with the expected ones.

    no_grad_hint: the hint when no gradient arrives, or one per input name."""
    hints = no_grad_hint if isinstance(no_grad_hint, dict) else dict.fromkeys(inputs, no_grad_hint)
    out = call()
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise Failure(
            case,
            expected=f"{what} that carries a gradient to " + " and ".join(inputs),
            got="a tensor with requires_grad=False" if isinstance(out, torch.Tensor) else type(out).__name__,
            hint=next(iter(hints.values())),
        )
    out.sum().backward()
    expected = expected_grads(out.detach())
    for name, tensor in inputs.items():
        grad = tensor.grad
        if grad is None or not torch.any(grad != 0):
            raise Failure(
                case,
                expected=f"a gradient for {name}: {fmt(expected[name])}",
                got="no gradient" if grad is None else "a gradient of zeros",
                hint=hints[name],
            )
        if not close(grad, expected[name], 1e-5, 1e-7):
            exp_text, got_text = fmt_at(expected[name], grad)
            raise Failure(
                case,
                expected=f"d sum(output) / d {name} = {exp_text}",
                got=got_text,
                hint=f"the value is right but its gradient with respect to {name} is not: "
                "a .detach(), a constant or an in-place edit is cutting or changing the "
                "computation graph.",
            )


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
