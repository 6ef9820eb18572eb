"""The homework checks pass correct implementations and catch the typical wrong ones.

For every check: several correct formulations pass (vaelab's own, torch.distributions, a
hand-written one); at least five common mistakes fail, each with the hint aimed at it; a stub
that raises NotImplementedError gets a clear "not implemented yet" failure instead of a crash.
The references the checks use for IWAE and the ELBO (not covered by the other tests) are
compared with independent computations here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal, kl_divergence

import vaelab
from vaelab import checks
from vaelab.checks import CheckResult

LOG_2PI = math.log(2 * math.pi)


def stub(*args):
    raise NotImplementedError("implement me")


# --------------------------------------------------------------------------------------------
# KL(q || p)


def kl_torch(mu, logvar):
    q = Normal(mu, torch.exp(0.5 * logvar))
    return kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)


def kl_by_hand(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


KL_CORRECT = [vaelab.kl_standard_normal, kl_torch, kl_by_hand]

KL_MISTAKES = {
    "paper formula without the minus": (
        lambda mu, lv: 0.5 * (1 + lv - mu**2 - lv.exp()).sum(-1),
        "your KL is negative for mu=0, logvar=1",
    ),
    "sign of the logvar term": (lambda mu, lv: 0.5 * (mu**2 + lv.exp() + lv - 1).sum(-1), "sign of the log-variance"),
    "missing 1/2": (lambda mu, lv: (mu**2 + lv.exp() - lv - 1).sum(-1), "factor 1/2 is missing"),
    "mean over latent dims": (lambda mu, lv: 0.5 * (mu**2 + lv.exp() - lv - 1).mean(-1), "averaged over the latent"),
    "std instead of variance": (
        lambda mu, lv: 0.5 * (mu**2 + (0.5 * lv).exp() - lv - 1).sum(-1),
        "standard deviation exp(logvar / 2)",
    ),
    "logvar read as log sigma": (
        lambda mu, lv: 0.5 * (mu**2 + (2 * lv).exp() - 2 * lv - 1).sum(-1),
        "treated logvar as log(sigma)",
    ),
    "forgot the -1": (lambda mu, lv: 0.5 * (mu**2 + lv.exp() - lv).sum(-1), "the -1 is missing"),
    "forgot mu^2": (lambda mu, lv: 0.5 * (lv.exp() - lv - 1).sum(-1), "mu^2 term is missing"),
    "reverse KL": (lambda mu, lv: 0.5 * ((-lv).exp() * (1 + mu**2) + lv - 1).sum(-1), "reverse direction"),
    "no sum": (lambda mu, lv: 0.5 * (mu**2 + lv.exp() - lv - 1), "did not reduce over the latent"),
    "sum over batch too": (lambda mu, lv: 0.5 * (mu**2 + lv.exp() - lv - 1).sum(), "reduced over the batch"),
    "sum over batch dim": (lambda mu, lv: 0.5 * (mu**2 + lv.exp() - lv - 1).sum(0), "instead of over the latent"),
    "through numpy": (
        lambda mu, lv: torch.as_tensor(
            0.5 * (mu.detach().numpy() ** 2 + np.exp(lv.detach().numpy()) - lv.detach().numpy() - 1).sum(-1)
        ),
        "must be differentiable",
    ),
}


@pytest.mark.parametrize("fn", KL_CORRECT, ids=["vaelab", "torch.distributions", "kingma-welling"])
def test_kl_check_passes_correct_implementations(fn):
    result = checks.check_kl_standard_normal(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_kl_standard_normal: passed (12 cases)"


@pytest.mark.parametrize("mistake", KL_MISTAKES, ids=list(KL_MISTAKES))
def test_kl_check_catches_mistake_with_its_hint(mistake):
    fn, hint = KL_MISTAKES[mistake]
    result = checks.check_kl_standard_normal(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message
    assert "expected" in result.message and "got" in result.message


def test_kl_negative_hint_names_the_input():
    result = checks.check_kl_standard_normal(KL_MISTAKES["paper formula without the minus"][0], hint="fix")
    assert "mu=0, logvar=1" in result.message
    assert "got:      [-0.359141]" in result.message  # -(e - 2) / 2, the negated KL


# --------------------------------------------------------------------------------------------
# Reparameterization


def rep_by_hand(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def rep_rsample(mu, logvar):
    return Normal(mu, logvar.mul(0.5).exp()).rsample()


def rep_sqrt(mu, logvar):
    eps = torch.randn(mu.shape, dtype=mu.dtype)
    return mu + logvar.exp().sqrt() * eps


REP_CORRECT = [vaelab.reparameterize, rep_by_hand, rep_rsample, rep_sqrt]

REP_MISTAKES = {
    "no reparameterization (torch.normal)": (
        lambda mu, lv: torch.normal(mu, (0.5 * lv).exp()),
        "no gradient reaches mu",
    ),
    "sample() instead of rsample()": (lambda mu, lv: Normal(mu, (0.5 * lv).exp()).sample(), "no gradient reaches mu"),
    "variance instead of std": (lambda mu, lv: mu + lv.exp() * torch.randn_like(mu), "multiplied eps by the variance"),
    "logvar as std": (lambda mu, lv: mu + lv * torch.randn_like(mu), "multiplied eps by logvar itself"),
    "wrong sign in exponent": (lambda mu, lv: mu + (-0.5 * lv).exp() * torch.randn_like(mu), "sign in the exponent"),
    "ignores logvar": (lambda mu, lv: mu + torch.randn_like(mu), "does not depend on logvar"),
    "0.5 outside exp": (lambda mu, lv: mu + 0.5 * lv.exp() * torch.randn_like(mu), "inside the exponent"),
    "forgot mu": (lambda mu, lv: (0.5 * lv).exp() * torch.randn_like(mu), "forget to add mu"),
    "uniform noise": (lambda mu, lv: mu + (0.5 * lv).exp() * torch.rand_like(mu), "torch.rand draws uniform"),
    "one eps per dimension": (
        lambda mu, lv: mu + (0.5 * lv).exp() * torch.randn(mu.shape[-1], dtype=mu.dtype),
        "same noise",
    ),
    "one eps per row": (
        lambda mu, lv: mu + (0.5 * lv).exp() * torch.randn(mu.shape[0], 1, dtype=mu.dtype),
        "every latent dimension got the same noise",
    ),
    "seeded inside": (
        lambda mu, lv: (torch.manual_seed(0), mu + (0.5 * lv).exp() * torch.randn_like(mu))[1],
        "do not call torch.manual_seed",
    ),
    "detached std": (
        lambda mu, lv: mu + (0.5 * lv).exp().detach() * torch.randn_like(mu),
        "gradient with respect to logvar",
    ),
    "float32 noise always": (lambda mu, lv: (mu + (0.5 * lv).exp() * torch.randn_like(mu)).double(), "mu's dtype"),
    "extra sample dim": (lambda mu, lv: vaelab.reparameterize(mu, lv, 1), "without an extra sample dimension"),
    "in place": (lambda mu, lv: mu.add_((0.5 * lv).exp() * torch.randn_like(mu)), "in place"),
}


@pytest.mark.parametrize("fn", REP_CORRECT, ids=["vaelab", "by-hand", "rsample", "sqrt"])
def test_reparameterize_check_passes_correct_implementations(fn):
    result = checks.check_reparameterize(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_reparameterize: passed (7 cases)"


@pytest.mark.parametrize("mistake", REP_MISTAKES, ids=list(REP_MISTAKES))
def test_reparameterize_check_catches_mistake_with_its_hint(mistake):
    fn, hint = REP_MISTAKES[mistake]
    result = checks.check_reparameterize(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


# --------------------------------------------------------------------------------------------
# Gaussian log-likelihood


def gauss_torch(x, mean, logvar):
    logvar = torch.as_tensor(logvar, dtype=x.dtype)
    return Normal(mean, torch.exp(0.5 * logvar)).log_prob(x).sum(-1)


def gauss_by_hand(x, mean, logvar):
    var = math.exp(logvar) if isinstance(logvar, float) else logvar.exp()
    log_sigma2 = logvar
    return -0.5 * ((x - mean) ** 2 / var + log_sigma2 + LOG_2PI).sum(dim=1)


def _lv(logvar, x):
    return torch.as_tensor(logvar, dtype=x.dtype)


GAUSS_CORRECT = [vaelab.gaussian_log_prob, gauss_torch, gauss_by_hand]

GAUSS_MISTAKES = {
    "mean over pixels": (lambda x, m, lv: vaelab.gaussian_log_prob(x, m, lv) / x.shape[-1], "averaged over the pixels"),
    "no 2 pi": (lambda x, m, lv: -0.5 * ((x - m) ** 2 / _lv(lv, x).exp() + _lv(lv, x)).sum(-1), "-1/2 log(2 pi)"),
    "no 1/2 on the square": (
        lambda x, m, lv: -((x - m) ** 2 / _lv(lv, x).exp() + 0.5 * _lv(lv, x) + 0.5 * LOG_2PI).sum(-1),
        "factor 1/2 in front of the squared error",
    ),
    "std instead of variance": (
        lambda x, m, lv: -0.5 * ((x - m) ** 2 / (0.5 * _lv(lv, x)).exp() + _lv(lv, x) + LOG_2PI).sum(-1),
        "divided by the standard deviation",
    ),
    "logvar read as log sigma": (
        lambda x, m, lv: -0.5 * ((x - m) ** 2 / (2 * _lv(lv, x)).exp() + 2 * _lv(lv, x) + LOG_2PI).sum(-1),
        "treated logvar as log(sigma)",
    ),
    "no logvar term": (lambda x, m, lv: -0.5 * ((x - m) ** 2 / _lv(lv, x).exp() + LOG_2PI).sum(-1), "-1/2 logvar term"),
    "negative log-likelihood": (lambda x, m, lv: -vaelab.gaussian_log_prob(x, m, lv), "-log p (a loss)"),
    "float logvar unsupported": (
        lambda x, m, lv: -0.5 * ((x - m) ** 2 / torch.exp(lv) + lv + LOG_2PI).sum(-1),
        "plain Python float",
    ),
    "mse_loss mean": (lambda x, m, lv: -F.mse_loss(m, x), "reduced over the batch"),
    "no sum": (
        lambda x, m, lv: -0.5 * ((x - m) ** 2 / _lv(lv, x).exp() + _lv(lv, x) + LOG_2PI),
        "did not reduce over the pixels",
    ),
    "detached": (lambda x, m, lv: vaelab.gaussian_log_prob(x, m.detach(), lv), "differentiable in the mean"),
}


@pytest.mark.parametrize("fn", GAUSS_CORRECT, ids=["vaelab", "torch.distributions", "by-hand"])
def test_gaussian_check_passes_correct_implementations(fn):
    result = checks.check_gaussian_log_likelihood(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_gaussian_log_likelihood: passed (12 cases)"


@pytest.mark.parametrize("mistake", GAUSS_MISTAKES, ids=list(GAUSS_MISTAKES))
def test_gaussian_check_catches_mistake_with_its_hint(mistake):
    fn, hint = GAUSS_MISTAKES[mistake]
    result = checks.check_gaussian_log_likelihood(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


# --------------------------------------------------------------------------------------------
# Bernoulli log-likelihood


def bern_torch(x, logits):
    return Bernoulli(logits=logits).log_prob(x).sum(-1)


def bern_logsigmoid(x, logits):
    return (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(dim=1)


def bern_bce(x, logits):
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


BERN_CORRECT = [vaelab.bernoulli_log_prob, bern_torch, bern_logsigmoid, bern_bce]

BERN_MISTAKES = {
    "bce loss (sign)": (
        lambda x, lg: F.binary_cross_entropy_with_logits(lg, x, reduction="none").sum(-1),
        "binary cross-entropy (a loss",
    ),
    "mean over pixels": (
        lambda x, lg: -F.binary_cross_entropy_with_logits(lg, x, reduction="none").mean(-1),
        "averaged over the pixels",
    ),
    "naive sigmoid then log": (
        lambda x, lg: (x * torch.sigmoid(lg).log() + (1 - x) * (1 - torch.sigmoid(lg)).log()).sum(-1),
        "Compute it stably from the logits",
    ),
    "sigmoid then clamped bce": (
        lambda x, lg: -F.binary_cross_entropy(torch.sigmoid(lg), x, reduction="none").sum(-1),
        "loses precision (or is clamped)",
    ),
    "logits as probabilities": (
        lambda x, lg: (x * lg.log() + (1 - x) * (1 - lg).log()).sum(-1),
        "logits are not probabilities",
    ),
    "x and 1-x swapped": (lambda x, lg: (x * F.logsigmoid(-lg) + (1 - x) * F.logsigmoid(lg)).sum(-1), "swapped"),
    "missing (1-x) term": (
        lambda x, lg: (x * F.logsigmoid(lg)).sum(-1),
        "(1 - x) log(1 - sigmoid(logits)) term is missing",
    ),
    "whole-batch mean bce": (lambda x, lg: -F.binary_cross_entropy_with_logits(lg, x), "reduced over the batch"),
    "bce arguments swapped": (
        lambda x, lg: -F.binary_cross_entropy_with_logits(x, lg, reduction="none").sum(-1),
        "arguments of F.binary_cross_entropy_with_logits are swapped",
    ),
}


@pytest.mark.parametrize("fn", BERN_CORRECT, ids=["vaelab", "torch.distributions", "logsigmoid", "bce"])
def test_bernoulli_check_passes_correct_implementations(fn):
    result = checks.check_bernoulli_log_likelihood(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_bernoulli_log_likelihood: passed (11 cases)"


@pytest.mark.parametrize("mistake", BERN_MISTAKES, ids=list(BERN_MISTAKES))
def test_bernoulli_check_catches_mistake_with_its_hint(mistake):
    fn, hint = BERN_MISTAKES[mistake]
    result = checks.check_bernoulli_log_likelihood(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


def test_naive_bernoulli_passes_ordinary_cases_and_fails_only_at_large_logits():
    result = checks.check_bernoulli_log_likelihood(BERN_MISTAKES["naive sigmoid then log"][0], hint="fix")
    assert "large logits" in result.case
    assert result.cases >= 9


# --------------------------------------------------------------------------------------------
# Importance-weighted bound


def iwae_logsumexp(lw):
    return torch.logsumexp(lw, dim=0) - math.log(lw.shape[0])


def iwae_max_trick(lw):
    m = lw.max(dim=0, keepdim=True).values
    return (m + torch.log(torch.exp(lw - m).mean(dim=0, keepdim=True))).squeeze(0)


def iwae_tensor_log_k(lw):
    return lw.logsumexp(0) - torch.log(torch.tensor(float(lw.shape[0]), dtype=lw.dtype))


IWAE_CORRECT = [iwae_logsumexp, iwae_max_trick, iwae_tensor_log_k]

IWAE_MISTAKES = {
    "forgot log k": (lambda lw: torch.logsumexp(lw, 0), "-log k is missing"),
    "plus log k": (lambda lw: torch.logsumexp(lw, 0) + math.log(lw.shape[0]), "sign of log k"),
    "mean of log-weights (ELBO)": (lambda lw: lw.mean(0), "averaged the log-weights"),
    "naive log mean exp": (lambda lw: lw.exp().mean(0).log(), "underflows"),
    "log of sum divided by k": (lambda lw: torch.logsumexp(lw, 0) / lw.shape[0], "divided the log by k"),
    "max log-weight": (lambda lw: lw.max(0).values, "largest log-weight alone"),
    "wrong dimension": (lambda lw: torch.logsumexp(lw, 1) - math.log(lw.shape[1]), "instead of over the k samples"),
    "log batch instead of log k": (lambda lw: torch.logsumexp(lw, 0) - math.log(lw.shape[1]), "subtract log k"),
    "averaged over the batch": (lambda lw: iwae_logsumexp(lw).mean(), "reduced over the batch"),
    "detached": (lambda lw: iwae_logsumexp(lw.detach()), "differentiable in the log-weights"),
}


@pytest.mark.parametrize("fn", IWAE_CORRECT, ids=["logsumexp", "max-trick", "tensor-log-k"])
def test_iwae_check_passes_correct_implementations(fn):
    result = checks.check_iwae_bound(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_iwae_bound: passed (12 cases)"


@pytest.mark.parametrize("mistake", IWAE_MISTAKES, ids=list(IWAE_MISTAKES))
def test_iwae_check_catches_mistake_with_its_hint(mistake):
    fn, hint = IWAE_MISTAKES[mistake]
    result = checks.check_iwae_bound(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


def test_iwae_reference_matches_high_precision_log_mean_exp():
    import mpmath

    g = torch.Generator().manual_seed(0)
    lw = -1000 + 5 * torch.randn(20, 3, generator=g, dtype=torch.float64)
    for b in range(3):
        exact = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in lw[:, b].tolist()) / 20)
        assert checks.iwae_bound._iwae_reference(lw)[b].item() == pytest.approx(float(exact), abs=1e-9)


# --------------------------------------------------------------------------------------------
# ELBO


def elbo_by_hand(model, x):
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    return model.likelihood.log_prob(x, model.decode(z)) - vaelab.kl_standard_normal(mu, logvar)


def elbo_distributions(model, x):
    mu, logvar = model.encode(x)
    q = Normal(mu, torch.exp(0.5 * logvar))
    kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    return model.likelihood.log_prob(x, model.decode(q.rsample())) - kl


def _parts(model, x):
    mu, logvar = model.encode(x)
    z = vaelab.reparameterize(mu, logvar)
    return mu, logvar, z, model.likelihood.log_prob(x, model.decode(z)), vaelab.kl_standard_normal(mu, logvar)


def _elbo_no_reparam(model, x):
    mu, logvar = model.encode(x)
    z = Normal(mu, torch.exp(0.5 * logvar)).sample()
    return model.likelihood.log_prob(x, model.decode(z)) - vaelab.kl_standard_normal(mu, logvar)


def _elbo_plugin(model, x):
    mu, logvar = model.encode(x)
    return model.likelihood.log_prob(x, model.decode(mu)) - vaelab.kl_standard_normal(mu, logvar)


def _elbo_bernoulli_only(model, x):
    mu, logvar, z, _, kl = _parts(model, x)
    return vaelab.bernoulli_log_prob(x, model.decode(z)) - kl


def _elbo_detached_kl(model, x):
    mu, logvar, z, rec, _ = _parts(model, x)
    return rec - vaelab.kl_standard_normal(mu.detach(), logvar.detach())


def _elbo_shared_noise(model, x):
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape[-1], dtype=mu.dtype)
    return model.likelihood.log_prob(x, model.decode(z)) - vaelab.kl_standard_normal(mu, logvar)


ELBO_CORRECT = [elbo_by_hand, elbo_distributions, lambda model, x: vaelab.elbo(model, x).elbo]

ELBO_MISTAKES = {
    "KL added": (lambda m, x: (lambda p: p[3] + p[4])(_parts(m, x)), "you added the KL"),
    "negative ELBO (loss)": (lambda m, x: (lambda p: p[4] - p[3])(_parts(m, x)), "-ELBO (the loss)"),
    "no sampling (z = mu)": (_elbo_plugin, "decoded the posterior mean mu without sampling"),
    "mean over pixels": (
        lambda m, x: (lambda p: p[3] / x.shape[1] - p[4])(_parts(m, x)),
        "averaged log p(x|z) over the pixels",
    ),
    "KL missing": (lambda m, x: _parts(m, x)[3], "KL term is missing"),
    "KL summed over batch": (lambda m, x: (lambda p: p[3] - p[4].sum())(_parts(m, x)), "summed over the whole batch"),
    "no reparameterization": (_elbo_no_reparam, "no gradient reaches mu through z"),
    "hard-coded Bernoulli": (_elbo_bernoulli_only, "model.likelihood.log_prob"),
    "detached KL": (_elbo_detached_kl, "gradient in mu is not"),
    "one noise for the batch": (_elbo_shared_noise, "every example got the same noise"),
    "returns ELBOTerms": (lambda m, x: vaelab.elbo(m, x), "return only the tensor"),
    "scalar loss": (lambda m, x: vaelab.training_loss(vaelab.elbo(m, x)), "reduced over the batch"),
    "under no_grad": (lambda m, x: torch.no_grad()(elbo_by_hand)(m, x), "no gradient reaches the encoder"),
}


@pytest.mark.parametrize("fn", ELBO_CORRECT, ids=["by-hand", "torch.distributions", "vaelab.elbo"])
def test_elbo_check_passes_correct_implementations(fn):
    result = checks.check_elbo(fn, allow=True)
    assert result, result.message
    assert repr(result) == "check_elbo: passed (8 cases)"


@pytest.mark.parametrize("mistake", ELBO_MISTAKES, ids=list(ELBO_MISTAKES))
def test_elbo_check_catches_mistake_with_its_hint(mistake):
    fn, hint = ELBO_MISTAKES[mistake]
    result = checks.check_elbo(fn, hint="fix", allow=True)
    assert not result
    assert hint in result.message, result.message


def test_elbo_reference_matches_closed_form_for_linear_gaussian_model():
    """For p(x|z) = N(Wz + b, s2 I), E_q[log p(x|z)] = log N(x | W mu + b, s2) - tr(W S W^T) / (2 s2)."""
    torch.manual_seed(0)
    (_, _, _), (_, model, x) = checks.elbo._elbo_models()
    ref = checks.elbo._elbo_reference(model, x, samples=200_000)
    mu, logvar = model.encode(x)
    w, b = model.decoder.linear.weight, model.decoder.linear.bias
    s2 = model.likelihood.logvar.exp()
    with torch.no_grad():
        log_p_mean = Normal(mu @ w.T + b, s2.sqrt()).log_prob(x).sum(-1)
        trace = (w.pow(2) @ logvar.exp().T).sum(0) / (2 * s2)
        exact = log_p_mean - trace - vaelab.kl_standard_normal(mu, logvar)
    se = ref["std"] / math.sqrt(200_000)
    assert torch.all((ref["mean"] - exact).abs() < 5 * se)
    # The gradient in mu: d/dmu E_q[log p(x|z)] = W^T (x - W mu - b) / s2, minus d KL / d mu = mu.
    exact_gmu = ((x - mu @ w.T - b) @ w / s2 - mu).detach()
    assert torch.all((ref["gmu"] - exact_gmu).abs() < 5 * ref["gmu_std"] / math.sqrt(200_000) + 1e-12)


# --------------------------------------------------------------------------------------------
# Behaviour shared by all checks

ALL_CHECKS = [
    checks.check_reparameterize,
    checks.check_kl_standard_normal,
    checks.check_gaussian_log_likelihood,
    checks.check_bernoulli_log_likelihood,
    checks.check_elbo,
    checks.check_iwae_bound,
]


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_stub_reports_not_implemented_without_raising(check):
    result = check(stub)
    assert isinstance(result, CheckResult)
    assert not result
    assert "not implemented yet" in result.message
    assert "implement me" in result.message
    assert result.message.startswith(check.__name__)


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_raise_on_failure_raises_assertion_error_with_the_message(check):
    with pytest.raises(AssertionError, match="not implemented yet"):
        check(stub, raise_on_failure=True)


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_arbitrary_exception_is_reported_with_its_line(check):
    def broken(*args):
        return torch.ones(2, 3) @ torch.ones(1000, 3)  # a shape error inside the student's code

    result = check(broken)
    assert not result
    assert "RuntimeError" in result.message
    assert "in broken, line" in result.message
    assert "hint:" in result.message


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_nan_output_fails_cleanly(check):
    def nan(*args):
        first = args[1] if isinstance(args[0], torch.nn.Module) else args[0]
        return torch.full(
            first.shape[:1] if first.dim() == 2 and check is not checks.check_iwae_bound else first.shape[1:],
            float("nan"),
            dtype=torch.float64,
        )

    if check is checks.check_reparameterize:

        def nan(mu, logvar):  # noqa: F811 - z has the shape of mu
            return torch.full_like(mu, float("nan"))

    result = check(nan)
    assert not result
    assert "hint:" in result.message


def test_not_a_function_is_reported():
    result = checks.check_kl_standard_normal(vaelab.kl_standard_normal(torch.zeros(1, 1), torch.zeros(1, 1)))
    assert not result
    assert "pass the function itself" in result.message


def test_checks_are_deterministic_and_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = [check(stub).message for check in ALL_CHECKS] + [checks.check_elbo(elbo_by_hand).message]
    mistakes = [
        checks.check_reparameterize(REP_MISTAKES["variance instead of std"][0]).message,
        checks.check_elbo(ELBO_MISTAKES["no sampling (z = mu)"][0]).message,
    ]
    assert torch.equal(torch.rand(3), expected_next)
    again = [check(stub).message for check in ALL_CHECKS] + [checks.check_elbo(elbo_by_hand).message]
    assert first == again
    assert mistakes == [
        checks.check_reparameterize(REP_MISTAKES["variance instead of std"][0]).message,
        checks.check_elbo(ELBO_MISTAKES["no sampling (z = mu)"][0]).message,
    ]


def test_summary_lists_what_still_fails():
    good = checks.check_kl_standard_normal(vaelab.kl_standard_normal, allow=True)
    bad = checks.check_iwae_bound(stub)
    assert repr(checks.summary(good, good)) == "summary: all 2 checks passed"
    combined = checks.summary([good, bad])
    assert not combined
    assert repr(combined) == "summary: 1 of 2 checks passed; still to do: check_iwae_bound"
