"""What a teacher needs from the checks (issue 28): float32 where a task says "stays finite", hint
levels whose default does not hand over the answer's code, and refusing the ready-made function a
task asks the student to write.

The catalogues of typical mistakes are the test modules' own (tests/test_checks*.py), written
independently of the checks; what counts as answer code is decided here, by a pattern and by the
fragments of the reference solutions (book/homework_template.ipynb and the chapters), not by vaelab.
"""

from __future__ import annotations

import math
import re

import pytest
import test_checks  # noqa: E402 - the tests folder is on sys.path (pytest's rootdir-relative import)
import test_checks_autoencoder_loss
import test_checks_bits_per_dim
import test_checks_discretized_logistic
import test_checks_effective_sample_size
import test_checks_elbo_decomposition
import test_checks_free_bits
import test_checks_gradient_snr
import test_checks_mixture_log_prob
import test_checks_planar_log_det
import test_checks_slerp
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal, kl_divergence

import vaelab
from vaelab import checks

# check -> its catalogue of mistakes {name: (function, fix-level hint substring)}
CATALOGUES = {
    "check_kl_standard_normal": test_checks.KL_MISTAKES,
    "check_reparameterize": test_checks.REP_MISTAKES,
    "check_gaussian_log_likelihood": test_checks.GAUSS_MISTAKES,
    "check_bernoulli_log_likelihood": test_checks.BERN_MISTAKES,
    "check_iwae_bound": test_checks.IWAE_MISTAKES,
    "check_elbo": test_checks.ELBO_MISTAKES,
    "check_autoencoder_loss": test_checks_autoencoder_loss.MISTAKES,
    "check_effective_sample_size": test_checks_effective_sample_size.MISTAKES,
    "check_free_bits_kl": test_checks_free_bits.MISTAKES,
    "check_gradient_snr": test_checks_gradient_snr.MISTAKES,
    "check_planar_log_det": test_checks_planar_log_det.MISTAKES,
    "check_slerp": test_checks_slerp.MISTAKES,
    "check_discretized_logistic": test_checks_discretized_logistic.MISTAKES,
    "check_bits_per_dim": test_checks_bits_per_dim.MISTAKES,
    "check_mixture_log_prob": test_checks_mixture_log_prob.MISTAKES,
    "check_elbo_decomposition": test_checks_elbo_decomposition.MISTAKES,
}
CASES = [(check, name) for check, catalogue in CATALOGUES.items() for name in catalogue]

# Code in a hint: backticks, a torch/numpy/math call, a method call, a function applied to an
# argument (exp(x), log(...)), an assignment or equation, a Python power, indexing with [:, a
# derivative h'(a) or the absolute value of an expression (the whole formula). (Naming a term, "the
# mu^2 term is missing", names the kind of mistake.)
CODE = re.compile(r"`|\b(?:torch|F|np|math)\.\w|\.\w+\(|\b[A-Za-z_]\w*\(|=|\*\*|\[:|\w'\(|\|[^|]*[-+*/][^|]*\|")
# Fragments of the reference solutions that no default feedback may contain anywhere.
ANSWER_FRAGMENTS = (
    "logsigmoid",
    "logsumexp",
    "log_softmax",
    "binary_cross_entropy",
    "softplus",
    "randn",
    "log1p",
    "expm1",
    "clamp(",
    "arccos",
    ".sum(",
    ".mean(",
    "dim=-",
    "dim=0",
    "dim=1",
    "exp(0.5",
    "`",
)


def _hint_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip().startswith("hint:")]
    return lines[0][len("hint:") :] if lines else ""


@pytest.mark.parametrize(("check", "mistake"), CASES, ids=[f"{c}-{m}" for c, m in CASES])
def test_default_feedback_names_the_kind_of_mistake_without_answer_code(check, mistake):
    fn, _ = CATALOGUES[check][mistake]
    result = getattr(checks, check)(fn, allow=True)
    assert not result
    hint = _hint_line(result.message)
    assert not CODE.findall(hint), (hint, CODE.findall(hint))
    assert "compare your formula with the task" not in hint, "a specific kind, not the generic fallback"
    leaked = [f for f in ANSWER_FRAGMENTS if f in result.message.replace(result.got or "", "")]
    assert not leaked, (leaked, result.message)


@pytest.mark.parametrize(("check", "mistake"), CASES[::7], ids=[f"{c}-{m}" for c, m in CASES[::7]])
def test_hint_levels_reveal_more_step_by_step(check, mistake):
    fn, _ = CATALOGUES[check][mistake]
    where, kind, fix = (getattr(checks, check)(fn, hint=level, allow=True) for level in ("where", "kind", "fix"))
    assert not (where or kind or fix)
    assert "hint:" not in where.message and where.case == kind.case == fix.case
    assert where.message in kind.message and where.message in fix.message
    assert kind.hint and fix.hint and (kind.hint == fix.hint or not CODE.findall(kind.hint))


def test_fix_level_shows_the_fix_and_kind_level_only_names_it():
    def no_half(mu, logvar):
        return (mu**2 + logvar.exp() - logvar - 1).sum(-1)

    kind = checks.check_kl_standard_normal(no_half)
    fix = checks.check_kl_standard_normal(no_half, hint="fix")
    assert "1/2 is missing" in kind.hint and "exp(logvar)" not in kind.message
    assert "1/2 sum(mu^2 + exp(logvar) - logvar - 1)" in fix.hint


def test_an_unknown_hint_level_is_a_clear_error():
    with pytest.raises(ValueError, match="hint='answer' is not a hint level"):
        checks.check_kl_standard_normal(test_checks.kl_by_hand, hint="answer")


# ---------------------------------------------------------------------------------------------
# float32 where the task says "stays finite"


def naive_bernoulli(x, logits):
    """The issue's example: finite in float64 at logit 150, -inf in float32 from logit 89 on."""
    return (x * logits - torch.log(1 + torch.exp(logits))).sum(-1)


def test_naive_bernoulli_passes_float64_large_logits_but_is_minus_inf_in_float32():
    # Independent of the check: the formula is finite in float64 and -inf in float32 at logit 100.
    x, logits = torch.tensor([[1.0, 0.0]]), torch.tensor([[100.0, -100.0]])
    assert math.isfinite(naive_bernoulli(x.double(), logits.double()).item())
    assert naive_bernoulli(x, logits).item() == -math.inf
    result = checks.check_bernoulli_log_likelihood(naive_bernoulli)
    assert not result
    assert "large logits" in result.case and "float32" in result.case
    assert result.got.startswith("[-inf]")


def naive_grey_bce(x, logits):
    return (torch.log(1 + torch.exp(logits)) - x * logits).sum(-1)


def test_naive_autoencoder_loss_fails_in_float32():
    x, logits = torch.tensor([[1.0, 0.3]]), torch.tensor([[150.0, -150.0]])
    assert math.isfinite(naive_grey_bce(x.double(), logits.double()).item())
    assert not math.isfinite(naive_grey_bce(x, logits).item())
    result = checks.check_autoencoder_loss(naive_grey_bce)
    assert not result and "float32" in result.case


def test_stable_formulas_pass_in_float32_too():
    def bern(x, logits):
        return (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(-1)

    def grey(x, logits):
        return (F.softplus(logits) - x * logits).sum(-1)

    def iwae(lw):
        return torch.logsumexp(lw, 0) - math.log(lw.shape[0])

    def ess(lw):
        return torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))

    assert checks.check_bernoulli_log_likelihood(bern)
    assert checks.check_autoencoder_loss(grey)
    assert checks.check_iwae_bound(iwae)
    assert checks.check_effective_sample_size(ess)


def test_iwae_with_a_fixed_shift_fails_in_float32():
    # Shifting by a constant instead of the maximum: fine in float64 (exp(-300) and exp(100) are
    # representable), but in float32 exp(100) overflows and exp(-300) underflows.
    def shifted(lw):
        return torch.log(torch.exp(lw + 700).mean(0)) - 700

    lw = torch.full((3, 1), -1000.0)
    assert math.isfinite(shifted(lw.double()).item()) and not math.isfinite(shifted(lw).item())
    result = checks.check_iwae_bound(shifted)
    assert not result and "float32" in result.case


# ---------------------------------------------------------------------------------------------
# Refusing the ready-made function the task replaces


def test_calling_vaelab_kl_fails_check_kl_with_a_clear_message():
    def my_kl(mu, logvar):
        return vaelab.kl_standard_normal(mu, logvar)

    result = checks.check_kl_standard_normal(my_kl)
    assert not result
    assert result.message.startswith("check_kl_standard_normal: not allowed in this task: my_kl calls ")
    assert "vaelab.kl_standard_normal" in result.message and "your own computation" in result.message
    assert checks.check_kl_standard_normal(my_kl, allow=["vaelab.kl_standard_normal"])


def test_the_ready_made_function_handed_in_itself_is_refused():
    import functools

    my_kl = vaelab.kl_standard_normal
    for fn in (my_kl, functools.partial(my_kl)):
        result = checks.check_kl_standard_normal(fn)
        assert not result and "not allowed in this task" in result.message
    assert checks.check_kl_standard_normal(my_kl, allow=True)


def test_a_function_imported_by_name_is_refused_too():
    from vaelab import kl_standard_normal as kl

    result = checks.check_kl_standard_normal(lambda mu, logvar: kl(mu, logvar))
    assert not result and "not allowed in this task" in result.message


@pytest.mark.parametrize(
    ("check", "fn", "name"),
    [
        (
            "check_kl_standard_normal",
            lambda mu, lv: kl_divergence(Normal(mu, (0.5 * lv).exp()), Normal(0.0, 1.0)).sum(-1),
            "torch.distributions.kl_divergence",
        ),
        (
            "check_bernoulli_log_likelihood",
            lambda x, lg: -F.binary_cross_entropy_with_logits(lg, x, reduction="none").sum(-1),
            "F.binary_cross_entropy_with_logits",
        ),
        (
            "check_bernoulli_log_likelihood",
            lambda x, lg: -torch.binary_cross_entropy_with_logits(lg, x).sum(-1),  # a C builtin
            "torch.binary_cross_entropy_with_logits",
        ),
        (
            "check_bernoulli_log_likelihood",
            lambda x, lg: Bernoulli(logits=lg).log_prob(x).sum(-1),
            "torch.distributions.Bernoulli.log_prob",
        ),
        (
            "check_gaussian_log_likelihood",
            lambda x, m, lv: Normal(m, torch.as_tensor(lv, dtype=x.dtype).mul(0.5).exp()).log_prob(x).sum(-1),
            "torch.distributions.Normal.log_prob",
        ),
        ("check_reparameterize", lambda mu, lv: Normal(mu, (0.5 * lv).exp()).rsample(), "Normal.rsample"),
        ("check_elbo", lambda model, x: vaelab.elbo(model, x).elbo, "vaelab.elbo"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_ready_made_equivalents_are_refused(check, fn, name):
    result = getattr(checks, check)(fn)
    assert not result and "not allowed in this task" in result.message and name in result.message
    assert "first input" in result.message


def test_the_solution_may_use_vaelab_inside_the_model():
    # my_elbo calls model.likelihood.log_prob, which calls vaelab's own log-likelihoods (and torch's
    # ready-made functions) itself: only the student's own calls count.
    def my_elbo(model, x):
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(-1)
        return model.likelihood.log_prob(x, model.decode(z)) - kl

    assert checks.check_elbo(my_elbo)


def test_allow_names_only_what_the_check_refuses():
    with pytest.raises(ValueError, match="names functions this check does not refuse"):
        checks.check_kl_standard_normal(test_checks.kl_by_hand, allow=["torch.exp"])
