"""Fashion-MNIST loading: the real files (when $VAELAB_DATA holds them) against the data set's published facts,
small fake IDX files for the reading path and the checksum errors, and a download that hangs."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest
import torch

import vaelab.data as data
from vaelab.data import DATA_ENV, FASHION_MNIST_SHA256, load_fashion_mnist, load_mnist, verify_fashion_mnist_files
from vaelab.models.discretized_logistic import DiscretizedLogisticLikelihood
from vaelab.utils.messages import cli_message


def real_root() -> Path:
    root = os.environ.get(DATA_ENV)
    if not root or not all((Path(root) / "FashionMNIST" / "raw" / f).is_file() for f in FASHION_MNIST_SHA256):
        pytest.skip(f"set {DATA_ENV} to a folder that contains FashionMNIST/raw to run the tests on the real files")
    return Path(root)


@pytest.mark.slow
def test_real_fashion_mnist_has_the_published_sizes_classes_and_mean():
    """Facts of the data set (Xiao et al. 2017): 60,000 + 10,000 images of 28 x 28, 6,000 and 1,000 of each of
    the 10 classes, first training labels 9 0 0 3 0 2 7 2 5 5, mean training pixel 72.94 of 255."""
    root = real_root()
    train = load_fashion_mnist("train", root=root, download=False)
    test = load_fashion_mnist("test", root=root, download=False)
    assert train.images.shape == (60_000, 784) and test.images.shape == (10_000, 784)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    mean_level = train.images.double().mean().item() * 255
    assert abs(mean_level - 72.94) < 0.005
    # grey 8-bit levels: the support of the likelihoods over 256 levels
    DiscretizedLogisticLikelihood().check_support("Fashion-MNIST", test.images)
    assert len(torch.unique(test.images)) == 256


def test_real_fashion_mnist_test_split_with_a_limit_and_binarization():
    root = real_root()
    grey = load_fashion_mnist("test", root=root, limit=100, download=False)
    assert grey.images.shape == (100, 784) and grey.binarization == "none"
    assert grey.images.min() == 0.0 and grey.images.max() == 1.0
    binary = load_fashion_mnist("test", root=root, limit=100, binarization="static", seed=1, download=False)
    assert set(binary.images.unique().tolist()) <= {0.0, 1.0}
    # not MNIST by mistake
    if (root / "MNIST" / "raw").is_dir():
        assert not torch.equal(load_mnist("test", root=root, limit=100, download=False).images, grey.images)


def write_idx(raw: Path, split: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """The IDX format of the original files: big-endian magic and sizes, then unsigned bytes."""
    image_file, label_file = {"train": data._SPLIT_FILES["train"], "test": data._SPLIT_FILES["test"]}[split]
    raw.mkdir(parents=True, exist_ok=True)
    n = len(images)
    (raw / image_file).write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + images.to(torch.uint8).numpy().tobytes())
    (raw / label_file).write_bytes(struct.pack(">II", 0x801, n) + labels.to(torch.uint8).numpy().tobytes())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fake_fashion_mnist_files_are_read_as_levels_over_255(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 28, 28), generator=g)
    labels = torch.tensor([9, 0, 0, 3, 1])
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx(raw, "test", images, labels)
    sums = dict(FASHION_MNIST_SHA256)
    sums.update({name: sha256(raw / name) for name in data._SPLIT_FILES["test"]})
    monkeypatch.setattr(
        data, "_DATASETS", {**data._DATASETS, "FashionMNIST": ("Fashion-MNIST", sums, "load_fashion_mnist")}
    )
    loaded = load_fashion_mnist("test", root=tmp_path, download=False)
    assert torch.equal(loaded.images, images.view(5, 784).float() / 255)
    assert torch.equal(loaded.labels, labels)


def test_corrupted_fashion_mnist_file_is_a_clear_error_with_the_fix(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx(raw, "test", torch.zeros(2, 28, 28), torch.zeros(2))  # the right names, not the published bytes
    with pytest.raises(
        RuntimeError, match=r"Fashion-MNIST file .*t10k-images.*SHA-256 mismatch.*load_fashion_mnist\(download=True\)"
    ) as info:
        load_fashion_mnist("test", root=tmp_path, download=False)
    assert "--data-root" in cli_message(info.value)
    with pytest.raises(RuntimeError, match="SHA-256 mismatch"):
        verify_fashion_mnist_files(tmp_path, "test")


def test_missing_fashion_mnist_is_a_clear_error_without_download(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"Fashion-MNIST was not found .*FashionMNIST/raw.*load_fashion_mnist\(download=True\)"
    ) as info:
        load_fashion_mnist("test", root=tmp_path, download=False)
    assert "--data-root" in cli_message(info.value) and "download=True" not in cli_message(info.value)
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST file .* is missing"):
        verify_fashion_mnist_files(tmp_path, "train")
    # MNIST's files do not stand in for Fashion-MNIST's (nor the other way round)
    write_idx(tmp_path / "MNIST" / "raw", "test", torch.zeros(1, 28, 28), torch.zeros(1))
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST was not found"):
        load_fashion_mnist("test", root=tmp_path, download=False)
