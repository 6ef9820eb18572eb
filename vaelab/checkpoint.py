"""Checkpoints: model + optimizer + epoch + history + RNG state, written atomically, loaded safely.

Writing goes to a temporary file in the same folder, is flushed and fsync'ed, then renamed over
the target with os.replace, which is atomic: an interrupted write leaves the previous checkpoint
intact. Loading uses torch.load(weights_only=True), which refuses to run pickled code, so
opening a checkpoint from the internet cannot execute anything. The file also stores a SHA-256
digest of its contents (every tensor's bytes and every number), checked on loading: torch's zip
reader does not verify its CRCs, so without it a flipped bit in a weight would load silently.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .model import VAE, VAEConfig, build_vae

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "restore_model", "FORMAT"]

FORMAT = "vaelab-checkpoint-1"
_DIGEST = "sha256"


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


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        content = {"format": FORMAT, **state}
        content[_DIGEST] = _digest(content)
        with os.fdopen(fd, "wb") as f:
            torch.save(content, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    # a writer killed before its rename leaves its temporary file behind: the new checkpoint
    # supersedes it, so remove such leftovers now
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` without executing any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check the path or train first.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except Exception as err:  # a damaged file fails in many ways (zip, pickle, storage sizes)
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"{path} is not a readable vaelab checkpoint (truncated, corrupted, or containing "
            f"objects other than tensors and plain data: {first_line}); use an "
            "earlier checkpoint or train again."
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a vaelab checkpoint (no '{FORMAT}' marker).")
    if _DIGEST in state:  # files written before the digest existed are read unchecked
        if state.pop(_DIGEST) != _digest(state):
            raise ValueError(f"{path} is corrupted (its SHA-256 digest does not match its contents); "
                             "use an earlier checkpoint or train again.")
    return state


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


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[VAE, dict[str, Any]]:
    """Rebuild the standard VAE a checkpoint describes and load its weights.

    Returns (model in eval mode on ``device``, the checkpoint dict).
    """
    state = load_checkpoint(path, map_location=device)
    if not state.get("config"):
        raise ValueError(f"{path} holds a custom model without a config; build it yourself and "
                         "call vaelab.restore_model(model, vaelab.load_checkpoint(path)).")
    model = build_vae(VAEConfig(**state["config"])).to(device)
    restore_model(model, state)
    return model.eval(), state
