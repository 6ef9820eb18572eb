"""The trainer: checkpoint round trip, bit-identical continuation, a real MNIST run."""

import pytest
import torch

import vaelab
from vaelab import ImageData, build_vae, fit, load_checkpoint, load_model


def synthetic_data(n=300, d=36, seed=0):
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(4, d, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = (prototypes[labels] + 0.1 * torch.rand(n, d, generator=g)).clamp(0, 1)
    return ImageData(images, labels, binarization="dynamic", image_shape=(6, 6))


def small_model(seed=0):
    torch.manual_seed(seed)
    return build_vae(latent_dim=3, hidden_dim=16, side=6)


def test_checkpoint_round_trip_gives_bit_identical_continuation(tmp_path):
    data = synthetic_data()
    straight = small_model()
    history_straight = fit(straight, data, data, epochs=4, batch_size=32, device="cpu", seed=1, progress=False)

    resumed = small_model()
    ckpt = tmp_path / "run.ckpt"
    fit(resumed, data, data, epochs=2, batch_size=32, device="cpu", seed=1, checkpoint=ckpt, progress=False)
    fresh = small_model(seed=123)  # different initial weights: everything must come from the file
    history_resumed = fit(fresh, data, data, epochs=4, batch_size=32, device="cpu", seed=1,
                          checkpoint=ckpt, progress=False)

    for a, b in zip(straight.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert history_resumed.train_elbo == history_straight.train_elbo
    assert history_resumed.test_elbo == history_straight.test_elbo
    assert load_checkpoint(ckpt)["epoch"] == 4


def test_load_model_rebuilds_the_architecture(tmp_path):
    data = synthetic_data()
    model = small_model()
    fit(model, data, epochs=1, batch_size=64, device="cpu", checkpoint=tmp_path / "m.ckpt", progress=False)
    loaded, state = load_model(tmp_path / "m.ckpt")
    assert loaded.config == model.config
    x = data.images[:5]
    torch.testing.assert_close(loaded.reconstruct(x), model.reconstruct(x))
    assert state["settings"]["binarization"] == "dynamic"


def test_kl_warmup_and_free_bits_change_the_objective_not_the_reported_elbo():
    data = synthetic_data()
    h_plain = fit(small_model(), data, epochs=1, batch_size=32, device="cpu", progress=False)
    h_warm = fit(small_model(), data, epochs=1, batch_size=32, device="cpu", kl_warmup_epochs=5, progress=False)
    # with warm-up the KL is barely penalized in epoch 1, so it ends larger
    assert h_warm.train_kl[0] > h_plain.train_kl[0]
    for h in (h_plain, h_warm):
        assert h.train_elbo[0] == pytest.approx(h.train_reconstruction[0] - h.train_kl[0], abs=1e-3)


@pytest.mark.parametrize("beta", [1.0, 0.0, 4.0])
def test_training_loss_is_minus_the_batch_mean_of_reconstruction_minus_beta_kl(beta):
    torch.manual_seed(0)
    model = small_model()
    x = synthetic_data(n=10).images
    terms = vaelab.elbo(model, x)
    by_hand = -(terms.reconstruction.sum() - beta * terms.kl.sum()) / len(x)
    torch.testing.assert_close(vaelab.training_loss(terms, beta), by_hand)
    # free bits: each dimension's batch-mean KL counts as at least lambda nats
    lam = 0.3
    kl_counted = sum(max(lam, terms.kl_per_dim[:, j].mean().item()) for j in range(model.latent_dim))
    expected = -(terms.reconstruction.mean().item() - beta * kl_counted)
    assert vaelab.training_loss(terms, beta, free_bits=lam).item() == pytest.approx(expected, rel=1e-5)


def test_nan_loss_stops_training_with_epoch_and_step(tmp_path):
    data = synthetic_data()
    model = small_model()
    with pytest.raises(vaelab.NonFiniteLossError, match=r"epoch 1, step \d+"):
        fit(model, data, epochs=1, batch_size=32, lr=1e30, device="cpu", progress=False)


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu"])
def test_unknown_device_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="device"):
        vaelab.resolve_device(bad)


@pytest.mark.slow
def test_short_mnist_run_improves_test_elbo():
    torch.manual_seed(0)
    train = vaelab.load_mnist("train", binarization="dynamic", limit=4000, download=False)
    test = vaelab.load_mnist("test", binarization="static", limit=1000, download=False)
    model = build_vae(latent_dim=10, hidden_dim=200)
    history = fit(model, train, test, epochs=4, batch_size=100, device="cpu", progress=False)
    # an untrained decoder gives about -784 log 2 = -543 nats; a few epochs reach well above -200
    assert history.test_elbo[0] < history.test_elbo[-1]
    assert history.test_elbo[-1] > -200
    assert all(kl >= 0 for kl in history.train_kl)


def test_resume_with_other_settings_is_a_clear_error(tmp_path):
    data = synthetic_data()
    ckpt = tmp_path / "run.ckpt"
    fit(small_model(), data, epochs=1, batch_size=32, device="cpu", checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match=r"lr=0.001 in the file but lr=0.01 now"):
        fit(small_model(), data, epochs=2, batch_size=32, lr=0.01, device="cpu", checkpoint=ckpt, progress=False)
    # the refused resume left the file as it was
    assert load_checkpoint(ckpt)["epoch"] == 1


def test_a_new_checkpoint_removes_temporary_files_of_killed_writers(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    leftover = tmp_path / ".run.ckpt.abc123.tmp"
    leftover.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.ckpt.abc123.tmp"
    other.write_bytes(b"not ours")
    vaelab.save_checkpoint(ckpt, {"epoch": 0})
    assert not leftover.exists() and other.exists()
    assert load_checkpoint(ckpt)["epoch"] == 0


def test_diagnostics_reject_bad_data():
    model = build_vae(latent_dim=2, hidden_dim=8)
    with pytest.raises(ValueError, match="divide by 255"):
        vaelab.latent_summary(model, ImageData(torch.rand(10, 784) * 255, torch.zeros(10, dtype=torch.long)))
    with pytest.raises(ValueError, match="empty"):
        vaelab.rate_distortion(model, ImageData(torch.rand(0, 784), torch.zeros(0, dtype=torch.long)))
