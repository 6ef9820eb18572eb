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
        return mu, logvar, model.decode(mu), model(x, generator=torch.Generator().manual_seed(0)).elbo


def test_an_old_conv_checkpoint_with_256_wide_layers_loads_with_identical_outputs(tmp_path, capsys):
    torch.manual_seed(0)
    old = build_vae(**CONFIG, hidden_dim=256).eval()
    path = _save(tmp_path / "old.ckpt", old, {**old.config.to_dict(), "hidden_dim": 400})
    with pytest.raises(ValueError, match="does not fit this model"):  # what the config alone builds
        vaelab.restore_model(build_vae(**CONFIG, hidden_dim=400), vaelab.load_checkpoint(path))
    capsys.readouterr()

    model, state = load_model(path)

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "hidden_dim=400" in lines[0] and "hidden_dim=256" in lines[0], lines
    assert state["config"]["hidden_dim"] == 400 and model.config.hidden_dim == 256
    assert model.encoder.conv[-2].out_features == 256 and model.decoder.dense[0].out_features == 256
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(1))
    for got, want in zip(_outputs(model, x), _outputs(old, x), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


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
