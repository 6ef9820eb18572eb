"""The command line: train writes checkpoint, history and figure; evaluate prints the bounds."""

import json
import subprocess
import sys

import pytest


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "vaelab", *args], capture_output=True, text=True,
                          timeout=300, **kwargs)


@pytest.mark.slow
def test_train_then_evaluate(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--epochs", "2", "--limit", "3000", "--latent-dim", "5", "--hidden-dim", "100",
                 "--device", "cpu", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "model.ckpt").is_file() and (out / "samples.png").stat().st_size > 1000
    history = json.loads((out / "history.json").read_text())
    assert len(history["test_elbo"]) == 2 and history["test_elbo"][1] > history["test_elbo"][0]
    assert "nats per image" in result.stdout

    result = run("evaluate", str(out / "model.ckpt"), "--k", "20", "--limit", "200", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = {line.split(":")[0].strip(): line for line in result.stdout.splitlines()}
    elbo = float(lines["test ELBO"].split()[2])
    log_px = float(next(v for k, v in lines.items() if k.startswith("log p(x)")).split(":")[1].split()[0])
    assert log_px >= elbo - 1.0  # L_20 is above the ELBO up to Monte Carlo noise


def test_evaluate_missing_checkpoint_is_a_clear_error(tmp_path):
    result = run("evaluate", str(tmp_path / "nope.ckpt"), "--k", "5")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_unknown_device_is_a_clear_error(tmp_path):
    result = run("train", "--device", "tpu", "--out", str(tmp_path))
    assert result.returncode == 2 and "unknown device" in result.stderr
