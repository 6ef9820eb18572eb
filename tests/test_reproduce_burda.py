"""benchmarks/reproduce_burda.py: the paper's model and schedule, and its quick mode end to end."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "reproduce_burda.py"


def _script():
    spec = importlib.util.spec_from_file_location("reproduce_burda", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_model_is_the_papers_one_layer_architecture():
    """Burda et al. (2015), section 5 and appendix C: x -> 200 tanh -> 200 tanh -> (mu, log sigma^2)
    of 50 units; 50 -> 200 tanh -> 200 tanh -> 784 Bernoulli logits; Glorot-uniform weights."""
    mean = torch.rand(784)
    model = _script().burda_vae(mean)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    shapes = [tuple(m.weight.shape) for m in linears]
    assert shapes == [(200, 784), (200, 200), (100, 200), (200, 50), (200, 200), (784, 200)]
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 4
    for layer in linears:
        bound = math.sqrt(6 / sum(layer.weight.shape))  # Glorot and Bengio (2010)
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
    expected_bias = torch.log(mean.clamp(1e-3, 1 - 1e-3) / (1 - mean.clamp(1e-3, 1 - 1e-3)))
    torch.testing.assert_close(linears[-1].bias, expected_bias)
    assert model.latent_dim == 50
    # p(x|z) is a Bernoulli with those logits: the ELBO's reconstruction term, by torch.distributions
    x = torch.bernoulli(mean.expand(3, 784))
    z = torch.randn(3, 50)
    logits = model.decoder(z)
    reference = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(model.likelihood.log_prob(x, logits), reference)


def test_the_schedule_is_3_to_the_i_passes_at_1e3_times_10_to_the_minus_i_over_7():
    stages = _script().schedule(8)
    assert [n for n, _ in stages] == [1, 3, 9, 27, 81, 243, 729, 2187]
    assert sum(n for n, _ in stages) == 3280
    for i, (_, lr) in enumerate(stages):
        assert lr == pytest.approx(0.001 * 10 ** (-i / 7), rel=1e-12)


def test_quick_mode_runs_end_to_end_and_resumes(tmp_path):
    """The quick mode (about a minute in CI) trains every run, evaluates, compares the batch sizes
    and writes the JSON; started again it finds everything done and keeps the numbers."""
    out, checkpoints = tmp_path / "burda.json", tmp_path / "runs"
    env = {**os.environ, "VAELAB_QUIET": "1"}
    command = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--quiet",
        "--threads",
        "1",
        "--results",
        str(out),
        "--checkpoints",
        str(checkpoints),
    ]
    # first the batch-128 run stopped after stage 0 (--last-stage): its whole-test-set result is stage 0's
    stopped = command + ["--runs", "vae_b128", "--last-stage", "0"]
    subprocess.run(stopped, check=True, env=env, cwd=tmp_path, timeout=600, capture_output=True)
    early = json.loads(out.read_text())["runs"]["vae_b128"]["final"]
    assert early["stage"] == 0 and not early["schedule_complete"]
    subprocess.run(command, check=True, env=env, cwd=tmp_path, timeout=600, capture_output=True)
    record = json.loads(out.read_text())
    # continued to the end: the final result is the last stage's, and stage 0's is kept beside it
    assert record["runs"]["vae_b128"]["final"]["stage"] == 1
    assert record["runs"]["vae_b128"]["final"]["schedule_complete"]
    assert record["runs"]["vae_b128"]["earlier_whole_test_set"] == [early]
    assert set(record["runs"]) == {"vae_b128", "vae_b20", "iwae5_b128", "default_b128"}
    b128 = record["runs"]["vae_b128"]
    assert b128["settings"]["lr_schedule"] == [[1, 1e-3], [3, pytest.approx(1e-3 * 10 ** (-1 / 7))]]
    assert b128["settings"]["adam"] == {"betas": [0.9, 0.999], "eps": 1e-4}
    assert b128["settings"]["kl"] == "mc"
    assert [s["passes"] for s in b128["stages"]] == [1, 4]
    final = b128["final"]
    assert final["n_images"] == 200 and math.isfinite(final["nll"]) and 0 <= final["active_units"] <= 50
    # the last stage's curve point is the first n_curve images of the final evaluation
    assert b128["stages"][-1]["n_images"] == 100
    comparison = record["batch_size_comparison"]
    b20 = record["runs"]["vae_b20"]["stages"][-1]
    diffs = torch.tensor(b20["nll_per_image"]) - torch.tensor(b128["stages"][-1]["nll_per_image"])
    assert comparison["b20_minus_b128"]["mean"] == pytest.approx(diffs.mean().item(), abs=2e-3)
    iwae = record["runs"]["iwae5_b128"]["stages"][-1]
    diffs = torch.tensor(iwae["nll_per_image"]) - torch.tensor(b128["stages"][-1]["nll_per_image"])
    by_objective = record["objective_comparison"]["iwae5_minus_vae"]
    assert by_objective["mean"] == pytest.approx(diffs.mean().item(), abs=2e-3)
    assert by_objective["standard_error"] == pytest.approx(diffs.std().item() / math.sqrt(100), abs=2e-3)
    assert record["paper"]["vae_k1"] == {"nll": 86.76, "active_units": 19}
    assert "text" in record["choices"]["optimizer"]

    subprocess.run(command, check=True, env=env, cwd=tmp_path, timeout=600, capture_output=True)
    again = json.loads(out.read_text())
    assert again["runs"] == record["runs"]


def test_calibration_times_a_pass_of_each_run(tmp_path):
    out = tmp_path / "burda.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--calibrate", "--threads", "1", "--results", str(out)]
        + ["--runs", "default_b128", "vae_b20"],
        check=True,
        env={**os.environ, "VAELAB_QUIET": "1"},
        timeout=600,
        capture_output=True,
    )
    calibration = json.loads(out.read_text())["calibration"]
    assert set(calibration) == {"default_b128", "vae_b20"}
    assert all(c["seconds_per_pass"] > 0 and c["threads"] == 1 for c in calibration.values())


def test_a_bad_flag_is_a_one_line_error_naming_it(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--iwae-stages", "9", "--results", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--iwae-stages must be from 1 to 8, got 9" in result.stderr
