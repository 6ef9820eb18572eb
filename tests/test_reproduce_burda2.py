"""benchmarks/reproduce_burda2.py: the two-stochastic-layer VAE's schedule and settings, and its quick mode
end to end (stopped and continued, resumed, calibrated)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "reproduce_burda2.py"
ENV = {**os.environ, "VAELAB_QUIET": "1"}


def _script():
    spec = importlib.util.spec_from_file_location("reproduce_burda2", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*flags, cwd=None):
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--quiet", "--threads", "1", *map(str, flags)],
        check=True,
        env=ENV,
        cwd=cwd,
        timeout=300,
        capture_output=True,
        text=True,
    )


def test_the_model_is_build_vae_layers_2_with_the_codes_output_bias():
    import vaelab

    mean = torch.rand(784)
    model = _script().two_layer_vae(vaelab, mean)
    assert model.config.layers == 2 and model.latent_dim == 150
    p = mean.clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(model.decoder.out.bias, torch.log(p / (1 - p)))
    settings = _script().fit_options(8)
    assert settings["adam_eps"] == 1e-4 and settings["batch_size"] == 128 and settings["kl"] == "mc"
    assert [n for n, _ in settings["lr_schedule"]] == [1, 3, 9, 27, 81, 243, 729, 2187]


def test_quick_mode_runs_stops_continues_and_resumes(tmp_path):
    out, runs = tmp_path / "burda2.json", tmp_path / "runs"
    _run("--results", out, "--checkpoints", runs, "--last-stage", "0", cwd=tmp_path)
    early = json.loads(out.read_text())["final"]
    assert early["stage"] == 0 and not early["schedule_complete"]
    _run("--results", out, "--checkpoints", runs, cwd=tmp_path)
    record = json.loads(out.read_text())
    final = record["final"]
    assert final["stage"] == 1 and final["schedule_complete"] and record["earlier_whole_test_set"] == [early]
    assert final["n_images"] == 200 and final["k"] == 50 and math.isfinite(final["nll"])
    assert set(final["active_units"]) == {"z1", "z2"}
    assert 0 <= final["active_units"]["z1"] <= 100 and 0 <= final["active_units"]["z2"] <= 50
    assert len(final["activity"]["z1"]) == 100 and len(final["activity"]["z2"]) == 50
    assert [s["passes"] for s in record["stages"]] == [1, 4] and record["stages"][-1]["n_images"] == 100
    settings = record["settings"]
    assert settings["lr_schedule"] == [[1, 1e-3], [3, pytest.approx(1e-3 * 10 ** (-1 / 7))]]
    assert settings["adam"] == {"betas": [0.9, 0.999], "eps": 1e-4} and settings["batch_size"] == 128
    assert record["paper"]["vae_k1"] == {"nll": 85.33} and record["independent_tf2_reproduction"]["vae_k1"] == 84.83
    assert "78a6075" in record["choices"]["architecture"]
    _run("--results", out, "--checkpoints", runs, cwd=tmp_path)  # everything done: the numbers stay
    again = json.loads(out.read_text())
    assert again["stages"] == record["stages"] and again["final"] == record["final"]


def test_calibration_estimates_the_hours_of_the_run(tmp_path):
    out = tmp_path / "burda2.json"
    _run("--calibrate", "--results", out, cwd=tmp_path)
    calibration = json.loads(out.read_text())["calibration"]
    assert calibration["seconds_per_pass"] > 0 and calibration["seconds_per_image_of_L_k"] > 0
    expected = (
        calibration["seconds_per_pass"] * calibration["passes"]
        + calibration["seconds_per_image_of_L_k"] * calibration["images_evaluated"]
    ) / 3600
    assert calibration["estimated_hours"] == pytest.approx(expected, abs=0.01)
    assert calibration["passes"] == 4 and calibration["images_evaluated"] == 300
    assert calibration["cpu_seconds_per_pass"] > 0 and calibration["cpu_seconds_per_image_of_L_k"] > 0
    assert 0 <= calibration["estimated_hours_on_idle_cores"] <= 1
    assert 0 < calibration["seconds_per_pass_from_fastest_steps"] <= 10 * calibration["seconds_per_pass"]


def test_a_bad_flag_is_a_one_line_error_naming_it(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--last-stage", "8", "--results", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--last-stage must be from 0 to 7, got 8" in result.stderr
