"""The likelihoods of grey pixels (chapter 14) as VAEConfig, checkpoints and the command line know
them: the decoder outputs params_per_pixel * D numbers, load_model rebuilds the same model (the same
log-probabilities, the dequantized ones on the same noise), the command line trains and evaluates one
on Fashion-MNIST, and a grey likelihood with binarized data is a one-line usage error."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

import vaelab
from vaelab import cli
from vaelab.models.config import GREY_LIKELIHOODS, LIKELIHOODS

PER_PIXEL = {
    "bernoulli": 1,
    "gaussian": 1,
    "continuous_bernoulli": 1,
    "dequantized_gaussian": 1,
    "dequantized_continuous_bernoulli": 1,
    "discretized_logistic": 2,
    "logistic_mixture": 3 * 4,
}


def levels(batch: int, pixels: int, seed: int = 0) -> torch.Tensor:
    """Random 8-bit grey levels k/255, (batch, pixels)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, pixels), generator=g).float() / 255


def test_the_command_line_knows_every_likelihood_of_the_config():
    assert cli.LIKELIHOODS == LIKELIHOODS and cli.GREY_LIKELIHOODS == GREY_LIKELIHOODS


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_the_decoder_outputs_params_per_pixel_times_d(likelihood, architecture):
    model = vaelab.build_vae(
        likelihood=likelihood, architecture=architecture, latent_dim=3, hidden_dim=16, mixture_components=4
    )
    assert getattr(model.likelihood, "params_per_pixel", 1) == PER_PIXEL[likelihood]
    params = model.decoder(torch.zeros(5, 3))
    assert params.shape == (5, PER_PIXEL[likelihood] * 784)
    x = levels(5, 784)
    log_p = model.likelihood.log_prob(x, params)
    assert log_p.shape == (5,) and torch.isfinite(log_p).all()


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_checkpoint_round_trip_gives_identical_log_prob(tmp_path, likelihood):
    torch.manual_seed(0)
    model = vaelab.build_vae(likelihood=likelihood, latent_dim=3, hidden_dim=16, mixture_components=4)
    with torch.no_grad():  # weights away from their initial values, so a fresh build would differ
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = vaelab.save_checkpoint(
        tmp_path / "model.ckpt",
        {"model": model.state_dict(), "config": model.config.to_dict(), "epoch": 1},
    )
    loaded, state = vaelab.load_model(path)
    assert loaded.config == model.config and state["config"]["likelihood"] == likelihood
    assert type(loaded.likelihood) is type(model.likelihood)
    x = levels(4, 784, seed=1)
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.manual_seed(3)  # the dequantization noise of the dequantized likelihoods
        before = model.likelihood.log_prob(x, model.decoder(z))
        torch.manual_seed(3)
        after = loaded.likelihood.log_prob(x, loaded.decoder(z))
    assert torch.equal(before, after)


def test_a_logistic_mixture_checkpoint_keeps_its_number_of_components(tmp_path):
    model = vaelab.build_vae(likelihood="logistic_mixture", latent_dim=2, hidden_dim=8, mixture_components=2)
    path = vaelab.save_checkpoint(tmp_path / "m.ckpt", {"model": model.state_dict(), "config": model.config.to_dict()})
    loaded, _ = vaelab.load_model(path)
    assert loaded.likelihood.num_components == 2 and loaded.decoder.output_dim == 6 * 784


def test_bad_settings_are_one_sentence_errors():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        vaelab.VAEConfig(likelihood="logistic")
    with pytest.raises((TypeError, ValueError), match="mixture_components"):
        vaelab.VAEConfig(likelihood="logistic_mixture", mixture_components=0)


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VAELAB_QUIET": "1", **(env or {})},
    )


@pytest.mark.parametrize("binarization", ["dynamic", "static"])
def test_a_grey_likelihood_with_binarized_data_is_a_usage_error_before_loading_data(tmp_path, binarization):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(
        "train",
        "--likelihood",
        "discretized_logistic",
        "--binarization",
        binarization,
        "--out",
        str(tmp_path / "run"),
        env={"VAELAB_DATA": str(empty), "HOME": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert "grey pixels" in lines[0] and "--binarization none" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.fixture
def fashion_root(mnist_root):
    from vaelab.data import FASHION_MNIST_SHA256

    missing = [n for n in FASHION_MNIST_SHA256 if not (mnist_root / "FashionMNIST" / "raw" / n).is_file()]
    if missing:
        pytest.fail(f"{mnist_root}/FashionMNIST/raw lacks {', '.join(missing)}; put the four files there.")
    return mnist_root


@pytest.mark.slow
def test_train_and_evaluate_a_logistic_mixture_on_fashion_mnist(tmp_path, fashion_root):
    out = tmp_path / "run"
    small = ["--limit", "200", "--latent-dim", "2", "--hidden-dim", "16", "--batch-size", "50", "--device", "cpu"]
    result = run(
        "train", "--dataset", "fashion_mnist", "--likelihood", "logistic_mixture", "--mixture-components", "2",
        "--epochs", "1", *small, "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    state = vaelab.load_checkpoint(out / "model.ckpt")
    assert state["config"]["likelihood"] == "logistic_mixture" and state["run"]["binarization"] == "none"
    fashion_test = vaelab.load_fashion_mnist("test")
    from vaelab.train.runs import pixels_fingerprint

    assert state["run"]["test_pixels"] == pixels_fingerprint(fashion_test.images)  # trained against Fashion-MNIST

    result = run("evaluate", str(out / "model.ckpt"), "--k", "5", "--limit", "20", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = {line.split(":")[0].strip(): line for line in result.stdout.splitlines()}
    assert "of fashion_mnist" in lines["test images"]  # recognized from the checkpoint's test pixels
    log_px = float(next(v for k, v in lines.items() if k.startswith("log p(x)")).split(":")[1].split()[0])
    bits = float(lines["bits per dimension"].split(":")[1].split()[0])
    assert bits == pytest.approx(-log_px / (784 * math.log(2)), abs=2e-3)  # printed to 2 decimals: nats
    assert 0 < bits < 8  # a model of the 256 levels: below the 8 bits of a uniform guess

    result = run(
        "evaluate", str(out / "model.ckpt"), "--k", "2", "--limit", "5", "--dataset", "mnist", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    assert "of mnist" in result.stdout  # --dataset given: used as given
