"""The trainer: checkpoint round trip, bit-identical continuation, a real MNIST run; resuming only
the same run, falling back to the previous checkpoint, divergence, locking, the order of draws."""

import json
import math
import re
import subprocess
import sys

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
    history_resumed = fit(
        fresh, data, data, epochs=4, batch_size=32, device="cpu", seed=1, checkpoint=ckpt, progress=False
    )

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
    assert state["run"]["binarization"] == "dynamic"


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
    with pytest.raises(ValueError, match=r"lr=0.001 in the file but lr=0.01 now.*resume=False"):
        fit(small_model(), data, epochs=2, batch_size=32, lr=0.01, device="cpu", checkpoint=ckpt, progress=False)
    # the refused resume left the file as it was
    assert load_checkpoint(ckpt)["epoch"] == 1


def test_a_new_checkpoint_removes_only_vaelabs_own_temporary_files(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    leftover = tmp_path / ".run.ckpt.vaelab-abc123.tmp"  # the name vaelab's writer uses
    leftover.write_bytes(b"half a checkpoint")
    others = [tmp_path / ".run.ckpt.abc123.tmp", tmp_path / ".other.ckpt.vaelab-abc123.tmp"]
    for other in others:
        other.write_bytes(b"not ours")
    vaelab.save_checkpoint(ckpt, {"epoch": 0})
    assert not leftover.exists() and all(other.read_bytes() == b"not ours" for other in others)
    assert load_checkpoint(ckpt)["epoch"] == 0


def test_diagnostics_reject_bad_data():
    model = build_vae(latent_dim=2, hidden_dim=8)
    with pytest.raises(ValueError, match="divide by 255"):
        vaelab.latent_summary(model, ImageData(torch.rand(10, 784) * 255, torch.zeros(10, dtype=torch.long)))
    with pytest.raises(ValueError, match="empty"):
        vaelab.rate_distortion(model, ImageData(torch.rand(0, 784), torch.zeros(0, dtype=torch.long)))


# ----------------------------------------------------------------------------- resuming the same run only

FIT = {"batch_size": 32, "device": "cpu", "seed": 1, "progress": False}


def _changed_run(change: str):
    """(model, train, test, fit keywords) of the reference run with one thing changed."""
    data, model, kwargs = synthetic_data(), small_model(), dict(FIT)
    test = synthetic_data(n=40, seed=5)
    if change == "fewer images":
        data = data.take(200)
    elif change == "other images":
        data = synthetic_data(seed=9)
    elif change == "static binarization":
        data = data.fixed_binarization(0)
    elif change == "binarization seed":
        kwargs["seed"] = 2
    elif change == "no test set":
        test = None
    elif change == "latent_dim":
        model = build_vae(latent_dim=4, hidden_dim=16, side=6)
    elif change == "gaussian_logvar":  # same parameter shapes, another model
        model = build_vae(latent_dim=3, hidden_dim=16, side=6, likelihood="gaussian", gaussian_logvar=-2.0)
    elif change == "lr_schedule":
        kwargs["lr_schedule"] = [(1, 1e-3), (2, 5e-4)]
    elif change == "adam_eps":
        kwargs["adam_eps"] = 1e-4
    elif change == "adam_betas":
        kwargs["adam_betas"] = (0.99, 0.999)
    elif change == "float64":
        model = model.double()
        data, test = (ImageData(d.images.double(), d.labels, d.binarization, d.image_shape) for d in (data, test))
    else:
        key, value = change.split("=")
        kwargs[key] = {"kl": value}.get(key, None) or (
            int(value) if key in ("batch_size", "n_samples") else float(value)
        )
    if change == "gaussian_logvar":
        reference = build_vae(latent_dim=3, hidden_dim=16, side=6, likelihood="gaussian")
        return reference, model, data, test, kwargs
    return None, model, data, test, kwargs


CHANGES = {
    "fewer images": "train_size=300 in the file but train_size=200",
    "other images": "train_pixels=sha256:",
    "static binarization": "binarization='dynamic'",
    "binarization seed": "seed=1 in the file but seed=2",
    "no test set": "test_size=40 in the file but",
    "latent_dim": "model.latent_dim=3 in the file but model.latent_dim=4",
    "gaussian_logvar": "model.gaussian_logvar=0.0 in the file but model.gaussian_logvar=-2.0",
    "float64": "dtype='float32' in the file but dtype='float64'",
    "lr=0.003": "lr=0.001",
    "batch_size=16": "batch_size=32",
    "beta=2": "beta=1.0",
    "kl_warmup_epochs=1": "kl_warmup_epochs=0.0",
    "free_bits=0.5": "free_bits=0.0",
    "n_samples=2": "n_samples=1",
    "kl=mc": "kl='auto' in the file but kl='mc' now",
    "lr_schedule": "lr_schedule=[] in the file but lr_schedule=[[1, 0.001], [2, 0.0005]]",
    "adam_eps": "adam_eps=1e-08 in the file but adam_eps=0.0001",
    "adam_betas": "adam_betas=[0.9, 0.999] in the file but adam_betas=[0.99, 0.999]",
}


@pytest.mark.parametrize("change", CHANGES)
def test_resuming_another_run_is_an_error_that_names_the_difference(tmp_path, change):
    ckpt = tmp_path / "run.ckpt"
    reference, model, data, test, kwargs = _changed_run(change)
    first = reference if reference is not None else small_model()
    fit(first, synthetic_data(), synthetic_data(n=40, seed=5), epochs=1, checkpoint=ckpt, **FIT)
    before = ckpt.read_bytes()
    with pytest.raises(vaelab.train.runs.RunMismatchError, match=re.escape(CHANGES[change])) as info:
        fit(model, data, test, epochs=2, checkpoint=ckpt, **kwargs)
    assert "resume=False" in str(info.value)
    assert ckpt.read_bytes() == before  # the refused resume changed nothing
    # and resume=False starts the changed run over, as the message says
    assert len(fit(model, data, test, epochs=1, checkpoint=ckpt, resume=False, **kwargs)) == 1


def test_what_does_not_change_the_result_may_differ_on_resume(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    data, test = synthetic_data(), synthetic_data(n=40, seed=5)
    straight = fit(small_model(), data, test, epochs=3, **FIT)
    fit(small_model(), data, test, epochs=1, checkpoint=ckpt, **FIT)
    resumed = fit(
        small_model(),
        data,
        test,
        epochs=3,
        checkpoint=ckpt,
        **{**FIT, "device": "auto" if not torch.cuda.is_available() else "cpu", "progress": True},
        eval_batch_size=40,
    )
    assert resumed.train_elbo == straight.train_elbo and resumed.test_elbo == straight.test_elbo


def test_nothing_left_to_train_is_said_and_fewer_epochs_is_an_error(tmp_path, capsys):
    ckpt = tmp_path / "run.ckpt"
    data = synthetic_data()
    first = fit(small_model(), data, epochs=2, checkpoint=ckpt, **FIT)
    capsys.readouterr()
    again = fit(small_model(), data, epochs=2, checkpoint=ckpt, **FIT)
    assert again.train_elbo == first.train_elbo
    assert "nothing left to train" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"already holds 2 epochs, more than epochs=1; pass epochs=2 or more"):
        fit(small_model(), data, epochs=1, checkpoint=ckpt, **FIT)


def test_a_damaged_checkpoint_falls_back_loudly_to_the_previous_one(tmp_path, capsys):
    data = synthetic_data()
    straight = small_model()
    h_straight = fit(straight, data, epochs=3, **FIT)
    ckpt = tmp_path / "run.ckpt"
    fit(small_model(), data, epochs=2, checkpoint=ckpt, **FIT)
    assert load_checkpoint(vaelab.train.checkpoint.previous_checkpoint(ckpt))["epoch"] == 1  # the one before is kept
    damaged = ckpt.read_bytes()[: len(ckpt.read_bytes()) // 2]
    ckpt.write_bytes(damaged)
    capsys.readouterr()
    resumed = small_model(seed=5)
    h = fit(resumed, data, epochs=3, checkpoint=ckpt, **FIT)
    err = capsys.readouterr().err
    assert "resuming from the previous checkpoint" in err and "run.ckpt.damaged" in err
    assert (tmp_path / "run.ckpt.damaged").read_bytes() == damaged  # kept, not deleted
    assert h.train_elbo == h_straight.train_elbo  # epochs 2 and 3 retrained: nothing lost
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_damaged_checkpoint_without_a_previous_one_says_how_to_start_over(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    with pytest.raises(vaelab.train.runs.ResumeError, match=r"no earlier checkpoint beside it.*resume=False") as info:
        fit(small_model(), synthetic_data(), epochs=1, checkpoint=ckpt, **FIT)
    assert "--restart" in info.value.cli_message and "resume=False" not in info.value.cli_message


def test_nan_weights_in_a_checkpoint_are_refused(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    fit(small_model(), synthetic_data(), epochs=1, checkpoint=ckpt, **FIT)
    state = load_checkpoint(ckpt)
    state["model"][
        "encoder.hidden.weight" if "encoder.hidden.weight" in state["model"] else next(iter(state["model"]))
    ].view(-1)[3] = float("nan")
    del state["format"]
    vaelab.save_checkpoint(ckpt, state)  # a valid digest over a NaN weight
    with pytest.raises(ValueError, match="NaN or Inf weights"):
        load_model(ckpt)
    with pytest.raises(vaelab.train.runs.ResumeError, match="NaN or Inf weights"):
        fit(small_model(), synthetic_data(), epochs=2, checkpoint=ckpt, **FIT)


def test_load_model_keeps_a_float64_model_in_float64(tmp_path):
    torch.manual_seed(0)
    model = build_vae(latent_dim=2, hidden_dim=8, side=6).double()
    vaelab.save_checkpoint(tmp_path / "m.ckpt", {"config": model.config.to_dict(), "model": model.state_dict()})
    loaded, _ = load_model(tmp_path / "m.ckpt")
    assert next(loaded.parameters()).dtype == torch.float64
    for name, value in model.state_dict().items():  # every weight bit for bit, not rounded through float32
        assert loaded.state_dict()[name].dtype == value.dtype and torch.equal(loaded.state_dict()[name], value)


@pytest.mark.parametrize(
    "name,value",
    [
        ("kl_warmup_epochs", math.inf),
        ("kl_warmup_epochs", math.nan),
        ("free_bits", math.nan),
        ("beta", math.nan),
        ("beta", -1.0),
        ("lr", math.inf),
        ("lr", 0.0),
        ("seed", 2**64),
        ("seed", -1),
        ("n_samples", 0),
        ("kl", "exact"),
        ("eval_batch_size", 0),
    ],
)
def test_bad_fit_settings_are_rejected_before_training(name, value):
    with pytest.raises((ValueError, TypeError), match=name):
        fit(small_model(), synthetic_data(), epochs=1, **{**FIT, name: value})


def test_a_diverging_run_is_an_error_not_a_result(tmp_path):
    with pytest.raises(vaelab.train.runs.TrainingDivergedError, match=r"lower learning rate than lr=1000000.0"):
        fit(
            small_model(),
            synthetic_data(),
            synthetic_data(n=40),
            epochs=3,
            checkpoint=tmp_path / "r.ckpt",
            **{**FIT, "lr": 1e6},
        )


def test_an_exploding_but_finite_elbo_is_divergence(monkeypatch):
    """A train ELBO far below the untrained model's (here forced: the KL term multiplied by 1e9)
    stops the run, although every number is finite."""
    real = vaelab.train.training.elbo

    def exploding(*args, **kwargs):
        terms = real(*args, **kwargs)
        return vaelab.ELBOTerms(
            terms.reconstruction, terms.kl * 1e9, terms.reconstruction - terms.kl * 1e9, terms.kl_per_dim
        )

    monkeypatch.setattr(vaelab.train.training, "elbo", exploding)
    with pytest.raises(vaelab.train.runs.TrainingDivergedError, match="training diverged in epoch 1"):
        fit(small_model(), synthetic_data(), epochs=1, **{**FIT, "beta": 0.0})


def test_history_json_is_valid_json_without_a_test_set():
    history = fit(small_model(), synthetic_data(), epochs=1, **FIT)
    text = json.dumps(history.to_json(), allow_nan=False)  # raises on NaN
    assert json.loads(text)["test_elbo"] == [None]
    assert math.isnan(vaelab.History.from_dict(json.loads(text)).test_elbo[0])


def test_two_processes_cannot_train_into_one_checkpoint(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time\n"
                f"fd = os.open({str(tmp_path / '.run.ckpt.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
                "print('locked', flush=True); time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(vaelab.train.runs.RunLockedError, match=rf"pid {holder.pid}\) is training into"):
            fit(small_model(), synthetic_data(), epochs=1, checkpoint=ckpt, **FIT)
        assert not ckpt.exists()
    finally:
        holder.kill()
        holder.wait()
    fit(small_model(), synthetic_data(), epochs=1, checkpoint=ckpt, **FIT)  # free again once it ended
    assert load_checkpoint(ckpt)["epoch"] == 1


def test_evaluate_elbo_validates_its_data():
    model = small_model()
    grey = synthetic_data()
    with pytest.raises(ValueError, match="divide by 255"):
        vaelab.evaluate_elbo(model, ImageData(grey.images * 255, grey.labels, image_shape=(6, 6)))
    gaussian = build_vae(latent_dim=3, hidden_dim=16, side=6, likelihood="gaussian")
    images = grey.images.clone()
    images[3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        vaelab.evaluate_elbo(gaussian, ImageData(images, grey.labels, image_shape=(6, 6)))


def test_adam_is_fused_on_cpu_where_torch_has_it():
    optimizer = vaelab.train.training.make_optimizer(small_model(), 1e-3)
    assert optimizer.defaults["fused"] is True and optimizer.defaults["lr"] == 1e-3


def test_the_documented_order_of_random_draws_reproduces_fit_bit_for_bit():
    """fit's docstring promises which generator draws what, in which order: a loop written from
    that description alone (Adam from torch, no vaelab trainer code) gives the same weights."""
    data, test, seed, batch = synthetic_data(n=100), synthetic_data(n=40, seed=5), 3, 32
    by_fit = small_model()
    history = fit(by_fit, data, test, epochs=2, batch_size=batch, device="cpu", seed=seed, progress=False)

    model = small_model()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    test_fixed = test.fixed_binarization(seed)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(2):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), batch):
            x = torch.bernoulli(data.images[order[start : start + batch]], generator=generator)
            terms = vaelab.elbo(model, x)
            adam.zero_grad()
            (-(terms.reconstruction - terms.kl).mean()).backward()
            adam.step()
        with torch.no_grad():
            model.eval()
            test_elbo = vaelab.elbo(model, test_fixed.images).elbo.mean().item()
            model.train()
    for a, b in zip(by_fit.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert test_elbo == pytest.approx(history.test_elbo[-1], rel=1e-6)


def test_a_learning_rate_schedule_and_adam_settings_match_torch_adam_switched_by_hand(tmp_path):
    """lr_schedule, adam_betas and adam_eps against a loop written from the docstring: torch's Adam
    with those betas and eps, its lr set by hand at the start of each epoch (stages of 1 and 2
    epochs, then the last lr). Interrupted and resumed after epoch 2, fit gives the same weights."""
    data, seed, batch = synthetic_data(n=64), 3, 32
    stages = [(1, 3e-3), (2, 1e-3)]
    options = dict(lr_schedule=stages, adam_betas=(0.5, 0.99), adam_eps=1e-4, batch_size=batch, seed=seed)
    by_fit = small_model()
    fit(by_fit, data, epochs=4, device="cpu", progress=False, **options)
    resumed, ckpt = small_model(), tmp_path / "run.ckpt"
    fit(resumed, data, epochs=2, device="cpu", progress=False, checkpoint=ckpt, **options)
    fit(resumed, data, epochs=4, device="cpu", progress=False, checkpoint=ckpt, **options)

    model = small_model()
    adam = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.5, 0.99), eps=1e-4, fused=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    for lr in (3e-3, 1e-3, 1e-3, 1e-3):  # epoch 1: stage 1; epochs 2-3: stage 2; epoch 4: its lr holds
        for group in adam.param_groups:
            group["lr"] = lr
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), batch):
            x = torch.bernoulli(data.images[order[start : start + batch]], generator=generator)
            terms = vaelab.elbo(model, x)
            adam.zero_grad()
            (-(terms.reconstruction - terms.kl).mean()).backward()
            adam.step()
    for a, b, c in zip(by_fit.state_dict().values(), model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b) and torch.equal(a, c)
    # a constant lr_schedule is the constant lr, and a schedule differs from it
    constant, changed = small_model(), small_model()
    fit(constant, data, epochs=2, lr=3e-3, batch_size=batch, seed=seed, progress=False)
    fit(changed, data, epochs=2, lr_schedule=[(2, 3e-3)], batch_size=batch, seed=seed, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(constant.state_dict().values(), changed.state_dict().values()))
    assert not torch.equal(by_fit.state_dict()["decoder.out.bias"], constant.state_dict()["decoder.out.bias"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lr_schedule": [(0, 1e-3)]}, "epochs >= 1 and lr > 0"),
        ({"lr_schedule": [(1, -1e-3)]}, "epochs >= 1 and lr > 0"),
        ({"lr_schedule": [(1.5, 1e-3)]}, "epochs >= 1 and lr > 0"),
        ({"lr_schedule": [(1, math.nan)]}, "epochs >= 1 and lr > 0"),
        ({"lr_schedule": [1e-3]}, "epochs >= 1 and lr > 0"),
        ({"lr_schedule": "1e-3"}, "list of \\(epochs, lr\\) pairs"),
        ({"lr_schedule": [(1, 1e-3)], "lr": 1e-2}, "give the schedule alone"),
        ({"lr_schedule": [(1, 1e-2)], "lr": 1e-3}, "give the schedule alone"),  # the default's value, given
        ({"kl_warmup_epochs": 2, "objective": vaelab.IWAEObjective(2)}, "kl_warmup_epochs=2 weighs a KL term"),
        ({"kl": "exact"}, "kl must be one of 'auto', 'analytic', 'mc'; got 'exact'"),
        ({"objective": "iwae"}, "objective must be 'elbo' or an objective object"),
        ({"adam_betas": (0.9, 1.0)}, "adam_betas\\[1\\] must be a finite number >= 0 and < 1, got 1.0"),
        ({"adam_betas": 0.9}, "adam_betas must be two numbers"),
        ({"adam_eps": 0.0}, "adam_eps must be a finite number > 0"),
    ],
)
def test_bad_schedules_and_adam_settings_are_one_line_errors(options, message):
    with pytest.raises((ValueError, TypeError), match=message) as info:
        fit(small_model(), synthetic_data(), epochs=1, progress=False, **options)
    assert "\n" not in str(info.value)


def test_a_checkpoint_that_is_not_of_a_training_run_is_not_resumed(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    model = small_model()
    vaelab.save_checkpoint(ckpt, {"config": model.config.to_dict(), "model": model.state_dict()})
    with pytest.raises(
        vaelab.train.runs.ResumeError, match=r"not of a training run by fit \(it lacks optimizer, epoch"
    ):
        fit(small_model(), synthetic_data(), epochs=1, checkpoint=ckpt, **FIT)


def test_numpy_numbers_are_accepted_and_stored_as_plain_numbers(tmp_path):
    import numpy as np

    ckpt = tmp_path / "run.ckpt"
    fit(small_model(), synthetic_data(), epochs=1, checkpoint=ckpt, **{**FIT, "seed": np.int64(1)}, lr=np.float32(1e-3))
    settings = load_checkpoint(ckpt)["run"]  # loaded with weights_only=True: plain numbers only
    assert type(settings["seed"]) is int and type(settings["lr"]) is float


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_a_checkpoint_path_that_cannot_be_a_file_is_refused_before_training(tmp_path, where):
    (tmp_path / "file").write_text("mine")
    path = tmp_path if where == "a folder" else tmp_path / "file" / "run.ckpt"
    with pytest.raises(ValueError, match="is a folder" if where == "a folder" else "is a file, not a folder"):
        fit(small_model(), synthetic_data(), epochs=1, checkpoint=path, **FIT)
    assert (tmp_path / "file").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_load_model_takes_auto_and_refuses_a_config_it_cannot_build(tmp_path):
    model = small_model()
    vaelab.save_checkpoint(
        tmp_path / "m.ckpt", {"config": {**model.config.to_dict(), "flows": 3}, "model": model.state_dict()}
    )
    with pytest.raises(ValueError, match=r"records a model config this vaelab cannot build \(.*flows"):
        load_model(tmp_path / "m.ckpt", device="auto")
    vaelab.save_checkpoint(tmp_path / "m.ckpt", {"config": model.config.to_dict(), "model": model.state_dict()})
    loaded, _ = load_model(tmp_path / "m.ckpt", device="auto")
    assert next(loaded.parameters()).device == vaelab.resolve_device("auto")
