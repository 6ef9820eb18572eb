"""fit(objective=...) and fit on labelled data for conditional models.

References: hand-written loops that follow fit's documented contract of random draws (so a
difference in what fit computes shows up bit for bit), the ELBO with a Monte Carlo KL for IWAE at
k = 1, and resume's comparison of runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vaelab
from vaelab import ImageData, build_vae, fit
from vaelab.estimators import IWAEObjective, iwae_loss
from vaelab.train.runs import RunMismatchError
from vaelab.train.training import make_optimizer


def synthetic_data(n=200, d=36, seed=0, binarization="dynamic"):
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(4, d, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = (prototypes[labels] + 0.1 * torch.rand(n, d, generator=g)).clamp(0, 1)
    return ImageData(images, labels, binarization=binarization, image_shape=(6, 6))


def small_model(seed=0):
    torch.manual_seed(seed)
    return build_vae(latent_dim=3, hidden_dim=16, side=6)


def hand_loop(model, data, epochs, batch_size, seed, step_loss, labels=False):
    """fit's documented draws: seeds, per epoch the shuffle, per batch binarization then the noise."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model, 1e-3)
    model.train()
    for _ in range(epochs):
        for batch in data.batches(batch_size, generator=generator, labels=labels):
            optimizer.zero_grad(set_to_none=True)
            step_loss(batch).backward()
            optimizer.step()


@pytest.mark.parametrize("objective", [IWAEObjective(3), IWAEObjective(4, "dreg"), IWAEObjective(2, "stl")])
def test_fit_with_an_iwae_objective_is_the_hand_written_iwae_loop(objective):
    data = synthetic_data()
    trained = small_model()
    fit(trained, data, epochs=2, batch_size=32, device="cpu", seed=3, progress=False, objective=objective)
    by_hand = small_model()
    hand_loop(by_hand, data, 2, 32, 3, lambda x: iwae_loss(by_hand, x, objective.k, objective.estimator)[0])
    for a, b in zip(trained.state_dict().values(), by_hand.state_dict().values()):
        assert torch.equal(a, b)


def test_the_elbo_objective_is_the_documented_elbo_loop_bit_for_bit():
    data = synthetic_data()
    trained = small_model()
    history = fit(trained, data, data, epochs=2, batch_size=32, device="cpu", seed=1, progress=False, objective="elbo")
    default = small_model()
    default_history = fit(default, data, data, epochs=2, batch_size=32, device="cpu", seed=1, progress=False)
    assert history.train_elbo == default_history.train_elbo and history.test_elbo == default_history.test_elbo
    by_hand = small_model()

    def loss(x):
        return vaelab.training_loss(vaelab.elbo(by_hand, x, validate=False))

    # fit also evaluates the test ELBO after each epoch (global noise): a run without a test set
    plain = small_model()
    fit(plain, data, epochs=2, batch_size=32, device="cpu", seed=1, progress=False)
    hand_loop(by_hand, data, 2, 32, 1, loss)
    for a, b in zip(plain.state_dict().values(), by_hand.state_dict().values()):
        assert torch.equal(a, b)


def test_iwae_at_k1_trains_like_the_elbo_with_a_monte_carlo_kl():
    data = synthetic_data()
    iwae = small_model()
    history = fit(iwae, data, epochs=2, batch_size=32, device="cpu", seed=2, progress=False, objective=IWAEObjective(1))
    mc = small_model()
    mc_history = fit(mc, data, epochs=2, batch_size=32, device="cpu", seed=2, progress=False, kl="mc")
    for a, b in zip(iwae.state_dict().values(), mc.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # the same draws; sums in another order
    assert history.train_elbo == pytest.approx(mc_history.train_elbo, abs=1e-3)


def test_iwae_history_records_the_elbo_of_the_same_draws():
    data = synthetic_data(n=64)
    model = small_model()
    history = fit(
        model, data, epochs=1, batch_size=64, device="cpu", seed=4, progress=False, objective=IWAEObjective(6)
    )
    # one step: the recorded train ELBO is mean_i log w_i of the draws of that step, computed before it
    again = small_model()
    torch.manual_seed(4)
    generator = torch.Generator().manual_seed(4)
    (x,) = list(data.batches(64, generator=generator))
    _, terms = iwae_loss(again, x, 6)
    assert history.train_elbo[0] == pytest.approx(terms.elbo.mean().item(), rel=1e-6)
    assert history.train_kl[0] == pytest.approx(terms.kl.mean().item(), rel=1e-5)
    assert terms.elbo.mean() < terms.bound.mean()  # what the column is not: L_6


def test_resume_compares_the_objective(tmp_path):
    data = synthetic_data()
    ckpt = tmp_path / "run.ckpt"
    common = dict(batch_size=32, device="cpu", seed=1, progress=False, checkpoint=ckpt)
    fit(small_model(), data, epochs=1, objective=IWAEObjective(2, "dreg"), **common)
    with pytest.raises(RunMismatchError, match=r"k=2 in the file but k=3 now"):
        fit(small_model(), data, epochs=2, objective=IWAEObjective(3, "dreg"), **common)
    with pytest.raises(RunMismatchError, match="objective="):
        fit(small_model(), data, epochs=2, **common)
    resumed = small_model(seed=9)
    fit(resumed, data, epochs=2, objective=IWAEObjective(2, "dreg"), **common)
    straight = small_model()
    fit(
        straight,
        data,
        epochs=2,
        batch_size=32,
        device="cpu",
        seed=1,
        progress=False,
        objective=IWAEObjective(2, "dreg"),
    )
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    run = vaelab.load_checkpoint(ckpt)["run"]
    assert (run["objective"], run["k"], run["estimator"]) == ("iwae", 2, "dreg")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"objective": "iwae"}, "IWAEObjective"),
        ({"objective": IWAEObjective(5), "beta": 0.5}, "beta=0.5"),
        ({"objective": IWAEObjective(5), "free_bits": 0.1}, "free_bits=0.1"),
        ({"objective": IWAEObjective(5), "n_samples": 2}, "n_samples=2"),
    ],
)
def test_bad_objectives_are_clear_errors(kwargs, words):
    with pytest.raises(ValueError) as info:
        fit(small_model(), synthetic_data(n=32), epochs=1, device="cpu", progress=False, **kwargs)
    assert words in str(info.value)


def test_batches_with_labels_yield_the_labels_of_the_same_images_and_the_same_draws():
    n = 50
    images = torch.rand(n, 4)
    images[:, 0] = torch.arange(n) / n  # the row index, readable from the (static) pixels
    data = ImageData(images, torch.arange(n) * 7, binarization="none", image_shape=(2, 2))
    pairs = list(data.batches(8, generator=torch.Generator().manual_seed(0), labels=True))
    plain = list(data.batches(8, generator=torch.Generator().manual_seed(0)))
    assert len(pairs) == len(plain)
    for (x, y), x_plain in zip(pairs, plain):
        assert torch.equal(x, x_plain)
        assert torch.equal(y, torch.round(x[:, 0] * n).long() * 7)
    (x, y), *_ = list(data.batches(8, shuffle=False, labels=True))
    assert torch.equal(y, torch.arange(8) * 7)
    dynamic = synthetic_data()  # with binarization: the same Bernoulli draws with and without labels
    a = [x for x, _ in dynamic.batches(16, generator=torch.Generator().manual_seed(1), labels=True)]
    b = list(dynamic.batches(16, generator=torch.Generator().manual_seed(1)))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


class _WithLabel(nn.Module):
    """Feeds [input, one-hot(y)] to a module (shared weights; y fixed by ``given``)."""

    def __init__(self, inner: nn.Module, y: torch.Tensor, classes: int, latent_dim: int) -> None:
        super().__init__()
        self.inner, self.y, self.classes, self.latent_dim = inner, y, classes, latent_dim

    def forward(self, h: torch.Tensor):
        onehot = F.one_hot(self.y, self.classes).to(h.dtype).expand(*h.shape[:-1], self.classes)
        return self.inner(torch.cat([h, onehot], dim=-1))


class TinyConditional(nn.Module):
    """A minimal conditional VAE: q(z|x, y) and p(x|z, y) by concatenating a one-hot label."""

    def __init__(self, d=36, latent=3, classes=4) -> None:
        super().__init__()
        self.classes, self.latent = classes, latent
        self.encoder = vaelab.MLPEncoder(d + classes, 16, latent)
        self.decoder = vaelab.MLPDecoder(latent + classes, 16, d)

    def given(self, y: torch.Tensor) -> vaelab.VAE:
        encoder = _WithLabel(self.encoder, y, self.classes, self.latent)
        decoder = _WithLabel(self.decoder, y, self.classes, self.latent)
        return vaelab.VAE(encoder, decoder, vaelab.BernoulliLikelihood(), vaelab.StandardNormalPrior(self.latent))


def test_fit_trains_a_conditional_model_on_the_labels_of_each_batch():
    data = synthetic_data()
    torch.manual_seed(0)
    model = TinyConditional()
    history = fit(model, data, epochs=2, batch_size=32, device="cpu", seed=5, progress=False)
    torch.manual_seed(0)
    by_hand = TinyConditional()

    def loss(batch):
        x, y = batch
        return vaelab.training_loss(vaelab.elbo(by_hand.given(y), x, validate=False))

    hand_loop(by_hand, data, 2, 32, 5, loss, labels=True)
    for a, b in zip(model.state_dict().values(), by_hand.state_dict().values()):
        assert torch.equal(a, b)
    assert len(history) == 2

    test = synthetic_data(seed=1, binarization="static")
    torch.manual_seed(0)
    got = vaelab.evaluate_elbo(model, test, batch_size=50)
    torch.manual_seed(0)
    with torch.no_grad():
        model.eval()
        expected = sum(
            vaelab.elbo(model.given(test.labels[i : i + 50]), test.images[i : i + 50]).elbo.sum().item()
            for i in range(0, len(test), 50)
        ) / len(test)
    assert got == pytest.approx(expected, rel=1e-6)
    with torch.no_grad():  # the wrong labels give another ELBO: the labels reach the model
        wrong = (test.labels + 1) % 4
        torch.manual_seed(0)
        shuffled = vaelab.elbo(model.given(wrong), test.images).elbo.mean().item()
    assert abs(shuffled - got) > 1e-3
