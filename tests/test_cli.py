"""The command line, run as a user runs it (``python -m vaelab`` in a subprocess): train writes
checkpoint, history and figure; evaluate prints the bounds; mistakes and faults end in one line on
stderr with the fix in command-line terms and the documented exit status (2 usage, 1 failure,
130 Ctrl-C), never a traceback; resuming never mixes runs.

The usage errors need no MNIST ($VAELAB_DATA points at an empty folder: each is caught before any
data is loaded); the runs that train are marked slow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import vaelab
from vaelab import cli

SMALL = ["--limit", "60", "--latent-dim", "2", "--hidden-dim", "16", "--batch-size", "32", "--device", "cpu"]


def run(*args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VAELAB_QUIET": "1", **(env or {})},
        **kwargs,
    )


def assert_one_line_error(result, status, *phrases):
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


# ----------------------------------------------------------------------------- help and version


def test_every_train_option_has_a_help_text_with_its_default():
    parser = cli._parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))
    options = [a for a in train._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 16
    for action in options:
        assert action.help, action.dest
    text = train.format_help()
    for action in options:  # argparse prints each default after its option's help
        assert f"(default: {action.default})" in " ".join(text.split()), action.dest


@pytest.mark.slow
def test_version_prints_the_package_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vaelab {vaelab.__version__}"


# ----------------------------------------------------------------------------- usage errors, before any data


@pytest.fixture
def no_data(tmp_path):
    """An empty $VAELAB_DATA: a command that loaded data would fail about MNIST instead."""
    (tmp_path / "empty").mkdir()
    return {"VAELAB_DATA": str(tmp_path / "empty"), "HOME": str(tmp_path)}


@pytest.mark.slow  # each case starts an interpreter that imports torch (5 s here); the same in-process below
@pytest.mark.parametrize(
    "case",
    [
        "out is a file",
        "history.json is a folder",
        "files vaelab did not write",
        "huge seed",
        "beta nan",
        "lr zero",
        "tilde",
        "no cuda",
        "locked",
    ],
)
def test_usage_errors_are_one_line_with_the_fix_before_loading_data(tmp_path, no_data, case):
    args, phrases, holder = [], [], None
    (tmp_path / "afile").write_text("mine")
    if case == "out is a file":
        args, phrases = ["--out", str(tmp_path / "afile")], ["is a file, not a folder", "another --out"]
    elif case == "history.json is a folder":
        (tmp_path / "run" / "history.json").mkdir(parents=True)
        args, phrases = ["--out", str(tmp_path / "run")], ["history.json is a folder"]
    elif case == "files vaelab did not write":
        (tmp_path / "run").mkdir()
        for name in ("history.json", "samples.png"):
            (tmp_path / "run" / name).write_text("someone else's")
        args, phrases = (
            ["--out", str(tmp_path / "run")],
            ["history.json, samples.png, which vaelab did not write", "--overwrite"],
        )
    elif case == "huge seed":
        args, phrases = ["--seed", str(2**70)], ["--seed", "from 0 to 18446744073709551615"]
    elif case == "beta nan":
        args, phrases = ["--beta", "nan"], ["argument --beta: expected a finite number >= 0, got nan"]
    elif case == "lr zero":
        args, phrases = ["--lr", "0"], ["argument --lr: expected a finite number > 0"]
    elif case == "tilde":  # --out=~/x is not expanded by the shell: vaelab expands it
        args, phrases = ["--out=~/afile"], [f"--out {tmp_path / 'afile'} is a file"]
    elif case == "no cuda":
        if torch.cuda.is_available():
            args, phrases = ["--device", f"cuda:{torch.cuda.device_count()}"], ["does not exist"]
        else:
            args, phrases = ["--device", "cuda"], ["no CUDA GPU is available", "--device auto or cpu"]
    else:
        (tmp_path / "run").mkdir()
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                (
                    "import fcntl, os, time\n"
                    f"fd = os.open({str(tmp_path / 'run' / '.model.ckpt.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
                    "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
                    "print('locked', flush=True); time.sleep(60)\n"
                ),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout.readline().strip() == "locked"
        args, phrases = ["--out", str(tmp_path / "run")], [f"another vaelab run (pid {holder.pid})", "another --out"]
    try:
        result = run("train", *args, cwd=tmp_path, env=no_data)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    assert_one_line_error(result, 2, *phrases)
    assert not (tmp_path / "~").exists() and (tmp_path / "afile").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["afile", "empty", *(["run"] if "run" in str(args) else [])]
    )


@pytest.mark.parametrize(
    "argv,status,phrase",
    [
        (["train", "--out", "{tmp}/afile"], 2, "is a file, not a folder"),
        (["train", "--beta", "inf"], 2, "argument --beta: expected a finite number >= 0, got inf"),
        (["train", "--epochs", "0"], 2, "argument --epochs: expected an integer >= 1, got 0"),
        (["train", "--device", "tpu"], 2, "unknown device 'tpu'; use --device"),
        (["evaluate", "{tmp}"], 2, "is a folder; pass the checkpoint file inside it"),
        (["evaluate", "{tmp}/nan.ckpt"], 1, "NaN or Inf weights"),
    ],
)
def test_the_same_errors_in_process_for_make_test_fast(tmp_path, capsys, monkeypatch, argv, status, phrase):
    """What the subprocess tests check, through cli.main (no interpreter start): exit status, one line."""
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "empty"))
    (tmp_path / "afile").write_text("mine")
    _checkpoint(tmp_path / "nan.ckpt", poison=True)
    try:
        code = cli.main([arg.format(tmp=tmp_path) for arg in argv])
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == status and len(err.strip().splitlines()) == 1 and phrase in err, err
    assert (tmp_path / "afile").read_text() == "mine"


def _checkpoint(path, poison=False):
    torch.manual_seed(0)
    model = vaelab.build_vae(latent_dim=2, hidden_dim=8)
    state = {
        "config": model.config.to_dict(),
        "model": model.state_dict(),
        "epoch": 1,
        "run": {"binarization": "dynamic"},
    }
    if poison:
        state["model"][
            "decoder.out.weight" if "decoder.out.weight" in state["model"] else next(iter(state["model"]))
        ].view(-1)[0] = float("nan")
    vaelab.save_checkpoint(path, state)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "folder", "random bytes", "nan weight", "unknown binarization"])
def test_evaluate_errors_name_the_problem(tmp_path, no_data, case):
    path = tmp_path / "model.ckpt"
    if case == "missing":
        status, phrases = 2, ["does not exist", "python -m vaelab train"]
    elif case == "folder":
        _checkpoint(path)
        path, status, phrases = tmp_path, 2, ["is a folder", "model.ckpt"]
    elif case == "random bytes":
        path.write_bytes(os.urandom(3000))
        status, phrases = 1, ["not a readable vaelab checkpoint"]
    elif case == "nan weight":
        _checkpoint(path, poison=True)
        status, phrases = 1, ["NaN or Inf weights"]
    else:
        state = vaelab.load_checkpoint(_checkpoint(path))
        state["run"]["binarization"] = "threshold"
        del state["format"]
        vaelab.save_checkpoint(path, state)
        status, phrases = 1, ["binarization 'threshold'"]
    result = run("evaluate", str(path), "--k", "5", "--device", "cpu", env=no_data)
    assert_one_line_error(result, status, *phrases)
    assert "weights_only" not in result.stderr and "resume=False" not in result.stderr


# ----------------------------------------------------------------------------- real runs (MNIST)


def strict_json(text):
    def reject(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=reject)


@pytest.mark.slow
def test_train_then_evaluate(tmp_path, mnist_root):
    out = tmp_path / "run"
    result = run(
        "train",
        "--epochs",
        "2",
        "--limit",
        "3000",
        "--latent-dim",
        "5",
        "--hidden-dim",
        "100",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert (out / "model.ckpt").is_file() and (out / "samples.png").stat().st_size > 1000
    history = strict_json((out / "history.json").read_text())
    assert len(history["test_elbo"]) == 2 and history["test_elbo"][1] > history["test_elbo"][0]
    assert "nats per image" in result.stdout
    assert vaelab.load_checkpoint(out / "model.ckpt.prev")["epoch"] == 1  # the checkpoint before is kept
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []

    result = run("evaluate", str(out / "model.ckpt"), "--k", "20", "--limit", "200", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # VAELAB_QUIET: no progress bar
    lines = {line.split(":")[0].strip(): line for line in result.stdout.splitlines()}
    elbo = float(lines["test ELBO"].split()[2])
    log_px = float(next(v for k, v in lines.items() if k.startswith("log p(x)")).split(":")[1].split()[0])
    assert log_px >= elbo - 1.0  # L_20 is above the ELBO up to Monte Carlo noise


@pytest.mark.slow
def test_resuming_never_mixes_runs_and_a_damaged_checkpoint_falls_back(tmp_path, mnist_root):
    out = str(tmp_path / "r")
    assert run("train", "--epochs", "2", *SMALL, "--out", out).returncode == 0
    # other data: refused before any training, in command-line terms
    mixed = run("train", "--epochs", "3", *SMALL, "--limit", "50", "--out", out)
    assert_one_line_error(mixed, 2, "--limit 60 then, --limit 50 now", "--restart", "another --out")
    # as many epochs as it holds: said, nothing trained, nothing rewritten
    before = (tmp_path / "r" / "model.ckpt").read_bytes()
    same = run("train", "--epochs", "2", *SMALL, "--out", out)
    assert same.returncode == 0 and "nothing left to train" in same.stdout
    assert (tmp_path / "r" / "model.ckpt").read_bytes() == before
    assert_one_line_error(run("train", "--epochs", "1", *SMALL, "--out", out), 2, "more than --epochs 1")
    # a damaged newest checkpoint: the run goes on from the previous one, loudly
    (tmp_path / "r" / "model.ckpt").write_bytes(before[: len(before) // 2])
    on = run("train", "--epochs", "3", *SMALL, "--out", out)
    assert on.returncode == 0, on.stderr
    assert "resuming from the previous checkpoint" in on.stderr and "Traceback" not in on.stderr
    history = strict_json((tmp_path / "r" / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3] and history["examples_seen"] == [60, 120, 180]
    # --restart starts the other run over
    restarted = run("train", "--epochs", "1", *SMALL, "--limit", "50", "--out", out, "--restart")
    assert restarted.returncode == 0, restarted.stderr
    assert strict_json((tmp_path / "r" / "history.json").read_text())["examples_seen"] == [50]


@pytest.mark.slow
def test_a_diverged_run_fails_and_ctrl_c_exits_130_keeping_the_checkpoint(tmp_path, mnist_root):
    diverged = run("train", "--epochs", "3", *SMALL, "--lr", "1e6", "--out", str(tmp_path / "d"))
    assert_one_line_error(diverged, 1, "diverged", "lower learning rate than --lr 1000000.0", "--restart")

    out = tmp_path / "c"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "train", "--epochs", "500", *SMALL, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VAELAB_QUIET": "1"},
        # as a terminal's Ctrl-C finds it: a background job of a non-interactive shell (how CI may run
        # the tests) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (out / "model.ckpt.prev").exists() and time.monotonic() < deadline:  # two epochs written
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().startswith("interrupted") and "Traceback" not in stderr
    assert "rerun the same command to continue" in stderr
    assert vaelab.load_checkpoint(out / "model.ckpt")["epoch"] >= 2


def test_an_unwritable_out_is_refused_before_loading_data(tmp_path, capsys, monkeypatch):
    """Root ignores chmod here, so the refusal of the write probe is injected (as a read-only
    file system would refuse it); nothing is loaded, created or left behind."""
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "empty"))
    (tmp_path / "run").mkdir()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli.tempfile, "mkstemp", refuse)
    assert cli.main(["train", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: --out {tmp_path / 'run'} is not writable (Permission denied); choose another --out."
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.slow
def test_evaluate_a_float64_checkpoint_in_float64(tmp_path, mnist_root):
    torch.manual_seed(0)
    model = vaelab.build_vae(latent_dim=2, hidden_dim=8).double()
    vaelab.save_checkpoint(
        tmp_path / "m.ckpt",
        {"config": model.config.to_dict(), "model": model.state_dict(), "settings": {"binarization": "static"}},
    )
    result = run("evaluate", str(tmp_path / "m.ckpt"), "--k", "5", "--limit", "20", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    # an untrained decoder: about -784 log 2 = -543 nats per image
    assert -700 < float(result.stdout.split("test ELBO:")[1].split()[0]) < -400
