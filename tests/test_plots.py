"""Every plot returns a Figure that fits the page and carries a title and axis labels."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vaelab import History, build_vae, plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def model2d():
    torch.manual_seed(0)
    return build_vae(latent_dim=2, hidden_dim=16)


def test_image_grid_tiles_images():
    fig = plots.image_grid(torch.rand(12, 784), nrow=6, title="grid")
    assert fig.get_size_inches()[0] <= plots.MAX_WIDTH
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (2 * 29 + 1, 6 * 29 + 1)
    assert fig.axes[0].get_title() == "grid"


def test_training_curves_have_labels():
    h = History(
        {
            "epoch": [1, 2],
            "examples_seen": [10, 20],
            "train_elbo": [-200, -150],
            "train_reconstruction": [-190, -140],
            "train_kl": [10, 10],
            "test_elbo": [-190, -160],
            "seconds": [1, 1],
        }
    )
    fig = plots.plot_training_curves({"a": h, "b": h})
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert len(ax.lines) == 4


def test_latent_scatter_and_manifold():
    model = model2d()
    fig = plots.plot_latent_scatter(torch.randn(100, 2), torch.randint(0, 10, (100,)))
    assert fig.axes[0].get_xlabel() == "$z_1$"
    fig = plots.plot_latent_manifold(model, n=4)
    assert fig.axes[0].images[0].get_array().shape == (4 * 29 + 1, 4 * 29 + 1)
    with pytest.raises(ValueError, match="latent_dim"):
        plots.plot_latent_manifold(build_vae(latent_dim=3, hidden_dim=8))


def test_interpolation_strips():
    model = model2d()
    x = torch.rand(4, 784)
    fig = plots.plot_interpolation(model, [(x[0], x[1]), (x[2], x[3])], steps=5)
    assert fig.axes[0].images[0].get_array().shape == (2 * 29 + 1, 5 * 29 + 1)
    for f in map(plt.figure, plt.get_fignums()):
        assert f.get_size_inches()[0] <= plots.MAX_WIDTH
