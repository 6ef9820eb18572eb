"""fit under torchrun with DistributedDataParallel (vaelab.train.distributed), 2 CPU processes (gloo):
one step equals the one-process step on the same global batch with the same noise, rank 0 writes the
checkpoint, and a resumed run continues to the straight run's result."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaelab import load_checkpoint
from vaelab.core.objectives import elbo, training_loss
from vaelab.train.training import make_optimizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import distributed_worker as worker  # noqa: E402


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "VAELAB_QUIET": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(HERE / "distributed_worker.py"),
        str(out),
    ]
    # stdin closed: torchrun's workers would otherwise wait on pytest's
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, cwd=out, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 0 done" in result.stdout and "rank 1 done" in result.stdout
    return out


def test_one_step_of_two_processes_is_the_one_process_step_on_the_global_batch(two_process_run):
    """The reference, in this one process: the global batch fit draws (data generator seeded 1), the
    noise of each slice from torch's generator seeded 1 + rank, the mean loss over all 15 images,
    its gradient and one fused Adam step."""
    model = worker.model()
    batch = next(worker.data().batches(worker.N, generator=torch.Generator().manual_seed(1)))
    optimizer = make_optimizer(model, 1e-3)
    losses = []
    for rank, rows in enumerate(batch.tensor_split(2)):
        torch.manual_seed(1 + rank)
        losses.append(training_loss(elbo(model, rows)) * len(rows))
    (sum(losses) / worker.N).backward()
    optimizer.step()
    state = load_checkpoint(two_process_run / "one_step.ckpt")
    assert state["epoch"] == 1 and state["run"]["world_size"] == 2
    for name, value in model.state_dict().items():
        torch.testing.assert_close(state["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert len(state["rng"]["ranks"]) == 2  # each rank's noise generator, for resuming


def test_a_resumed_two_process_run_continues_to_the_straight_runs_result(two_process_run):
    resumed = load_checkpoint(two_process_run / "one.ckpt")
    straight = load_checkpoint(two_process_run / "straight.ckpt")
    assert resumed["epoch"] == straight["epoch"] == 2
    for name, value in straight["model"].items():
        assert torch.equal(resumed["model"][name], value), name
    for column in ("epoch", "train_elbo", "train_kl", "train_reconstruction"):
        assert resumed["history"][column] == straight["history"][column], column
    assert not list(two_process_run.glob("*.ckpt.damaged"))


def test_a_batch_smaller_than_the_number_of_processes_is_a_clear_error():
    from vaelab.train.distributed import Team

    with pytest.raises(ValueError, match="every process needs at least one row"):
        Team(torch.device("cpu"), rank=0, world_size=4).check_batches(10, 3)
    Team(torch.device("cpu"), rank=0, world_size=2).check_batches(15, 15)
