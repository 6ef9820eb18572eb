"""Checkpoints: model + optimizer + epoch + history + RNG state, written atomically, loaded safely.

Writing goes to a temporary file in the same folder (named ``.NAME.vaelab-XXXX.tmp``), is flushed
and fsync'ed, then renamed over the target with os.replace, which is atomic: an interrupted write
leaves the previous checkpoint intact. With ``keep_previous=True`` (what ``fit`` uses) the file
being replaced is kept as ``NAME.prev``, so one damaged checkpoint never loses the whole run.
Loading uses torch.load(weights_only=True), which refuses to run pickled code, so opening a
checkpoint from the internet cannot execute anything. The file also stores a SHA-256 digest of
its contents (every tensor's bytes and every number), checked on loading: torch's zip reader does
not verify its CRCs, so without it a flipped bit in a weight would load silently.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from ..core.model import VAE
from ..models.config import VAEConfig, build_vae
from ..utils.devices import resolve_device
from ..utils.messages import user_error

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "restore_model",
    "previous_checkpoint",
    "check_finite_weights",
    "atomic_write",
    "FORMAT",
]

FORMAT = "vaelab-checkpoint-1"
_DIGEST = "sha256"
_TMP_TAG = "vaelab-"  # our temporary files are .NAME.vaelab-XXXX.tmp; others' files are never touched
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where ``save_checkpoint(path, keep_previous=True)`` keeps the checkpoint it replaced."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def _update_digest(digest: Any, value: Any) -> None:
    """Feed a canonical byte form of ``value`` (nested dicts/lists/tuples of tensors and plain
    data) to ``digest``; equal contents give equal bytes wherever the tensors live."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{t.dtype}{tuple(value.shape)}:".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=repr):
            digest.update(f"K{key!r}:".encode())
            _update_digest(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__[0]}{len(value)}:".encode())
        for item in value:
            _update_digest(digest, item)
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def _digest(state: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    _update_digest(digest, {k: v for k, v in state.items() if k != _DIGEST})
    return digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):  # make a rename itself durable
        dir_fd = os.open(folder, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO[bytes]], Any] | bytes, keep_previous: bool = False
) -> Path:
    """Write ``path`` atomically: ``write(f)`` (or the given bytes) goes to a temporary file in
    the same folder, which is fsync'ed and renamed over ``path``. Readers see the old file or the
    new one, never a mix. keep_previous: the replaced file stays available as ``path.prev``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{_TMP_TAG}", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600 files; give the usual permissions (umask)
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            if isinstance(write, bytes):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.is_file():
            _keep_copy(path, previous_checkpoint(path))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    # a writer killed before its rename leaves its temporary file behind: the new file supersedes
    # it, so remove such leftovers now (only vaelab's own temporary names)
    for stale in path.parent.glob(f".{path.name}.{_TMP_TAG}*.tmp"):
        stale.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _keep_copy(path: Path, copy: Path) -> None:
    """Make ``copy`` hold the bytes of ``path`` (a hard link where possible), atomically."""
    tmp = copy.with_name(f".{copy.name}.{_TMP_TAG}{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # file systems without hard links
        shutil.copyfile(path, tmp)
    os.replace(tmp, copy)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], keep_previous: bool = False) -> Path:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path``.

    keep_previous: the checkpoint being replaced is kept as ``path.prev`` (see ``previous_checkpoint``).
    """
    content = {"format": FORMAT, **state}
    content[_DIGEST] = _digest(content)
    return atomic_write(path, lambda f: torch.save(content, f), keep_previous=keep_previous)


def _load_error_reason(err: Exception) -> str:
    """One plain line about why torch could not read a file (no colour codes, and none of torch's
    advice to retry with weights_only=False, which would run the file's code)."""
    text = _ANSI.sub("", str(err))
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\s+Please use|\n|$)", text)
    if match:
        reason = match.group(1).strip().rstrip(".")
        return f"it holds something other than tensors and plain data ({reason})"
    first_line = (text.strip().splitlines() or [type(err).__name__])[0]
    return first_line.rstrip(".")


def _no_earlier_copy_advice(path: Path) -> str:
    previous = previous_checkpoint(path)
    if previous.is_file():
        return f"an earlier checkpoint is kept at {previous}: use it, or train again"
    return "there is no earlier checkpoint beside it: train again"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` without executing any pickled code."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder, not a checkpoint file; pass the file inside it (e.g. {path / 'model.ckpt'})."
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check the path or train first.")
    try:
        with open(path, "rb") as f:
            data = f.read()
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except Exception as err:  # a damaged file fails in many ways (zip, pickle, storage sizes)
        raise ValueError(
            f"{path} is not a readable vaelab checkpoint (truncated, corrupted, or not written by "
            f"vaelab: {_load_error_reason(err)}); {_no_earlier_copy_advice(path)}."
        ) from None
    marker = state.get("format") if isinstance(state, dict) else None
    if not (isinstance(marker, str) and marker.startswith(FORMAT.rsplit("-", 1)[0])):
        raise ValueError(f"{path} is not a vaelab checkpoint (no '{FORMAT}' marker).")
    if marker != FORMAT or _DIGEST not in state:
        raise ValueError(
            f"{path} is a vaelab checkpoint of format {marker!r}{'' if _DIGEST in state else ' without a digest'}, "
            f"which this vaelab ({FORMAT}) does not read; load it with the vaelab that wrote it, or train again."
        )
    if state.pop(_DIGEST) != _digest(state):
        raise ValueError(
            f"{path} is corrupted (its SHA-256 digest does not match its contents); {_no_earlier_copy_advice(path)}."
        )
    return state


def check_finite_weights(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Raise ValueError if a weight stored in the checkpoint ``state`` is NaN or Inf."""
    for name, value in (state.get("model") or {}).items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(
                f"{path} holds NaN or Inf weights ({name}); a model with them computes only NaN: "
                f"{_no_earlier_copy_advice(Path(path))}."
            )


def restore_model(model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Load the checkpoint's weights into ``model``, with a clear error on an architecture mismatch."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        saved = state.get("config")
        have = getattr(model, "config", None)
        raise ValueError(
            f"the checkpoint does not fit this model: it was saved from config {saved}, the model "
            f"has config {have.to_dict() if have else None}; build the model with "
            "vaelab.build_vae(**config) from the checkpoint's config, or use vaelab.load_model."
        ) from err


def stored_dtype(state: dict[str, Any]) -> torch.dtype:
    """The floating dtype the checkpoint's weights were saved in (float32 unless they say otherwise)."""
    for value in (state.get("model") or {}).values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.dtype
    return torch.float32


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[VAE, dict[str, Any]]:
    """Rebuild the standard VAE a checkpoint describes and load its weights.

    Returns (model in eval mode on ``device``, in the dtype its weights were saved in; the
    checkpoint dict). Raises ValueError for a damaged checkpoint or one holding NaN/Inf weights.
    """
    device = resolve_device(device)
    state = load_checkpoint(path, map_location=device)
    if not state.get("config"):
        raise user_error(
            ValueError,
            f"{path} holds a custom model without a config; build it yourself and "
            "call vaelab.restore_model(model, vaelab.load_checkpoint(path)).",
            f"{path} holds a custom model without a config; the command line evaluates only models built by "
            "vaelab.build_vae (python -m vaelab train): evaluate this one in Python.",
        )
    try:
        config = VAEConfig.from_settings(state["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{path} records a model config this vaelab cannot build ({err}); it was written by "
            "another version of vaelab."
        ) from None
    check_finite_weights(path, state)
    model = build_vae(config).to(device=device, dtype=stored_dtype(state))
    restore_model(model, state)
    return model.eval(), state
