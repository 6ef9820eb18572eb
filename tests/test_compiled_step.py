"""fit(..., compile=True): the objective compiled by torch.compile (vaelab.train.fast) gives the eager
step's losses and gradients within float rounding, draws the same noise, falls back to eager with a
one-line notice where it cannot compile, and resumes checkpoints across modes."""

import math

import pytest
import torch

import vaelab.train.fast as fast
from vaelab import ELBO, ImageData, build_vae, fit, load_checkpoint
from vaelab.core.softplus import softplus

N, BATCH = 128, 32  # four full batches: one compiled shape


def synthetic_data(n=N, d=36, seed=0):
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(4, d, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = (prototypes[labels] + 0.1 * torch.rand(n, d, generator=g)).clamp(0, 1)
    return ImageData(images, labels, binarization="dynamic", image_shape=(6, 6))


def small_model(seed=0):
    torch.manual_seed(seed)
    return build_vae(latent_dim=3, hidden_dim=16, side=6)


def gradients(model, objective, x, seed):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss, terms = objective(model, x, 1.0)
    loss.backward()
    return loss.detach(), terms, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("kl", ["auto", "mc"])
def test_compiled_objective_gives_the_eager_loss_and_gradients(kl):
    """Same weights, same seed: the compiled graph draws torch's own noise (fallback_random), so the
    loss, each term and every gradient agree with the eager objective to float rounding."""
    model = small_model()
    x = torch.bernoulli(synthetic_data().images[:BATCH], generator=torch.Generator().manual_seed(1))
    objective = ELBO(kl=kl)
    compiled = fast.CompiledObjective(objective)
    for seed in (3, 4):  # the second call runs the compiled graph without compiling
        loss, terms, grads = gradients(model, objective, x, seed)
        c_loss, c_terms, c_grads = gradients(model, compiled, x, seed)
        torch.testing.assert_close(c_loss, loss, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(c_terms.elbo, terms.elbo, rtol=1e-5, atol=1e-4)
        for name, grad in grads.items():
            torch.testing.assert_close(c_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)
    assert compiled.failed is None and compiled.compile_seconds > 0


def test_the_traced_softplus_matches_the_reading_paths_and_its_derivative_sigmoid():
    logits = torch.tensor([-100.0, -20.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 20.0, 100.0], dtype=torch.float64)
    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    torch.testing.assert_close(fast._TracedSoftplus.apply(a), softplus(b))
    torch.testing.assert_close(
        fast._TracedSoftplus.apply(a), torch.log1p(torch.exp(-logits.abs())) + logits.clamp(min=0)
    )
    fast._TracedSoftplus.apply(a).sum().backward()
    torch.testing.assert_close(a.grad, torch.sigmoid(logits))


def test_fit_compiled_trains_like_eager_and_records_the_compile_time():
    data = synthetic_data()
    eager, compiled = small_model(), small_model()
    common = dict(epochs=2, batch_size=BATCH, device="cpu", seed=1, progress=False)
    h_eager = fit(eager, data, data, **common)
    h_compiled = fit(compiled, data, data, compile=True, **common)
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)
    for column in ("train_elbo", "train_kl", "test_elbo"):
        assert getattr(h_compiled, column) == pytest.approx(getattr(h_eager, column), rel=1e-4, abs=1e-3)
    assert h_compiled.compile_seconds[0] > 0 and len(h_compiled.compile_seconds) == 2
    assert "compile_seconds" not in h_eager.columns


def test_steps_of_the_kl_warmup_run_eagerly_and_agree():
    data = synthetic_data()
    eager, compiled = small_model(), small_model()
    common = dict(epochs=2, batch_size=BATCH, device="cpu", seed=2, progress=False, kl_warmup_epochs=1)
    h_eager = fit(eager, data, **common)
    h_compiled = fit(compiled, data, compile=True, **common)
    assert h_compiled.train_elbo == pytest.approx(h_eager.train_elbo, rel=1e-4, abs=1e-3)
    assert math.isnan(h_compiled.compile_seconds[0]) or h_compiled.compile_seconds[0] == 0.0
    assert h_compiled.compile_seconds[1] > 0  # compiled once the weight reached 1


def test_where_it_cannot_compile_fit_says_so_in_one_line_and_trains_eagerly(monkeypatch, capsys):
    """The failing compile is undone (its random state restored): the run is the eager run, bit for bit."""

    def broken(function, mode):
        def call(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return call

    monkeypatch.setattr(fast, "_compile", broken)
    data = synthetic_data()
    eager, fallback = small_model(), small_model()
    common = dict(epochs=1, batch_size=BATCH, device="cpu", seed=3, progress=False)
    h_eager = fit(eager, data, data, **common)
    capsys.readouterr()
    h_fallback = fit(fallback, data, data, compile=True, **common)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "compile" in line]
    assert len(lines) == 1 and "cannot compile the training step" in lines[0] and "training eagerly" in lines[0]
    assert "InvalidCxxCompiler" in lines[0]
    for a, b in zip(eager.parameters(), fallback.parameters()):
        assert torch.equal(a, b)
    assert h_fallback.train_elbo == h_eager.train_elbo and h_fallback.test_elbo == h_eager.test_elbo


def test_an_error_of_the_objective_itself_is_raised_not_hidden(monkeypatch):
    class Broken(ELBO):
        def __call__(self, model, x, kl_weight=1.0):
            raise ValueError("the objective's own error")

    with pytest.raises(ValueError, match="the objective's own error"):
        fit(
            small_model(),
            synthetic_data(),
            epochs=1,
            batch_size=BATCH,
            device="cpu",
            progress=False,
            objective=Broken(),
            compile=True,
        )


def test_an_unknown_compile_mode_is_a_one_line_error():
    with pytest.raises(ValueError, match="compile must be True, False or a torch.compile mode") as info:
        fit(small_model(), synthetic_data(), epochs=1, device="cpu", progress=False, compile="fastest")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("first, then", [(False, True), (True, False)])
def test_a_checkpoint_resumes_in_the_other_mode(tmp_path, first, then):
    """compile is not part of the run: an eager checkpoint continues compiled and the other way round,
    to the straight run's result within float rounding."""
    data = synthetic_data()
    common = dict(batch_size=BATCH, device="cpu", seed=4, progress=False)
    straight = small_model()
    h_straight = fit(straight, data, data, epochs=2, **common)
    ckpt = tmp_path / "run.ckpt"
    fit(small_model(), data, data, epochs=1, checkpoint=ckpt, compile=first, **common)
    resumed = small_model(seed=9)  # everything comes from the file
    history = fit(resumed, data, data, epochs=2, checkpoint=ckpt, compile=then, **common)
    assert load_checkpoint(ckpt)["epoch"] == 2 and history.epoch == [1, 2]
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)
    assert history.test_elbo == pytest.approx(h_straight.test_elbo, rel=1e-4, abs=1e-3)
    assert len(history.compile_seconds) == 2  # NaN in the eager epoch
