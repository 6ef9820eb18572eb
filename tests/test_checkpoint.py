"""load_model on conv checkpoints of an earlier vaelab, which built dense layers of
min(hidden_dim, 256) units while the stored config kept the hidden_dim it was given."""

from __future__ import annotations

import pytest
import torch

import vaelab
from vaelab import build_vae, load_model, save_checkpoint

CONFIG = {"latent_dim": 3, "architecture": "conv", "side": 8}


def _save(path, model, config):
    """What fit writes, as far as load_model reads it: the config dict and the state_dict."""
    return save_checkpoint(path, {"config": config, "model": model.state_dict(), "epoch": 1, "history": {}})


def _outputs(model, x):
    with torch.no_grad():
        mu, logvar = model.encode(x)
        return mu, logvar, model.decode(mu), vaelab.elbo(model, x, generator=torch.Generator().manual_seed(0)).elbo


@pytest.mark.parametrize("marker", ["vaelab-checkpoint-0", "vaelab-checkpoint-2"])
def test_a_checkpoint_of_another_format_version_is_a_clear_error(tmp_path, marker):
    """A file of another checkpoint format is refused with one sentence naming its format, never read
    as if it were this one (torch.save writes it exactly as save_checkpoint would, marker aside)."""
    model = build_vae(**CONFIG)
    path = _save(tmp_path / "model.ckpt", model, model.config.to_dict())
    state = torch.load(path, weights_only=True)
    state["format"] = marker
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=rf"format '{marker}', which this vaelab \(vaelab-checkpoint-1\) does not read"
    ):
        load_model(path)


def test_a_checkpoint_without_its_digest_is_a_clear_error(tmp_path):
    model = build_vae(**CONFIG)
    path = _save(tmp_path / "model.ckpt", model, model.config.to_dict())
    state = torch.load(path, weights_only=True)
    del state["sha256"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="without a digest"):
        vaelab.load_checkpoint(path)


@pytest.mark.parametrize("hidden_dim", [256, 400])
def test_a_current_conv_checkpoint_loads_silently_with_its_own_width(tmp_path, capsys, hidden_dim):
    model = build_vae(**CONFIG, hidden_dim=hidden_dim)
    path = _save(tmp_path / "new.ckpt", model, model.config.to_dict())
    loaded, _ = load_model(path)
    assert loaded.config.hidden_dim == hidden_dim and capsys.readouterr().err == ""


def test_a_conv_checkpoint_of_another_width_is_still_a_clear_error(tmp_path):
    model = build_vae(**CONFIG, hidden_dim=128)
    path = _save(tmp_path / "other.ckpt", model, {**model.config.to_dict(), "hidden_dim": 400})
    with pytest.raises(ValueError, match="does not fit this model"):
        load_model(path)
