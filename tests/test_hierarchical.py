"""The two-stochastic-layer VAE (issue 25, item 1): p(z2) p(z1|z2) p(x|z1) with q(z1|x) q(z2|z1), Burda et
al. (2015)'s sizes, as a plain ``vaelab.VAE`` over z = [z1, z2].

References: the log-weights by hand with torch.distributions on the same noise, L_1 <= L_5 <= L_50 on
average within standard errors, autograd through detached parameters, Burda et al.'s active-unit
criterion computed by hand, and fit, checkpoints, resume and the command line."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.distributions as D
from torch import nn

import vaelab
from vaelab import ImageData, build_vae, fit
from vaelab.estimators import bernoulli_mlp, iwae_loss
from vaelab.models.hierarchical import TwoLayerPosterior, two_layer_parts
from vaelab.train.runs import RunMismatchError

SIDE = 6
PIXELS = SIDE * SIDE
DIMS, HX, HZ = (4, 2), (8,), (5,)  # small sizes for the numerical tests
FIT = {"batch_size": 32, "device": "cpu", "seed": 1, "progress": False}


def small_model(seed: int = 0) -> vaelab.VAE:
    torch.manual_seed(seed)
    encoder, decoder, prior = two_layer_parts(PIXELS, None, DIMS, HX, HZ)
    for module in (encoder, decoder, prior):  # move away from the zero biases of the paper's initialization
        for p in module.parameters():
            p.data.add_(0.3 * torch.randn_like(p))
    return vaelab.VAE(encoder, decoder, vaelab.BernoulliLikelihood(), prior).double()


def images(n: int = 6, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(n, PIXELS, generator=g, dtype=torch.float64), generator=g)


def synthetic_data(n: int = 200, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(4, 784, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    x = (prototypes[labels] + 0.1 * torch.rand(n, 784, generator=g)).clamp(0, 1)
    return ImageData(x, labels, binarization="dynamic", image_shape=(28, 28))


def gaussian(layer: nn.Module, h: torch.Tensor) -> D.Distribution:
    """The diagonal Gaussian of a stochastic layer, by hand: tanh network, then the (mean, log-variance) head."""
    for module in layer.body:
        h = module(h)
    mu, logvar = layer.head(h).chunk(2, dim=-1)
    return D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1)


def test_the_model_has_burda_et_als_two_layer_architecture():
    """784-200-200-(100+100), 100-100-100-(50+50) tanh; p(z1|z2): 50-100-100-(100+100); p(x|z1): 100-200-200-784."""
    model = build_vae(layers=2)
    shapes = lambda m: [tuple(x.weight.shape) for x in m.modules() if isinstance(x, nn.Linear)]  # noqa: E731
    assert shapes(model.encoder) == [(200, 784), (200, 200), (200, 200), (100, 100), (100, 100), (100, 100)]
    assert shapes(model.prior) == [(100, 50), (100, 100), (200, 100)]
    assert shapes(model.decoder) == [(200, 100), (200, 200), (784, 200)]
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 8
    assert model.latent_dim == 150 and model.config.layers == 2
    for layer in [m for m in model.modules() if isinstance(m, nn.Linear)]:
        bound = math.sqrt(6 / sum(layer.weight.shape))  # Glorot and Bengio (2010)
        assert layer.weight.abs().max() <= bound and not layer.bias.any()
    assert not bernoulli_mlp.applies_to(model)  # the MLP-Bernoulli shortcut reads z whole: not this decoder


def test_log_weights_match_a_hand_computation_with_torch_distributions_on_the_same_noise():
    model, x, k = small_model(), images(), 7
    got = vaelab.log_importance_weights(model, x, k, generator=torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)  # the draws in the order q makes them: eps1, then eps2
    eps1 = torch.randn(k, len(x), DIMS[0], dtype=torch.float64, generator=g)
    eps2 = torch.randn(k, len(x), DIMS[1], dtype=torch.float64, generator=g)
    q1 = gaussian(model.encoder.first, x)
    z1 = q1.base_dist.loc + q1.base_dist.scale * eps1
    q2 = gaussian(model.encoder.second, z1)
    z2 = q2.base_dist.loc + q2.base_dist.scale * eps2
    log_q = q1.log_prob(z1) + q2.log_prob(z2)
    log_p = D.Independent(D.Normal(torch.zeros_like(z2), 1.0), 1).log_prob(z2) + gaussian(
        model.prior.first, z2
    ).log_prob(z1)
    h = z1
    for module in model.decoder.body:
        h = module(h)
    log_px = D.Independent(D.Bernoulli(logits=model.decoder.out(h)), 1).log_prob(x.expand(k, -1, -1))
    torch.testing.assert_close(got, log_px + log_p - log_q, rtol=1e-10, atol=1e-10)
    # log q of the draws is q.log_prob at the same codes, and the ELBO's Monte Carlo KL uses both layers
    q = model.posterior(x)
    z, log_q_drawn = q.rsample_with_log_prob(k, torch.Generator().manual_seed(11))
    torch.testing.assert_close(q.log_prob(z), log_q_drawn, rtol=1e-12, atol=1e-12)
    terms = vaelab.elbo(model, x, n_samples=k, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(terms.elbo, (log_px + log_p - log_q).mean(0), rtol=1e-10, atol=1e-10)
    assert terms.kl_per_dim is None
    with pytest.raises(ValueError, match="kl='mc'"):
        vaelab.elbo(model, x, kl="analytic")


def test_prior_log_prob_and_samples_are_p_z2_times_p_z1_given_z2():
    model = small_model()
    z = model.prior.sample(20_000, generator=torch.Generator().manual_seed(4))
    assert z.shape == (20_000, sum(DIMS)) and z.dtype == torch.float64
    z2 = z[:, DIMS[0] :]
    assert (z2.mean(0).abs() <= 5 / math.sqrt(len(z))).all()  # p(z2) = N(0, I)
    p1 = gaussian(model.prior.first, z2)  # z1 given z2: its standardized residuals are N(0, 1)
    residual = (z[:, : DIMS[0]] - p1.base_dist.loc) / p1.base_dist.scale
    assert (residual.mean(0).abs() <= 5 / math.sqrt(len(z))).all()
    assert ((residual.var(0) - 1).abs() <= 5 * math.sqrt(2 / len(z))).all()
    reference = D.Independent(D.Normal(torch.zeros_like(z2), 1.0), 1).log_prob(z2) + p1.log_prob(z[:, : DIMS[0]])
    torch.testing.assert_close(model.prior.log_prob(z), reference.detach(), rtol=1e-10, atol=1e-10)


def test_elbo_is_below_l5_below_l50_on_average():
    model, x = small_model(), images(n=20)
    with torch.no_grad():
        bounds = {
            k: torch.stack(
                [vaelab.iwae_bound(model, x, k, generator=torch.Generator().manual_seed(s)) for s in range(40)]
            )
            for k in (1, 5, 50)
        }
    means = {k: b.mean(0) for k, b in bounds.items()}  # (20,) per image, over 40 repetitions
    for small, large in ((1, 5), (5, 50)):
        diff = (bounds[large] - bounds[small]).mean(1)  # per repetition, averaged over the images
        assert diff.mean() > 0 and diff.mean() > -5 * diff.std() / math.sqrt(len(diff))
        assert (means[large] >= means[small] - 5 * (bounds[small].std(0) + bounds[large].std(0)) / math.sqrt(40)).all()


@pytest.mark.parametrize("estimator", ["reparam", "dreg", "stl"])
def test_the_iwae_estimators_train_both_layers_and_dreg_holds_q_constant(estimator):
    model, x = small_model(), images()
    loss, terms = iwae_loss(model, x, 5, estimator, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        -loss, vaelab.iwae_bound(model, x, 5, generator=torch.Generator().manual_seed(2)).mean(), rtol=1e-10, atol=1e-10
    )
    loss.backward()
    for part in (model.encoder.first, model.encoder.second, model.prior, model.decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    q = model.posterior(x)
    z = q.rsample(3, torch.Generator().manual_seed(1)).detach().requires_grad_()
    detached = q.detach()
    assert isinstance(detached, TwoLayerPosterior)
    params = list(model.encoder.parameters())
    grads = torch.autograd.grad(detached.log_prob(z).sum(), [z, *params], allow_unused=True)
    assert grads[0] is not None and all(g is None for g in grads[1:])
    torch.testing.assert_close(detached.log_prob(z), q.log_prob(z))


def test_log_likelihood_estimate_takes_the_general_path_and_is_l_k():
    model, x = small_model(), images()
    got = vaelab.log_likelihood_estimate(model, x, k=64, batch_size=3, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        reference = torch.cat([vaelab.iwae_bound(model, x[i : i + 3], 64, generator=g) for i in (0, 3)])
    torch.testing.assert_close(got, reference, rtol=1e-10, atol=1e-10)


def test_active_units_per_layer_follow_burda_et_als_criterion():
    model = small_model()
    data = ImageData(images(n=50).float().double(), torch.zeros(50, dtype=torch.long), "static", (SIDE, SIDE))
    with torch.no_grad():
        model.encoder.second.head.weight[0].zero_()  # unit 0 of z2: a constant posterior mean, inactive
        units = vaelab.active_units(model, data, n_samples=2000, generator=torch.Generator().manual_seed(0))
        assert set(units) == {"z1", "z2"}
        mu1 = gaussian(model.encoder.first, data.images).base_dist.loc
        torch.testing.assert_close(units["z1"].activity, mu1.var(0), rtol=1e-10, atol=1e-12)
        eps = torch.randn(2000, 50, DIMS[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        z1 = mu1 + gaussian(model.encoder.first, data.images).base_dist.scale * eps
        mean2 = gaussian(model.encoder.second, z1).base_dist.loc.mean(0)  # E_q[z2|x] = E_q(z1|x)[mu2(z1)]
    torch.testing.assert_close(units["z2"].activity, mean2.var(0), rtol=1e-8, atol=1e-12)
    assert units["z2"].activity[0] < 1e-20 and not units["z2"].active[0]
    assert units["z1"].n_active == int((mu1.var(0) > 0.01).sum())
    one_layer = vaelab.active_units(build_vae(latent_dim=3, hidden_dim=8, side=SIDE).double(), data)
    assert set(one_layer) == {"z"} and one_layer["z"].activity.shape == (3,)


def test_fit_checkpoint_round_trip_and_resume(tmp_path):
    ckpt, data = tmp_path / "run.ckpt", synthetic_data()
    torch.manual_seed(0)
    model = build_vae(layers=2)
    before = {k: v.clone() for k, v in model.prior.state_dict().items()}
    history = fit(model, data, epochs=1, lr=1e-3, checkpoint=ckpt, **FIT)
    assert math.isfinite(history.train_elbo[-1])
    assert all((v - before[k]).abs().max() > 0 for k, v in model.prior.state_dict().items())  # p(z1|z2) trains
    loaded, _ = vaelab.load_model(ckpt)
    assert loaded.config.layers == 2
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    x = data.fixed_binarization(0).images[:4]
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(
            vaelab.iwae_bound(loaded, x, 10, generator=g()), vaelab.iwae_bound(model.eval(), x, 10, generator=g())
        )
    fit(model, data, epochs=2, lr=1e-3, checkpoint=ckpt, **FIT)  # resumes to epoch 2
    assert vaelab.load_checkpoint(ckpt)["epoch"] == 2
    with pytest.raises(RunMismatchError, match=re.escape("model.layers=2 in the file but model.layers=1 now")):
        fit(build_vae(), data, epochs=3, checkpoint=ckpt, **FIT)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"layers": 3}, "layers must be an integer from 1 to 2, got 3."),
        ({"layers": 2, "prior": "vamp"}, "so prior='vamp' does not apply"),
        ({"layers": 2, "architecture": "conv", "latent_dim": 5}, "so architecture='conv', latent_dim=5 does not apply"),
    ],
)
def test_invalid_layer_settings_are_one_line_errors(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        build_vae(**settings)
    assert "\n" not in str(info.value)


def test_the_command_line_refuses_flags_the_two_layer_model_fixes(tmp_path, capsys):
    from vaelab.cli import main

    status = main(["train", "--layers", "2", "--prior", "vamp", "--latent-dim", "7", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "--prior vamp, --latent-dim 7 does not apply" in err and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_the_command_line_trains_evaluates_and_resumes_the_two_layer_model(tmp_path, mnist_root, capsys, monkeypatch):
    from vaelab.cli import main

    monkeypatch.setenv("VAELAB_QUIET", "1")
    out = str(tmp_path / "two")
    flags = ["--layers", "2", "--limit", "300", "--device", "cpu", "--out", out]
    assert main(["train", "--epochs", "1", *flags]) == 0
    assert "test ELBO" in capsys.readouterr().out
    assert vaelab.load_model(tmp_path / "two" / "model.ckpt")[0].config.layers == 2
    assert main(["evaluate", f"{out}/model.ckpt", "--k", "5", "--limit", "20", "--device", "cpu"]) == 0
    assert "log p(x) estimate (k=5)" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["train", "--epochs", "2", "--limit", "300", "--device", "cpu", "--out", out]) == 2  # --layers 1
    assert "--layers 2 then, --layers 1 now" in capsys.readouterr().err
