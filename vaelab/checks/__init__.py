"""Homework checks: run a student's implementation against vaelab's reference.

Each ``check_*`` function calls the student's function on a fixed list of random and edge-case
inputs (fixed seeds, so the verdict is the same on every run) and returns a ``CheckResult``:
truthy if every case passed. Its text is one line on success, e.g.
``check_kl_standard_normal: passed (12 cases)``; on failure it names the input, what was
expected, what came back and a hint aimed at the mistake it recognizes (a sign error, a missing
1/2, the standard deviation used as the variance, an average where a sum belongs, a missing
``log k``, an overflow, no gradient reaching ``mu``, a wrong shape, ...).

Every check takes the same keyword arguments:

* ``hint="kind"`` (the default) names the kind of mistake without the answer's code ("the factor 1/2
  is missing", "you averaged over the pixels instead of summing"); ``hint="where"`` shows only the
  failing input with the expected and returned values; ``hint="fix"`` also shows the fix, code
  included (e.g. for worked solutions after the deadline). ``HINT_LEVELS`` lists them.
* ``allow=()``: each check refuses the ready-made functions that do its task for the student, listed
  in its module's ``REFUSED`` (e.g. ``vaelab.kl_standard_normal`` and
  ``torch.distributions.kl_divergence`` for the KL): a call to one of them from the student's code
  (not from vaelab or torch, so a model's own methods stay usable) fails with "not allowed in this
  task". ``allow=["torch.distributions.kl_divergence"]`` permits the names given, ``allow=True`` all.
* A task that says "stays finite" (large logits, log-weights of -1000 nats) is checked in float32,
  the dtype models train in, as well as in float64.

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
* ``check_autoencoder_loss(fn)``: fn(x, logits) -> binary cross-entropy of grey pixels from the
  logits, summed over pixels, (batch,) (chapter 2's reconstruction loss).
* ``check_slerp(fn)``: fn(z_a, z_b, t) -> spherical interpolation between two codes, (steps, d).
* ``check_gradient_snr(fn)``: fn(grads: (M, n_params)) -> |mean| / std over the M draws of each
  parameter, (n_params,) (Rainforth et al. 2018's signal-to-noise ratio).
* ``check_planar_log_det(fn)``: fn(z, u_hat, w, b) -> log |det df/dz| of the planar map
  f(z) = z + u_hat tanh(w^T z + b), (batch,) (chapter 11).
* ``check_discretized_logistic(fn)``: fn(x, mean, log_scale) -> sum_i log P(x_i), the discretized
  logistic's log-probability of the 8-bit levels x = k/255, (batch,) (chapter 14).
* ``check_bits_per_dim(fn)``: fn(log_px, num_dims, density) -> -log P(x) / (D log 2), a density at
  the dequantized pixels first moved by - D log 256, shape of log_px (chapter 14).
* ``check_mixture_log_prob(fn)``: fn(z, logits, means, logvars) -> log sum_k pi_k N(z | m_k,
  diag(exp(logvar_k))) with pi = softmax(logits), (batch,), by log-sum-exp (chapter 12's learned prior).
* ``check_elbo_decomposition(fn)``: fn(z, mu, logvar) -> (mutual_information, marginal_kl), Hoffman and
  Johnson (2016)'s split of the average KL into I_q(x; z) and KL(q(z) || p(z)) over N images (chapter 12).

Layout: ``_runner.py`` holds ``CheckResult``, ``summary`` and the helpers a check is built from
(``run_check``, ``Runner``, ``Failure``, ``as_output``, ``compare``, ``grad_check``, ...); each
check lives in a module named after it (``kl_standard_normal.py`` holds
``check_kl_standard_normal`` and its catalogue of typical mistakes).

To add a check ``check_<name>``:

1. write ``vaelab/checks/<name>.py`` after the pattern of ``kl_standard_normal.py``: build the cases
   with a fixed seed (run the "stays finite" ones through ``dtype_runs`` so they run in float32 too),
   write ``body(runner)`` with the helpers of ``._runner``, list the known wrong formulas with their
   hints (a plain string is the "fix" text, and its "kind" is its clauses before the first one with
   code; give ``Hint(kind=..., fix=...)`` when that cut does not read well), set ``REFUSED`` to the
   ready-made functions that would do the task, and ``return run_check("check_<name>", fn, body,
   n_cases, raise_on_failure, hint=hint, forbidden=REFUSED, allow=allow)``; set
   ``__all__ = ["check_<name>"]``;
2. add one line below, ``from .<name> import check_<name>``, and the name to ``__all__``;
3. test it in ``tests/test_checks_<name>.py``: a correct solution passes, and each mistake of the
   catalogue (a dict ``MISTAKES``) fails with its hint at ``hint="fix"``; add ``MISTAKES`` to
   ``CATALOGUES`` in ``tests/test_checks_teacher.py``, which checks that the default feedback shows
   no answer code.
"""

from __future__ import annotations

from ._runner import DEFAULT_HINT, HINT_LEVELS, CheckResult, summary
from .autoencoder_loss import check_autoencoder_loss
from .bernoulli_log_likelihood import check_bernoulli_log_likelihood
from .bits_per_dim import check_bits_per_dim
from .discretized_logistic import check_discretized_logistic
from .effective_sample_size import check_effective_sample_size
from .elbo import check_elbo
from .elbo_decomposition import check_elbo_decomposition
from .free_bits import check_free_bits_kl
from .gaussian_log_likelihood import check_gaussian_log_likelihood
from .gradient_snr import check_gradient_snr
from .iwae_bound import check_iwae_bound
from .kl_standard_normal import check_kl_standard_normal
from .mixture_log_prob import check_mixture_log_prob
from .planar_log_det import check_planar_log_det
from .reparameterize import check_reparameterize
from .slerp import check_slerp

__all__ = [
    "CheckResult",
    "DEFAULT_HINT",
    "HINT_LEVELS",
    "check_reparameterize",
    "check_kl_standard_normal",
    "check_gaussian_log_likelihood",
    "check_bernoulli_log_likelihood",
    "check_elbo",
    "check_iwae_bound",
    "check_slerp",
    "check_autoencoder_loss",
    "check_effective_sample_size",
    "check_free_bits_kl",
    "check_gradient_snr",
    "check_planar_log_det",
    "check_discretized_logistic",
    "check_bits_per_dim",
    "check_mixture_log_prob",
    "check_elbo_decomposition",
    "summary",
]
