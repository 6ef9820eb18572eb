"""User mistakes at vaelab's public boundary end in one clear sentence, never a torch traceback.

Each case is a typical first-VAE mistake. The test checks the exception type (ValueError or
TypeError, FileNotFoundError for missing files), that the message names the problem and the fix,
that it is one sentence, and that it was raised by vaelab's own code (the innermost frame is in
vaelab/), not deep inside torch. Device mismatches are simulated with 'meta' tensors, so they are
tested on a CPU-only machine too.
"""

# ruff: noqa: E501  (the table of bad inputs reads best one case a line)
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vaelab
from vaelab import (
    GaussianLikelihood,
    ImageData,
    MLPDecoder,
    MLPEncoder,
    StandardNormalPrior,
    VAEConfig,
    build_vae,
    elbo,
    fit,
    iwae_bound,
    load_mnist,
    log_importance_weights,
    log_likelihood_estimate,
    training_loss,
)

VAELAB_DIR = Path(vaelab.__file__).resolve().parent
D, LATENT = 16, 3


def model(likelihood="bernoulli"):
    torch.manual_seed(0)
    return build_vae(latent_dim=LATENT, hidden_dim=8, side=4, likelihood=likelihood)


def x(n=5):
    return torch.rand(n, D, generator=torch.Generator().manual_seed(0))


def data(images=None):
    images = x(20) if images is None else images
    return ImageData(images, torch.zeros(len(images), dtype=torch.long), image_shape=(4, 4))


def fit_quick(m, train, **kwargs):
    return fit(m, train, **{"epochs": 1, "batch_size": 8, "device": "cpu", "progress": False, **kwargs})


META = "meta"
# (id, call, exception, pattern the message must contain)
BAD_INPUTS = [
    # shapes
    (
        "elbo-wrong-width",
        lambda: elbo(model(), torch.rand(5, D + 1)),
        ValueError,
        r"17 features .* input_dim=16; flatten",
    ),
    (
        "elbo-3d-images",
        lambda: elbo(model(), torch.rand(5, 4, 4)),
        ValueError,
        r"2 dimensions, got shape \(5, 4, 4\); flatten",
    ),
    ("elbo-1d-image", lambda: elbo(model(), torch.rand(D)), ValueError, r"2 dimensions, got shape \(16,\)"),
    ("elbo-4d-images", lambda: elbo(model(), torch.rand(5, 1, 4, 4)), ValueError, r"2 dimensions.*flatten"),
    (
        "interpolate-sizes",
        lambda: model().interpolate(torch.rand(D), torch.rand(D - 1)),
        ValueError,
        r"x_a has shape \(16,\) but x_b has shape \(15,\)",
    ),
    (
        "fit-wrong-width",
        lambda: fit_quick(model(), data(torch.rand(20, D + 2))),
        ValueError,
        r"18 pixels but the model expects 16; flatten",
    ),
    ("imagedata-3d", lambda: data(torch.rand(20, 4, 4)), ValueError, r"images must be \(N, D\)"),
    ("imagedata-label-count", lambda: ImageData(x(20), torch.zeros(19)), ValueError, r"N == len\(labels\)"),
    # dtypes and types
    (
        "elbo-uint8",
        lambda: elbo(model(), (x() * 255).to(torch.uint8)),
        TypeError,
        r"floating-point.*divide uint8 pixels by 255",
    ),
    ("elbo-int64", lambda: elbo(model(), torch.ones(5, D, dtype=torch.long)), TypeError, r"x\.float\(\)"),
    (
        "elbo-float64",
        lambda: elbo(model(), x().double()),
        TypeError,
        r"dtype torch\.float64 but the model computes in torch\.float32",
    ),
    (
        "elbo-numpy",
        lambda: elbo(model(), x().numpy()),
        TypeError,
        r"torch\.Tensor, got ndarray; convert it with torch\.as_tensor",
    ),
    ("elbo-list", lambda: elbo(model(), x().tolist()), TypeError, r"torch\.Tensor, got list"),
    ("elbo-not-a-model", lambda: elbo(model().encoder, x()), TypeError, r"model must be a vaelab\.VAE.*build_vae"),
    (
        "imagedata-uint8",
        lambda: data((x(20) * 255).to(torch.uint8)),
        TypeError,
        r"images must be a floating-point.*divide uint8 pixels by 255",
    ),
    ("fit-tensor-not-data", lambda: fit_quick(model(), x(20)), TypeError, r"train must be a vaelab\.ImageData"),
    ("fit-numpy", lambda: fit_quick(model(), np.zeros((20, D))), TypeError, r"ImageData"),
    # devices (meta tensors stand in for a GPU)
    ("elbo-device", lambda: elbo(model(), x().to(META)), ValueError, r"x is on meta but the model is on cpu; move"),
    ("iwae-device", lambda: iwae_bound(model(), x().to(META), 3), ValueError, r"x is on meta but the model is on cpu"),
    # values outside the likelihood's support
    (
        "elbo-0-255",
        lambda: elbo(model(), x() * 255),
        ValueError,
        r"must lie in \[0, 1\] for a Bernoulli likelihood.*did you forget to divide by 255\?",
    ),
    ("elbo-negative", lambda: elbo(model(), x() - 0.5), ValueError, r"must lie in \[0, 1\]"),
    ("elbo-nan", lambda: elbo(model(), x() * float("nan")), ValueError, r"NaN or Inf"),
    ("elbo-inf", lambda: elbo(model(), x() + float("inf")), ValueError, r"NaN or Inf"),
    ("iwae-0-255", lambda: iwae_bound(model(), x() * 255, 5), ValueError, r"divide by 255"),
    ("log-px-0-255", lambda: log_likelihood_estimate(model(), x() * 255, k=5), ValueError, r"divide by 255"),
    (
        "fit-0-255",
        lambda: fit_quick(model(), data(x(20) * 255)),
        ValueError,
        r"train images must lie in \[0, 1\].*divide by 255",
    ),
    (
        "fit-test-0-255",
        lambda: fit_quick(model(), data(), test=data(x(20) * 255)),
        ValueError,
        r"test images .*divide by 255",
    ),
    (
        "fit-gaussian-nan",
        lambda: fit_quick(model("gaussian"), data(x(20) * float("nan"))),
        ValueError,
        r"train images .*NaN or Inf",
    ),
    # sizes < 1: latent size, k, samples, batch size, epochs, limit
    (
        "latent-0",
        lambda: build_vae(latent_dim=0),
        ValueError,
        r"latent_dim must be an integer >= 1, got 0; use latent_dim=1",
    ),
    ("latent-negative", lambda: MLPEncoder(D, 8, -2), ValueError, r"latent_dim must be an integer >= 1, got -2"),
    ("latent-float", lambda: VAEConfig(latent_dim=2.0), TypeError, r"latent_dim must be an integer >= 1, got 2\.0"),
    ("decoder-latent-0", lambda: MLPDecoder(0), ValueError, r"latent_dim must be an integer >= 1"),
    ("prior-latent-0", lambda: StandardNormalPrior(0), ValueError, r"latent_dim"),
    ("hidden-0", lambda: build_vae(hidden_dim=0), ValueError, r"hidden_dim"),
    ("side-0", lambda: VAEConfig(side=0), ValueError, r"side must be an integer >= 1"),
    (
        "build-unknown-setting",
        lambda: build_vae(input_dim=12),
        TypeError,
        r"unknown VAE setting 'input_dim'; the settings are latent_dim, hidden_dim, .*side.*prior",
    ),
    ("config-prior", lambda: VAEConfig(prior="student_t"), ValueError, r"prior must be one of 'standard_normal', "),
    ("conv-side-30", lambda: build_vae(architecture="conv", side=30), ValueError, r"divisible by 4"),
    ("iwae-k-0", lambda: iwae_bound(model(), x(), 0), ValueError, r"k must be an integer >= 1, got 0; use k=1"),
    ("iwae-k-negative", lambda: iwae_bound(model(), x(), -3), ValueError, r"k must be an integer >= 1"),
    ("iwae-k-float", lambda: iwae_bound(model(), x(), 2.5), TypeError, r"k must be an integer"),
    ("log-weights-k-0", lambda: log_importance_weights(model(), x(), 0), ValueError, r"k must be"),
    ("log-px-k-0", lambda: log_likelihood_estimate(model(), x(), k=0), ValueError, r"k must be"),
    ("log-px-batch-0", lambda: log_likelihood_estimate(model(), x(), k=3, batch_size=0), ValueError, r"batch_size"),
    ("iwae-chunk-0", lambda: iwae_bound(model(), x(), 4, chunk_size=0), ValueError, r"chunk_size"),
    ("elbo-samples-0", lambda: elbo(model(), x(), n_samples=0), ValueError, r"n_samples must be an integer >= 1"),
    ("elbo-empty-batch", lambda: elbo(model(), torch.rand(0, D)), ValueError, r"empty batch \(batch size 0\)"),
    ("iwae-empty-batch", lambda: iwae_bound(model(), torch.rand(0, D), 3), ValueError, r"batch size 0"),
    ("log-px-empty", lambda: log_likelihood_estimate(model(), torch.rand(0, D), k=3), ValueError, r"batch size 0"),
    ("prior-sample-0", lambda: StandardNormalPrior(2).sample(0), ValueError, r"n must be an integer >= 1, got 0"),
    ("model-sample-0", lambda: model().sample(0), ValueError, r"n must be an integer >= 1"),
    ("interpolate-steps-0", lambda: model().interpolate(torch.rand(D), torch.rand(D), steps=0), ValueError, r"steps"),
    (
        "fit-batch-0",
        lambda: fit_quick(model(), data(), batch_size=0),
        ValueError,
        r"batch_size must be an integer >= 1, got 0",
    ),
    ("fit-epochs-0", lambda: fit_quick(model(), data(), epochs=0), ValueError, r"epochs must be an integer >= 1"),
    ("fit-empty-data", lambda: fit_quick(model(), data(torch.rand(0, D))), ValueError, r"train data is empty"),
    ("batches-0", lambda: list(data().batches(0)), ValueError, r"batch_size must be an integer >= 1"),
    ("take-0", lambda: data().take(0), ValueError, r"n must be an integer >= 1"),
    ("load-mnist-limit-0", lambda: load_mnist("test", limit=0), ValueError, r"limit must be an integer >= 1, got 0"),
    ("load-mnist-limit-negative", lambda: load_mnist("test", limit=-5), ValueError, r"limit must be an integer >= 1"),
    # other settings
    ("fit-lr-0", lambda: fit_quick(model(), data(), lr=0.0), ValueError, r"lr must be (a finite number )?> 0"),
    (
        "fit-lr-nan",
        lambda: fit_quick(model(), data(), lr=float("nan")),
        ValueError,
        r"lr must be (a finite number )?> 0",
    ),
    ("fit-warmup-negative", lambda: fit_quick(model(), data(), kl_warmup_epochs=-1), ValueError, r"kl_warmup_epochs"),
    ("fit-device", lambda: fit_quick(model(), data(), device="gpu"), ValueError, r"unknown device 'gpu'"),
    ("elbo-kl-name", lambda: elbo(model(), x(), kl="exact"), ValueError, r"kl must be one of"),
    (
        "loss-beta-negative",
        lambda: training_loss(elbo(model(), x()), beta=-1.0),
        ValueError,
        r"beta must be a finite number >= 0, got -1.0",
    ),
    ("loss-free-bits-negative", lambda: training_loss(elbo(model(), x()), free_bits=-0.5), ValueError, r"free_bits"),
    (
        "loss-free-bits-nan",
        lambda: training_loss(elbo(model(), x()), free_bits=float("nan")),
        ValueError,
        r"free_bits must be a finite number >= 0 nats, got nan",
    ),
    (
        "loss-free-bits-inf",
        lambda: training_loss(elbo(model(), x()), free_bits=float("inf")),
        ValueError,
        r"free_bits must be a finite number >= 0 nats, got inf",
    ),
    (
        "loss-beta-nan",
        lambda: training_loss(elbo(model(), x()), beta=float("nan")),
        ValueError,
        r"beta must be a finite number >= 0, got nan",
    ),
    (
        "loss-beta-string",
        lambda: training_loss(elbo(model(), x()), beta="1"),
        TypeError,
        r"beta must be a finite number",
    ),
    ("gaussian-logvar-range", lambda: GaussianLikelihood(logvar=12.0), ValueError, r"logvar must lie in \[-9, 10\]"),
    (
        "config-gaussian-logvar-range",
        lambda: VAEConfig(gaussian_logvar=-20.0),
        ValueError,
        r"gaussian_logvar must be a number in \[-9, 10\]",
    ),
    (
        "log-px-gaussian-nan",
        lambda: log_likelihood_estimate(model("gaussian"), x() * float("nan"), k=3),
        ValueError,
        r"NaN or Inf",
    ),
    ("iwae-gaussian-inf", lambda: iwae_bound(model("gaussian"), x() + float("inf"), 3), ValueError, r"NaN or Inf"),
    ("elbo-0-255", lambda: vaelab.elbo(model(), x() * 255), ValueError, r"divide by 255"),
    (
        "reconstruct-float64",
        lambda: model().reconstruct(x().double()),
        TypeError,
        r"dtype torch\.float64 but the model computes in torch\.float32",
    ),
    ("gaussian-logvar-nan", lambda: GaussianLikelihood(logvar=float("nan")), ValueError, r"logvar must be a finite"),
    ("config-architecture", lambda: VAEConfig(architecture="transformer"), ValueError, r"architecture must be one of"),
    ("config-likelihood", lambda: VAEConfig(likelihood="poisson"), ValueError, r"likelihood must be one of"),
    (
        "imagedata-binarization",
        lambda: ImageData(x(20), torch.zeros(20), binarization="dyn"),
        ValueError,
        r"binarization must be one of",
    ),
    ("load-mnist-split", lambda: load_mnist("validation"), ValueError, r"split must be 'train' or 'test'"),
    (
        "load-mnist-binarization",
        lambda: load_mnist("test", binarization="otsu"),
        ValueError,
        r"binarization must be one of",
    ),
    (
        "load-mnist-missing",
        lambda: load_mnist("test", root="/nonexistent-vaelab-data"),
        FileNotFoundError,
        r"MNIST was not found in .*set VAELAB_DATA",
    ),
    (
        "load-checkpoint-missing",
        lambda: vaelab.load_checkpoint("/nonexistent/run.ckpt"),
        FileNotFoundError,
        r"does not exist",
    ),
]


@pytest.mark.parametrize("call,error,pattern", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_a_user_mistake_gets_one_clear_sentence_from_vaelab(call, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        call()
    assert type(info.value) is error  # not a subclass such as torch's own errors
    # raised by vaelab itself, before torch fails somewhere deep
    innermost = Path(info.traceback[-1].path).resolve()
    assert VAELAB_DIR in innermost.parents, f"raised in {innermost}, not in vaelab"
    message = str(info.value)
    assert "\n" not in message and message.endswith((".", ").", "?")), message
    assert len(message) < 400, message


def test_the_255_hint_appears_only_when_it_is_the_likely_cause():
    with pytest.raises(ValueError) as info:
        elbo(model(), x() + 0.2)  # slightly above 1: a bug, but not 0..255 pixels
    assert "255" not in str(info.value)


@pytest.mark.parametrize("images", [torch.rand(7, D), torch.rand(1, D)])
def test_valid_inputs_still_pass(images):
    """The checks reject mistakes only: every public function accepts well-formed input."""
    m = model()
    terms = elbo(m, images)
    assert terms.elbo.shape == (len(images),) and torch.isfinite(terms.elbo).all()
    assert iwae_bound(m, images, 3).shape == (len(images),)
    assert elbo(m, images.bernoulli()).elbo.shape == (len(images),)  # binary pixels
    assert m.decode(torch.zeros(2, 4, LATENT)).shape == (2, 4, D)  # a sample dimension in front
    assert elbo(model("gaussian"), images * 255).elbo.isfinite().all()  # a Gaussian accepts any real x
    history = fit_quick(m, data(images))
    assert len(history) == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("entry", ["elbo", "iwae_bound", "log_importance_weights", "log_likelihood_estimate"])
def test_nan_and_inf_data_are_rejected_for_every_likelihood(entry, likelihood, bad):
    """A NaN or Inf pixel never turns into a NaN ELBO: every public entry point names it."""
    images = x()
    images[3, 7] = bad
    calls = {
        "elbo": lambda: elbo(model(likelihood), images),
        "iwae_bound": lambda: iwae_bound(model(likelihood), images, 3),
        "log_importance_weights": lambda: log_importance_weights(model(likelihood), images, 3),
        "log_likelihood_estimate": lambda: log_likelihood_estimate(model(likelihood), images, k=3),
    }
    with pytest.raises(
        ValueError,
        match=r"x must be finite, but 1 of 80 values is NaN or Inf \(the first at row 3, "
        r"column 7: (nan|-?inf)\)",
    ) as info:
        calls[entry]()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_check_dataset_rejects_nan_for_every_likelihood(likelihood):
    from vaelab.data import check_dataset

    images = x(20)
    images[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"train images must be finite, but 1 of 320 values is NaN or Inf"):
        check_dataset("train", data(images), model(likelihood))
    check_dataset("train", data(), model(likelihood))  # valid data passes


@pytest.mark.parametrize(
    "value,shown,hint",
    [
        (1.0000001, "a largest value of 1.0000001 ", "clamp"),
        (-1e-7, "a smallest value of -1e-07 ", "clamp"),
        (254.0, "a largest value of 254.0 ", "divide by 255"),
        (-0.5, "a smallest value of -0.5 ", "rescale"),
    ],
)
def test_out_of_range_pixel_is_reported_with_its_actual_value(value, shown, hint):
    """The message names the offending value itself (the issue: 1.0000001 was shown as 'values in [1e-07, 1]')."""
    images = x()
    images[2, 5] = value
    with pytest.raises(ValueError) as info:
        elbo(model(), images)
    message = str(info.value)
    assert shown in message and hint in message and "1 of 80 values is outside" in message, message
    assert float(torch.tensor(float(shown.split()[-1]), dtype=torch.float32)) == float(images[2, 5])
