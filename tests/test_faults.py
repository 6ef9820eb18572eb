"""Faults: interrupted checkpoint writes, killed training runs, damaged checkpoints and MNIST files,
malicious pickles, architecture mismatches, NaN losses.

What must hold: the previous checkpoint survives any interrupted write and stays loadable; resuming
continues to the bit-identical result of an uninterrupted run (CPU); damage is detected and named,
with the fix; loading never executes code; training stops on NaN/Inf naming the epoch, the step and
the last good checkpoint.
"""

from __future__ import annotations

import pickle
import random
import shutil

import pytest
import torch
from fault_helpers import (
    EVENTS,
    FIT_ARGS,
    STEPS_PER_EPOCH,
    assert_same_history,
    assert_same_run,
    leftover_temporaries,
    one_thread,
    run_child,
    run_fit,
    small_model,
    synthetic_data,
)

import vaelab
import vaelab.core.objectives
import vaelab.train.training
from vaelab import NonFiniteLossError, fit, load_checkpoint, load_model, restore_model, save_checkpoint
from vaelab.data import MNIST_SHA256

EPOCHS = 5


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, on one thread like the children."""
    path = tmp_path_factory.mktemp("reference") / "run.ckpt"
    with one_thread():
        run_fit(path, EPOCHS)
    return path


# ----------------------------------------------------------------------------- interrupted writes


def _state(epoch: int) -> dict:
    g = torch.Generator().manual_seed(epoch)
    return {"epoch": epoch, "model": {"w": torch.randn(50, 50, generator=g)}, "history": {"loss": [0.5] * epoch}}


class Injected(Exception):
    pass


def _partial_save(obj, f, *args, **kwargs):
    f.write(b"PK\x03\x04 half a zip archive")
    raise Injected("disk full")


def _raise(*args, **kwargs):
    raise Injected("interrupted")


@pytest.mark.parametrize("stage", ["torch.save", "fsync", "os.replace", "KeyboardInterrupt in torch.save"])
def test_an_interrupted_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, stage):
    path = save_checkpoint(tmp_path / "run.ckpt", _state(1))
    before = path.read_bytes()
    if stage == "torch.save":
        monkeypatch.setattr(torch, "save", _partial_save)
    elif stage == "fsync":
        monkeypatch.setattr(vaelab.train.checkpoint.os, "fsync", _raise)
    elif stage == "os.replace":
        monkeypatch.setattr(vaelab.train.checkpoint.os, "replace", _raise)
    else:

        def interrupt(obj, f, *args, **kwargs):
            f.write(b"PK\x03\x04")
            raise KeyboardInterrupt

        monkeypatch.setattr(torch, "save", interrupt)
    with pytest.raises((Injected, KeyboardInterrupt)):
        save_checkpoint(path, _state(2))
    monkeypatch.undo()
    assert path.read_bytes() == before
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], _state(1)["model"]["w"])
    assert leftover_temporaries(tmp_path) == []  # the temporary file was removed
    save_checkpoint(path, _state(2))  # and the next write works
    assert load_checkpoint(path)["epoch"] == 2


@pytest.mark.slow  # SIGKILLed child processes: not in make test-fast
@pytest.mark.parametrize("epoch", [1, 3])
@pytest.mark.parametrize("event", EVENTS)
def test_sigkill_at_every_stage_keeps_a_loadable_checkpoint_and_resume_is_bit_identical(
    tmp_path, reference, event, epoch
):
    path = tmp_path / "run.ckpt"
    target = (event, (epoch - 1) * STEPS_PER_EPOCH + 2 if event == "step" else epoch)
    assert run_child(path, EPOCHS, kill_at=target) == f"{target[0]} {target[1]}"
    # what survives: the checkpoint of the epoch before the interrupted save (after the rename: this one)
    survived = epoch if event == "after-replace" else epoch - 1
    if survived == 0:
        assert not path.exists()
    else:
        state = load_checkpoint(path)
        assert state["epoch"] == survived and len(state["history"]["epoch"]) == survived
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    # a write killed before the rename leaves its temporary file behind, never a damaged checkpoint
    assert len(leftover_temporaries(tmp_path)) == (1 if event in ("mid-write", "before-replace") else 0)
    with one_thread():
        run_fit(path, EPOCHS)
    assert_same_run(reference, path)


@pytest.mark.slow
def test_sigkill_of_a_fresh_interpreter_mid_write_then_resume_in_another(tmp_path, reference):
    path = tmp_path / "run.ckpt"
    assert run_child(path, EPOCHS, kill_at=("mid-write", 3), fresh_interpreter=True) == "mid-write 3"
    assert load_checkpoint(path)["epoch"] == 2
    assert run_child(path, EPOCHS, fresh_interpreter=True) == "DONE 0"
    assert_same_run(reference, path)


def test_keyboard_interrupt_mid_epoch_then_resume_is_bit_identical(tmp_path, reference, monkeypatch):
    path = tmp_path / "run.ckpt"
    calls = [0]
    real = vaelab.train.training.training_loss

    def interrupted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2 * STEPS_PER_EPOCH + 3:  # in the middle of epoch 3
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(vaelab.train.training, "training_loss", interrupted)
    with one_thread(), pytest.raises(KeyboardInterrupt):
        run_fit(path, EPOCHS)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 2
    with one_thread():
        run_fit(path, EPOCHS, model_seed=99)  # other initial weights: everything comes from the file
    assert_same_run(reference, path)


# ----------------------------------------------------------------------------- damaged checkpoints


@pytest.fixture(scope="module")
def checkpoint_bytes(reference):
    return reference.read_bytes()


def test_truncated_checkpoints_are_reported_never_loaded(tmp_path, checkpoint_bytes):
    path = tmp_path / "cut.ckpt"
    lengths = sorted(
        {0, 1, 10, 100, len(checkpoint_bytes) - 1} | set(random.Random(0).sample(range(len(checkpoint_bytes)), 40))
    )
    for n in lengths:
        path.write_bytes(checkpoint_bytes[:n])
        with pytest.raises(
            ValueError,
            match=r"cut\.ckpt .*(truncated|corrupted).*no earlier checkpoint beside it: "
            r"train again",
        ):
            load_checkpoint(path)
    # with the previous checkpoint kept beside it, the message points there
    shutil.copyfile(tmp_path / "cut.ckpt", tmp_path / "cut.ckpt.prev")
    with pytest.raises(ValueError, match=r"an earlier checkpoint is kept at .*cut\.ckpt\.prev: use it"):
        load_checkpoint(path)


def test_flipped_bytes_are_detected_or_harmless(tmp_path, reference, checkpoint_bytes):
    """Flip one byte at random places: the load fails with the clear error, or (a flip in zip
    padding or metadata that torch ignores) gives exactly the original contents."""
    original = load_checkpoint(reference)
    path = tmp_path / "flipped.ckpt"
    rng = random.Random(1)
    detected = 0
    for _ in range(60):
        data = bytearray(checkpoint_bytes)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        try:
            state = load_checkpoint(path)
        except ValueError as err:
            assert "flipped.ckpt" in str(err) and "train again" in str(err)
            detected += 1
        else:
            assert_same_history(state["history"], original["history"])
            for key in original["model"]:
                assert torch.equal(state["model"][key], original["model"][key])
    assert detected >= 40  # most bytes of the file matter


def test_a_flip_inside_the_weights_is_caught_by_the_digest(tmp_path, reference, checkpoint_bytes):
    """torch's zip reader does not check CRCs: flipping a byte of a stored tensor changes the
    weights silently unless the checkpoint carries its own digest."""
    import zipfile

    with zipfile.ZipFile(reference) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(checkpoint_bytes)
    start = info.header_offset  # local file header: 30 bytes, then the name and the extra field
    name_length = int.from_bytes(data[start + 26 : start + 28], "little")
    extra_length = int.from_bytes(data[start + 28 : start + 30], "little")
    data[start + 30 + name_length + extra_length + info.file_size // 2] ^= 0x40
    path = tmp_path / "weights.ckpt"
    path.write_bytes(bytes(data))
    raw = torch.load(path, weights_only=True)  # torch itself loads it without complaint ...
    original = torch.load(reference, weights_only=True)
    assert any(not torch.equal(a, b) for a, b in zip(_tensors(raw), _tensors(original)))
    with pytest.raises(ValueError, match="SHA-256 digest does not match"):  # ... vaelab does not
        load_checkpoint(path)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            yield from _tensors(value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def test_resume_from_a_damaged_checkpoint_is_a_clear_error_not_a_silent_restart(tmp_path, checkpoint_bytes):
    path = tmp_path / "run.ckpt"
    path.write_bytes(checkpoint_bytes[: len(checkpoint_bytes) // 3])
    with pytest.raises(ValueError, match="not a readable vaelab checkpoint"):
        fit(small_model(), synthetic_data(), epochs=EPOCHS, checkpoint=path, **FIT_ARGS)


class _Payload:
    """Unpickling this calls open(marker, "w"), which creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_loading_a_malicious_checkpoint_executes_nothing(tmp_path, writer):
    marker = tmp_path / "pwned"
    state = {"format": vaelab.train.checkpoint.FORMAT, "model": {}, "evil": _Payload(marker)}
    path = tmp_path / "evil.ckpt"
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state))
    # the payload is live: a plain unpickling runs it
    with open(path, "rb") as f:
        if writer == "torch.save":
            torch.load(f, weights_only=False)
        else:
            pickle.load(f)
    assert marker.exists()
    marker.unlink()
    for load in (load_checkpoint, load_model):
        with pytest.raises(ValueError, match="not a readable vaelab checkpoint") as info:
            load(path)
        # none of torch's advice to retry with weights_only=False (which would run the payload), no colour codes
        assert "weights_only" not in str(info.value) and "\x1b" not in str(info.value)
    with pytest.raises(ValueError, match="not a readable vaelab checkpoint"):
        fit(small_model(), synthetic_data(), epochs=1, checkpoint=path, **FIT_ARGS)
    assert not marker.exists()


@pytest.mark.parametrize(
    "change", [{"latent_dim": 3}, {"hidden_dim": 9}, {"likelihood": "gaussian"}, {"architecture": "conv"}]
)
def test_a_checkpoint_of_another_architecture_is_a_clear_error(tmp_path, reference, change):
    config = {**load_checkpoint(reference)["config"], **change}
    other = vaelab.build_vae(**config)
    with pytest.raises(
        ValueError,
        match=r"does not fit this model: it was saved from config .*"
        r"build the model with vaelab\.build_vae",
    ):
        restore_model(other, load_checkpoint(reference))
    path = shutil.copyfile(reference, tmp_path / "run.ckpt")
    key, value = next(iter(change.items()))
    with pytest.raises(
        ValueError,
        match=rf"holds another run \(.*model\.{key}=.* in the file but "
        rf"model\.{key}={value!r} now",
    ):
        fit(other, synthetic_data(), epochs=EPOCHS + 1, checkpoint=path, **FIT_ARGS)
    assert path.read_bytes() == reference.read_bytes()
    model, _ = load_model(reference)  # while load_model rebuilds the right one
    assert model.latent_dim == load_checkpoint(reference)["config"]["latent_dim"]


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a vaelab checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


# ----------------------------------------------------------------------------- NaN and Inf


def _poison_loss(monkeypatch, at_call: int):
    real = vaelab.train.training.training_loss
    calls = [0]

    def poisoned(*args, **kwargs):
        calls[0] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls[0] == at_call else loss

    monkeypatch.setattr(vaelab.train.training, "training_loss", poisoned)


@pytest.mark.parametrize("epoch,step", [(1, 1), (3, 2), (4, STEPS_PER_EPOCH)])
def test_nan_loss_names_epoch_step_and_last_good_checkpoint(tmp_path, reference, monkeypatch, epoch, step):
    path = tmp_path / "run.ckpt"
    _poison_loss(monkeypatch, (epoch - 1) * STEPS_PER_EPOCH + step)
    with one_thread(), pytest.raises(NonFiniteLossError) as info:
        run_fit(path, EPOCHS)
    message = str(info.value)
    assert f"at epoch {epoch}, step {step};" in message
    if epoch == 1:
        assert "no checkpoint was written yet" in message and not path.exists()
    else:
        assert f"the last good checkpoint is {path} (written after epoch {epoch - 1})" in message
        assert "lower learning rate" in message
        state = load_checkpoint(path)  # that checkpoint is intact and finite
        assert state["epoch"] == epoch - 1
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    monkeypatch.undo()
    with one_thread():  # resuming from it (here without the fault) reaches the reference exactly
        run_fit(path, EPOCHS)
    assert_same_run(reference, path)


def test_a_huge_learning_rate_stops_training_with_the_epoch_and_step(tmp_path):
    data = synthetic_data()
    settings = {**FIT_ARGS, "lr": 1e30, "batch_size": len(data)}  # one step per epoch: epoch 1 ends finite
    with pytest.raises(
        NonFiniteLossError,
        match=r"epoch 2, step 1; the last good checkpoint is .*run\.ckpt "
        r"\(written after epoch 1\)",
    ):
        fit(small_model(), data, epochs=20, checkpoint=tmp_path / "run.ckpt", **settings)
    state = load_checkpoint(tmp_path / "run.ckpt")
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_nan_weights_after_the_last_step_of_an_epoch_are_never_checkpointed(tmp_path, monkeypatch):
    real = vaelab.train.training.make_optimizer
    steps = [0]

    def poisoning_optimizer(model, lr, *args):
        optimizer = real(model, lr, *args)
        step = optimizer.step

        def poisoned_step(*args, **kwargs):
            result = step(*args, **kwargs)
            steps[0] += 1
            if steps[0] == 2 * STEPS_PER_EPOCH:  # the loss of this step was finite
                with torch.no_grad():
                    next(model.parameters()).fill_(float("inf"))
            return result

        optimizer.step = poisoned_step
        return optimizer

    monkeypatch.setattr(vaelab.train.training, "make_optimizer", poisoning_optimizer)
    path = tmp_path / "run.ckpt"
    with pytest.raises(
        NonFiniteLossError,
        match=r"parameters became NaN or Inf at the end of epoch 2; "
        r"the last good checkpoint is .* \(written after epoch 1\)",
    ):
        fit(small_model(), synthetic_data(), epochs=EPOCHS, checkpoint=path, **FIT_ARGS)
    assert load_checkpoint(path)["epoch"] == 1


def test_a_stale_checkpoint_of_another_run_is_not_called_the_last_good_one(tmp_path, reference, monkeypatch):
    path = tmp_path / "run.ckpt"
    shutil.copyfile(reference, path)
    _poison_loss(monkeypatch, 2)
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet by this run"):
        fit(small_model(), synthetic_data(), epochs=EPOCHS, checkpoint=path, resume=False, **FIT_ARGS)


# ----------------------------------------------------------------------------- damaged MNIST files


@pytest.fixture
def mnist_copy(mnist_root, tmp_path):
    """The test split's raw files copied to tmp_path/MNIST/raw (writable copies)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copyfile(mnist_root / "MNIST" / "raw" / name, raw / name)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "append"])
@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_a_damaged_mnist_file_is_detected_by_checksum_with_the_fix(mnist_copy, damage, name):
    path = mnist_copy / "MNIST" / "raw" / name
    data = bytearray(path.read_bytes())
    if damage == "truncate":  # a half-finished download
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) - 100] ^= 0x01
    elif damage == "empty":
        data = bytearray()
    else:
        data += b"\n"
    path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError) as info:
        vaelab.load_mnist("test", root=mnist_copy, limit=10)
    message = str(info.value)
    assert str(path) in message and "SHA-256" in message and "corrupted or truncated" in message
    assert "delete it and download again" in message and vaelab.DATA_ENV in message


@pytest.mark.slow
def test_intact_copies_load_and_a_missing_file_is_named(mnist_copy):
    data = vaelab.load_mnist("test", root=mnist_copy, limit=10)
    assert data.images.shape == (10, 784)
    missing = mnist_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=r"MNIST was not found in .*download"):
        vaelab.load_mnist("test", root=mnist_copy, limit=10)
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte is missing"):
        vaelab.verify_mnist_files(mnist_copy, "test")


@pytest.mark.slow
def test_the_published_checksums_match_the_shared_files(mnist_root):
    """An independent hash of each raw file equals the published sum vaelab checks against."""
    import hashlib

    for name, expected in MNIST_SHA256.items():
        assert hashlib.sha256((mnist_root / "MNIST" / "raw" / name).read_bytes()).hexdigest() == expected
