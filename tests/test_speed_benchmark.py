"""benchmarks/speed.py: its quick mode end to end for item 6 (where a small step goes), and the step
bound it divides by."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def _common():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("_common", BENCHMARKS / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_step_bound_leaves_the_model_untouched_and_grows_with_the_batch():
    """The bound times random tensors of the model's shapes and an Adam step on a copy of it."""
    import vaelab

    C = _common()
    torch.manual_seed(0)
    model = vaelab.build_vae(latent_dim=3, hidden_dim=16, side=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = C.step_bound_seconds(model, 2, torch.device("cpu"))
    assert 0 < small < 0.1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_quick_mode_reports_the_step_against_its_bound_for_both_models(tmp_path, mnist_root):
    out = tmp_path / "speed.json"
    env = {**os.environ, "VAELAB_QUIET": "1"}
    command = [sys.executable, str(BENCHMARKS / "speed.py"), "--quick", "--parts", "steps", "--threads", "1"]
    subprocess.run(command + ["--out", str(out)], check=True, env=env, cwd=tmp_path, timeout=600, capture_output=True)
    record = json.loads(out.read_text())
    assert record["quick"] and record["settings"]["step_targets"] == {"20": 2.0, "128": 1.3}
    figures = {f["key"]: f for f in record["figures"]}
    for model in ("default", "burda"):
        for batch, target in ((20, 2.0), (128, 1.3)):
            for mode in ("eager", "compiled"):
                figure = figures[f"step_{model}_b{batch}_{mode}_vs_bound"]
                assert figure["target"] == target and figure["met"] == (figure["value"] <= target)
            steps = record["measurements"]["item6"]["steps"][f"{model}_b{batch}"]
            assert len(steps["bound"]) == len(steps["eager"]) == len(steps["compiled"]) == 3
            assert record["measurements"]["item6"]["compile_seconds"][f"{model}_b{batch}"] >= 0
