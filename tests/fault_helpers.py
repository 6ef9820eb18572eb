"""Helpers for the fault-injection tests: a small training job that can be SIGKILLed at a chosen
point, and comparisons of finished runs.

Run as a script, it is the *child* of the kill tests:

    python tests/fault_helpers.py CHECKPOINT EPOCHS [--kill-at EVENT N]

It trains the small VAE of ``small_model`` on ``synthetic_data`` with ``vaelab.fit(checkpoint=...,
resume=True)`` on one CPU thread and prints one line per event, flushed, for the parent to read:
``READY`` (before fit), ``step G`` (global training step G, 1-based), ``mid-write N`` (half of the
checkpoint of epoch N is in the temporary file), ``before-replace N`` (the temporary file is
complete and fsync'ed, os.replace not yet called), ``after-replace N`` (renamed, the folder not
yet fsync'ed), then ``DONE``. With ``--kill-at EVENT N`` the child stops at that event and sleeps,
so the parent can SIGKILL it exactly there.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve()

# The job: small enough that an epoch takes milliseconds, with dynamic binarization and a test
# set, so every RNG (shuffle, Bernoulli draws, reparameterization noise) must be restored.
N_TRAIN, N_TEST, SIDE, BATCH = 96, 32, 4, 16
STEPS_PER_EPOCH = -(-N_TRAIN // BATCH)
FIT_ARGS = {"batch_size": BATCH, "lr": 3e-3, "device": "cpu", "seed": 7, "progress": False}
EVENTS = ("step", "mid-write", "before-replace", "after-replace")


def synthetic_data(n: int = N_TRAIN, side: int = SIDE, seed: int = 0, binarization: str = "dynamic"):
    """Images in [0, 1] made of a few prototypes plus noise, (n, side * side)."""
    from vaelab import ImageData

    g = torch.Generator().manual_seed(seed)
    d = side * side
    prototypes = torch.rand(4, d, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = (prototypes[labels] + 0.1 * torch.rand(n, d, generator=g)).clamp(0, 1)
    return ImageData(images, labels, binarization=binarization, image_shape=(side, side))


def small_model(seed: int = 0, side: int = SIDE, latent_dim: int = 2):
    from vaelab import build_vae

    torch.manual_seed(seed)
    return build_vae(latent_dim=latent_dim, hidden_dim=8, side=side)


def run_fit(checkpoint: Path | str, epochs: int, model_seed: int = 0):
    """The job itself (also used in-process by the tests)."""
    from vaelab import fit

    train = synthetic_data()
    test = synthetic_data(N_TEST, seed=1, binarization="static")
    return fit(small_model(model_seed), train, test, epochs=epochs, checkpoint=checkpoint, **FIT_ARGS)


# ----------------------------------------------------------------------------- the child


def child_job(checkpoint: Path | str, epochs: int, kill_at: tuple[str, int] | None, send) -> None:
    """Train with event hooks; ``send(line)`` reports each event; at ``kill_at`` sleep (to be killed)."""
    from tqdm.auto import tqdm

    import vaelab.core.objectives
    import vaelab.train.checkpoint
    import vaelab.train.training

    torch.set_num_threads(1)
    # tqdm's default lock is a multiprocessing semaphore, which a SIGKILLed child would leak
    tqdm.set_lock(threading.RLock())
    checkpoint = Path(checkpoint)

    def emit(event: str, n: int) -> None:
        send(f"{event} {n}")
        if kill_at is not None and tuple(kill_at) == (event, n):
            time.sleep(120)  # the parent kills us here
            raise SystemExit("the parent did not kill the child")

    # the global step: resumed runs start after the epoch their checkpoint holds
    step = [
        vaelab.train.checkpoint.load_checkpoint(checkpoint)["epoch"] * STEPS_PER_EPOCH if checkpoint.exists() else 0
    ]
    saving = [0]
    real_loss, real_save, real_replace = vaelab.train.training.training_loss, torch.save, os.replace

    def loss_with_event(*args, **kwargs):
        step[0] += 1
        emit("step", step[0])
        return real_loss(*args, **kwargs)

    def save_in_two_halves(obj, f, *args, **kwargs):
        import io

        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        saving[0] = obj["epoch"]
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        emit("mid-write", saving[0])
        f.write(data[len(data) // 2 :])

    def replace_with_events(src, dst):
        if Path(dst) != checkpoint:  # keeping the previous checkpoint: no event of its own
            return real_replace(src, dst)
        emit("before-replace", saving[0])
        real_replace(src, dst)
        emit("after-replace", saving[0])

    vaelab.train.training.training_loss = loss_with_event
    torch.save = save_in_two_halves
    os.replace = replace_with_events
    send("READY 0")
    run_fit(checkpoint, epochs)
    send("DONE 0")


def _forked_child(conn, checkpoint: str, epochs: int, kill_at) -> None:
    child_job(checkpoint, epochs, kill_at, conn.send)


# ----------------------------------------------------------------------------- the parent

_context = None


def _forkserver():
    """A fork server that has imported torch, torch._dynamo (which Adam imports on first use,
    seconds on a busy machine) and vaelab once; each child is then a cheap fork of it. It never
    ran a parallel torch kernel, so forking it is safe."""
    global _context
    if _context is None:
        import multiprocessing

        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["torch", "torch._dynamo", "vaelab", "vaelab.train.training"])
    return _context


def run_child(
    checkpoint: Path,
    epochs: int,
    kill_at: tuple[str, int] | None = None,
    kill_after_s: float | None = None,
    fresh_interpreter: bool = False,
    timeout: float = 90.0,
) -> str:
    """Train in a child process; SIGKILL it at event ``kill_at`` or ``kill_after_s`` seconds after
    it is ready. Returns the last event it reported ("DONE 0" when it finished).

    fresh_interpreter=True runs ``python tests/fault_helpers.py`` (slow to start: imports torch);
    otherwise the child is forked from a fork server."""
    if fresh_interpreter:
        args = [sys.executable, str(HERE), str(checkpoint), str(epochs)]
        if kill_at is not None:
            args += ["--kill-at", kill_at[0], str(kill_at[1])]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "VAELAB_QUIET": "1"}
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        lines = (line.strip() for line in proc.stdout)
        kill, poll, wait, code = proc.kill, proc.poll, proc.wait, lambda: proc.returncode
    else:
        ctx = _forkserver()
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_forked_child, args=(sender, str(checkpoint), epochs, kill_at), daemon=True)
        proc.start()
        sender.close()

        def receive():
            while True:
                try:
                    yield receiver.recv()
                except EOFError:
                    return

        lines = receive()
        kill, poll, wait, code = proc.kill, (lambda: proc.exitcode), proc.join, lambda: proc.exitcode
    last = ""
    killed = threading.Event()
    timer = None

    def kill_now() -> None:
        killed.set()
        kill()

    deadline = time.monotonic() + timeout
    try:
        for line in lines:  # ends when the child exits (or is killed)
            last = line
            if kill_at is not None and line == f"{kill_at[0]} {kill_at[1]}":
                kill_now()
                break
            if kill_after_s is not None and line == "READY 0":
                # a timer, not the event stream, so the kill can land anywhere (inside torch.save,
                # fsync, an optimizer step ...)
                timer = threading.Timer(kill_after_s, kill_now)
                timer.start()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the child ran for more than {timeout} s")
        wait(timeout)
    finally:
        if timer is not None:
            timer.cancel()
        if poll() is None:
            kill()
            wait()
    killed = killed.is_set() and code() != 0
    if killed:
        return last
    if code() != 0:
        stderr = proc.stderr.read() if fresh_interpreter else ""
        raise RuntimeError(f"the child failed with exit code {code()}: {stderr}")
    return last


def assert_same_run(path_a: Path, path_b: Path) -> None:
    """Two final checkpoints hold bit-identical weights, optimizer state, RNG states and history
    (wall-clock seconds aside)."""
    from vaelab import load_checkpoint

    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    assert a["epoch"] == b["epoch"]
    _assert_equal(a["model"], b["model"], "model")
    _assert_equal(a["optimizer"], b["optimizer"], "optimizer")
    _assert_equal(a["rng"], b["rng"], "rng")
    assert_same_history(a["history"], b["history"])


def assert_same_history(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        if key == "seconds":
            assert len(a[key]) == len(b[key])
            continue
        assert _floats(a[key]) == _floats(b[key]), key


def _floats(values: list) -> list:
    return ["nan" if isinstance(v, float) and math.isnan(v) else v for v in values]


def _assert_equal(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where


def leftover_temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


if __name__ == "__main__":
    argv = sys.argv[1:]
    kill = (argv[3], int(argv[4])) if len(argv) >= 5 and argv[2] == "--kill-at" else None
    child_job(argv[0], int(argv[1]), kill, lambda line: print(line, flush=True))


class one_thread:
    """Context manager: torch on one thread (as in the children), so runs in this process are
    bit-identical to theirs; restores the previous setting."""

    def __enter__(self):
        self.previous = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.previous)
