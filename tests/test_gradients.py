"""Score-function and reparameterized gradient estimators against closed-form gradients."""

import math

import pytest
import torch

from vaelab.estimators.gradients import reparameterized_gradient, score_function_gradient

F64 = torch.float64
MU = torch.tensor([[0.5, -1.0, 2.0]], dtype=F64)
LOGVAR = torch.tensor([[0.0, -1.0, 0.7]], dtype=F64)
C = torch.tensor([1.0, 0.0, -0.5], dtype=F64)


def quadratic(z):
    return ((z - C) ** 2).sum(-1)


def within_standard_errors(samples, exact, k=5.0):
    """Mean of per-sample estimates within k standard errors of the exact value."""
    mean = samples.mean(0)
    standard_error = samples.std(0) / math.sqrt(samples.shape[0])
    return bool(((mean - exact).abs() <= k * standard_error + 1e-12).all())


# E_q ||z - c||^2 = ||mu - c||^2 + sum sigma^2: d/dmu = 2 (mu - c), d/dlogvar = sigma^2.
@pytest.mark.parametrize("estimator", [score_function_gradient, reparameterized_gradient])
def test_quadratic_gradient_is_unbiased(estimator):
    torch.manual_seed(0)
    g_mu, g_lv = estimator(quadratic, MU, LOGVAR, 200_000, per_sample=True)
    assert g_mu.shape == g_lv.shape == (200_000, 1, 3)
    assert within_standard_errors(g_mu, 2 * (MU - C))
    assert within_standard_errors(g_lv, LOGVAR.exp())


# E_q sum exp(z) = sum exp(mu + sigma^2 / 2): d/dmu = exp(mu + sigma^2/2), d/dlogvar = sigma^2/2 of that.
@pytest.mark.parametrize("estimator", [score_function_gradient, reparameterized_gradient])
def test_exponential_gradient_is_unbiased(estimator):
    torch.manual_seed(1)
    mu, logvar = torch.tensor([[0.3, -0.2]], dtype=F64), torch.tensor([[-1.0, -0.5]], dtype=F64)
    g_mu, g_lv = estimator(lambda z: z.exp().sum(-1), mu, logvar, 200_000, per_sample=True)
    mean = torch.exp(mu + 0.5 * logvar.exp())
    assert within_standard_errors(g_mu, mean)
    assert within_standard_errors(g_lv, 0.5 * logvar.exp() * mean)


def test_single_sample_estimates_match_hand_formulas():
    """With the same noise eps, each single-sample estimate equals its textbook formula."""
    n = 7
    sigma = (0.5 * LOGVAR).exp()
    eps = torch.randn((n, *MU.shape), dtype=F64, generator=torch.Generator().manual_seed(3))
    z = MU + sigma * eps
    f = quadratic(z).unsqueeze(-1)
    r_mu, r_lv = reparameterized_gradient(
        quadratic, MU, LOGVAR, n, per_sample=True, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(r_mu, 2 * (z - C))
    torch.testing.assert_close(r_lv, 2 * (z - C) * 0.5 * sigma * eps)
    s_mu, s_lv = score_function_gradient(
        quadratic, MU, LOGVAR, n, per_sample=True, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(s_mu, f * (z - MU) / sigma**2)
    torch.testing.assert_close(s_lv, f * 0.5 * ((z - MU) ** 2 / sigma**2 - 1))


def test_average_is_the_mean_of_the_textbook_single_sample_estimates():
    """Without per_sample, each estimator returns the mean of the n textbook single-sample estimates built
    by hand from the same noise (not a comparison of vaelab with itself)."""
    n = 11
    sigma = (0.5 * LOGVAR).exp()
    eps = torch.randn((n, *MU.shape), dtype=F64, generator=torch.Generator().manual_seed(4))
    z = MU + sigma * eps
    f = quadratic(z).unsqueeze(-1)
    by_hand = {
        reparameterized_gradient: (2 * (z - C), 2 * (z - C) * 0.5 * sigma * eps),
        score_function_gradient: (f * (z - MU) / sigma**2, f * 0.5 * ((z - MU) ** 2 / sigma**2 - 1)),
    }
    for estimator, (hand_mu, hand_lv) in by_hand.items():
        g_mu, g_lv = estimator(quadratic, MU, LOGVAR, n, generator=torch.Generator().manual_seed(4))
        assert g_mu.shape == g_lv.shape == MU.shape
        torch.testing.assert_close(g_mu, hand_mu.mean(0))
        torch.testing.assert_close(g_lv, hand_lv.mean(0))


def test_reparameterized_variance_matches_closed_form():
    """Var of one reparameterized sample for ||z - c||^2: 4 sigma^2 (mu) and a^2 sigma^2 + 2 sigma^4
    (logvar), a = mu - c; compared within 5 standard errors of the sample variance."""
    torch.manual_seed(5)
    n = 200_000
    g_mu, g_lv = reparameterized_gradient(quadratic, MU, LOGVAR, n, per_sample=True)
    var, a = LOGVAR.exp(), MU - C
    for samples, exact in ((g_mu, 4 * var), (g_lv, a**2 * var + 2 * var**2)):
        centred = samples - samples.mean(0)
        sample_var = centred.pow(2).mean(0)
        se = ((centred.pow(4).mean(0) - sample_var**2) / n).sqrt()
        assert ((sample_var - exact).abs() <= 5 * se).all()


def test_score_function_handles_non_differentiable_f():
    """E_q[1{z > 0}] = Phi(mu / sigma): d/dmu = phi(mu / sigma) / sigma. Only the score function
    estimator applies; the reparameterized one refuses with a clear error."""
    torch.manual_seed(6)
    mu, logvar = torch.tensor([[0.4]], dtype=F64), torch.tensor([[0.2]], dtype=F64)
    sigma = (0.5 * logvar).exp()

    def step(z):
        return (z > 0).to(z.dtype).sum(-1)

    g_mu, _ = score_function_gradient(step, mu, logvar, 200_000, per_sample=True)
    exact = torch.exp(-0.5 * (mu / sigma) ** 2) / math.sqrt(2 * math.pi) / sigma
    assert within_standard_errors(g_mu, exact)
    with pytest.raises(ValueError, match="score_function_gradient"):
        reparameterized_gradient(step, mu, logvar, 10)


def test_baseline_keeps_mean_and_reduces_variance():
    torch.manual_seed(7)

    def shifted(z):
        return 100.0 + quadratic(z)

    plain = score_function_gradient(shifted, MU, LOGVAR, 100_000, per_sample=True)
    with_baseline = score_function_gradient(shifted, MU, LOGVAR, 100_000, per_sample=True, baseline=100.0)
    assert within_standard_errors(with_baseline[0], 2 * (MU - C))
    assert within_standard_errors(plain[0], 2 * (MU - C))
    assert (with_baseline[0].var(0) < 0.1 * plain[0].var(0)).all()


def test_works_under_no_grad_and_leaves_inputs_alone():
    mu = MU.clone().requires_grad_(True)
    with torch.no_grad():
        for estimator in (score_function_gradient, reparameterized_gradient):
            g_mu, g_lv = estimator(quadratic, mu, LOGVAR, 5)
            assert g_mu.shape == g_lv.shape == MU.shape
            assert not g_mu.requires_grad
    assert mu.grad is None


@pytest.mark.parametrize("estimator", [score_function_gradient, reparameterized_gradient])
def test_batch_rows_are_independent(estimator):
    """Two identical rows of mu get independent noise: their single-sample estimates differ, and over
    40,000 samples their correlation is within 5 standard errors (5 / sqrt(n)) of 0, while each row is
    unbiased on its own."""
    n = 40_000
    mu = MU.expand(2, 3).clone()
    logvar = LOGVAR.expand(2, 3).clone()
    g_mu, _ = estimator(quadratic, mu, logvar, n, per_sample=True, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(g_mu[:, 0], g_mu[:, 1])
    for j in range(3):
        correlation = torch.corrcoef(torch.stack([g_mu[:, 0, j], g_mu[:, 1, j]]))[0, 1]
        assert abs(correlation.item()) < 5 / math.sqrt(n), (j, correlation)
    for row in range(2):
        assert within_standard_errors(g_mu[:, row], 2 * (MU[0] - C))


def test_rows_of_different_mu_get_their_own_exact_gradient():
    """Linear f: the reparameterized estimate is exact for every sample and row."""
    mu = torch.tensor([[0.0, 1.0], [2.0, -3.0]], dtype=F64)
    a = torch.tensor([1.5, -2.0], dtype=F64)
    g_mu, g_lv = reparameterized_gradient(lambda z: (z * a).sum(-1), mu, torch.zeros_like(mu), 4, per_sample=True)
    torch.testing.assert_close(g_mu, a.expand(4, 2, 2))
    assert g_lv.shape == (4, 2, 2)


@pytest.mark.parametrize("estimator", [score_function_gradient, reparameterized_gradient])
def test_clear_errors(estimator):
    with pytest.raises(ValueError, match="one value per sample"):
        estimator(lambda z: z, MU, LOGVAR, 3)
    with pytest.raises(ValueError, match="n_samples"):
        estimator(quadratic, MU, LOGVAR, 0)
    with pytest.raises(ValueError, match="logvar"):
        estimator(quadratic, MU, LOGVAR[:, :2], 3)
    with pytest.raises(TypeError, match="f must be a function"):
        estimator(3.0, MU, LOGVAR, 3)
