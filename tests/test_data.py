"""MNIST loading: shapes, ranges, binarizations, missing data, a download that hangs, devices.

The tests that read MNIST are marked slow (``make test-fast`` leaves them out)."""

import socket
import threading
import time

import pytest
import torch

import vaelab
from vaelab import ImageData, load_mnist
from vaelab.utils.messages import cli_message


@pytest.fixture(scope="module")
def test_split():
    return load_mnist("test", download=False, limit=2000)


@pytest.mark.slow
def test_mnist_test_split_shapes_and_range(test_split):
    assert test_split.images.shape == (2000, 784)
    assert test_split.images.dtype == torch.float32
    assert 0.0 == test_split.images.min() and test_split.images.max() == 1.0
    assert set(test_split.labels.unique().tolist()) == set(range(10))


@pytest.mark.slow
def test_full_splits_have_the_published_sizes():
    assert len(load_mnist("train", download=False)) == 60_000
    assert len(load_mnist("test", download=False)) == 10_000


@pytest.mark.slow
def test_dynamic_binarization_draws_fresh_binary_images(test_split):
    data = ImageData(test_split.images[:200], test_split.labels[:200], binarization="dynamic")
    g = torch.Generator().manual_seed(0)
    first = next(data.batches(200, shuffle=False, generator=g))
    second = next(data.batches(200, shuffle=False, generator=g))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
    # E[x] = pixel intensity: average of many draws approaches the grey image
    draws = torch.stack([next(data.batches(200, shuffle=False, generator=g)) for _ in range(400)])
    assert (draws.mean(0) - data.images).abs().max() < 0.15


@pytest.mark.slow
def test_static_binarization_is_fixed_by_the_seed():
    a = load_mnist("test", binarization="static", seed=3, limit=100, download=False)
    b = load_mnist("test", binarization="static", seed=3, limit=100, download=False)
    c = load_mnist("test", binarization="static", seed=4, limit=100, download=False)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert torch.equal(next(a.batches(100, shuffle=False)), a.images)


@pytest.mark.slow
def test_batches_cover_every_example_once(test_split):
    data = test_split.take(1000)
    seen = torch.cat(list(data.batches(128, generator=torch.Generator().manual_seed(0))))
    assert seen.shape == (1000, 784)
    assert torch.equal(seen.sum(0), data.images.sum(0)) or torch.allclose(seen.sum(0), data.images.sum(0))


def test_missing_data_is_a_clear_error_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="VAELAB_DATA") as info:
        load_mnist("test", root=tmp_path, download=False)
    # the command line says it in its own terms
    assert "--data-root" in cli_message(info.value) and "download=True" not in cli_message(info.value)


@pytest.mark.parametrize(
    "dataset, load, message",
    [
        ("MNIST", load_mnist, r"could not download MNIST .*timed out.*at most 1 s.*VAELAB_DATA"),
        (
            "FashionMNIST",
            vaelab.load_fashion_mnist,
            r"could not download Fashion-MNIST .*at most 1 s.*FashionMNIST/raw",
        ),
    ],
)
def test_a_download_from_a_server_that_never_answers_ends_with_the_fix(tmp_path, monkeypatch, dataset, load, message):
    """A server that accepts the connection and then says nothing: torchvision alone waits forever."""
    import torchvision.datasets

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept_and_stay_silent():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    mirrors = [f"http://127.0.0.1:{server.getsockname()[1]}/"]
    monkeypatch.setattr(getattr(torchvision.datasets, dataset), "mirrors", mirrors)
    monkeypatch.setenv("VAELAB_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.delenv(vaelab.DATA_ENV, raising=False)
    tic = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match=message):
            load("test", root=tmp_path, download=True)
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        server.close()
    assert accepted, "the download never reached the silent server"
    assert time.monotonic() - tic < 30
    assert socket.getdefaulttimeout() is None  # the process-wide default is restored


def test_a_device_this_machine_lacks_is_a_clear_error(tmp_path):
    device = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    with pytest.raises(ValueError, match=r"(no CUDA GPU is available|does not exist).*'cpu'"):
        load_mnist("test", root=tmp_path, device=device, download=False)


def test_environment_variable_selects_the_root(monkeypatch, tmp_path):
    monkeypatch.setenv(vaelab.DATA_ENV, str(tmp_path))
    assert vaelab.data_root() == tmp_path
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_mnist("test")  # VAELAB_DATA set: never downloads
