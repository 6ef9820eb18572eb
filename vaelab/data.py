"""MNIST and Fashion-MNIST as tensors: continuous [0, 1] pixels, dynamic or static binarization.

Where the data lives: the ``root`` argument, else the environment variable ``VAELAB_DATA``,
else ``~/.cache/vaelab``; under it ``MNIST/raw`` and ``FashionMNIST/raw`` (torchvision's layout).
With ``VAELAB_DATA`` set (CI, this book's development machines) the files must already be there
and nothing is downloaded; otherwise torchvision downloads them.
The four raw files of each data set are checked against their SHA-256 sums, so a truncated or
corrupted download is reported (with the fix) instead of producing silently wrong images.
Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, Zalando Research; MIT license) has MNIST's format
and sizes, with grey photographs of clothes: grey values that a Bernoulli likelihood cannot score.

The training fast path: the whole split is one (N, 784) float tensor on the training device and
batches are slices by a shuffled index; no per-image PIL conversion happens in the loop.
Binarization conventions (they change the reported numbers, see chapter 8):
* "none": grey pixels in [0, 1] (for a Gaussian likelihood; a Bernoulli "likelihood" on grey
  pixels is not a normalized likelihood);
* "dynamic": a fresh x ~ Bernoulli(pixel intensity) every time an image is used (Burda et al.);
* "static": one fixed Bernoulli draw per image with a seed.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .core.validation import check_positive_int, check_tensor
from .utils.devices import resolve_device
from .utils.messages import user_error

__all__ = [
    "ImageData",
    "check_dataset",
    "load_mnist",
    "data_root",
    "verify_mnist_files",
    "DATA_ENV",
    "MNIST_SHA256",
    "load_fashion_mnist",
    "verify_fashion_mnist_files",
    "FASHION_MNIST_SHA256",
]

DATA_ENV = "VAELAB_DATA"
# A download whose server stops answering fails after this many seconds per read (torchvision's
# own download has no timeout); $VAELAB_DOWNLOAD_TIMEOUT overrides it.
DOWNLOAD_TIMEOUT_S = 20.0
BINARIZATIONS = ("none", "dynamic", "static")

# Published SHA-256 sums of the uncompressed original MNIST files (torchvision's raw layout).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# SHA-256 sums of the uncompressed Fashion-MNIST files (torchvision's raw layout; the gzipped
# originals match the MD5 sums torchvision publishes).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# per data set: folder under the root (torchvision's class name), name in messages, sums, loader
_DATASETS = {
    "MNIST": ("MNIST", MNIST_SHA256, "load_mnist"),
    "FashionMNIST": ("Fashion-MNIST", FASHION_MNIST_SHA256, "load_fashion_mnist"),
}
_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_verified: set[tuple[str, int, int]] = set()


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds (or will hold) ``MNIST/raw`` and ``FashionMNIST/raw``: argument, $VAELAB_DATA,
    or ~/.cache/vaelab."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vaelab"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_mnist_files(root: str | os.PathLike, split: str = "train") -> None:
    """Raise a RuntimeError naming the file and the fix if a raw MNIST file of ``split`` is
    missing, truncated or corrupted (SHA-256 mismatch). Each file is hashed once per process."""
    _verify_files(root, split, "MNIST")


def verify_fashion_mnist_files(root: str | os.PathLike, split: str = "train") -> None:
    """``verify_mnist_files`` for the raw Fashion-MNIST files under ``root/FashionMNIST/raw``."""
    _verify_files(root, split, "FashionMNIST")


def _verify_files(root: str | os.PathLike, split: str, dataset: str) -> None:
    title, sums, loader = _DATASETS[dataset]
    raw = Path(root) / dataset / "raw"
    for name in _SPLIT_FILES[split]:
        path = raw / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{title} file {path} is missing; set {DATA_ENV} to the folder that contains "
                f"{dataset}/raw, or unset it to let torchvision download {title}."
            )
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key in _verified:
            continue
        if _sha256(path) != sums[name]:
            problem = f"{title} file {path} is corrupted or truncated (SHA-256 mismatch, {stat.st_size} bytes)"
            raise user_error(
                RuntimeError,
                f"{problem}; delete it and download again (unset {DATA_ENV} and call "
                f"{loader}(download=True)), or copy an intact file there.",
                f"{problem}; delete it and download again (unset {DATA_ENV} and drop --data-root), "
                "or copy an intact file there.",
            )
        _verified.add(key)


@dataclass
class ImageData:
    """A split held as tensors: images (N, D) float in [0, 1], labels (N,) int64.

    ``binarization`` says how ``batches`` presents the images: "none" and "static" return the
    stored pixels; "dynamic" draws x ~ Bernoulli(images) afresh for every batch.
    """

    images: torch.Tensor
    labels: torch.Tensor
    binarization: str = "none"
    image_shape: tuple[int, int] = (28, 28)

    def __post_init__(self) -> None:
        check_tensor("images", self.images, floating=True)
        if self.binarization not in BINARIZATIONS:
            raise ValueError(f"binarization must be one of {BINARIZATIONS}, got {self.binarization!r}.")
        if self.images.dim() != 2 or len(self.images) != len(self.labels):
            raise ValueError(
                f"images must be (N, D) with N == len(labels), got {tuple(self.images.shape)} "
                f"and {tuple(self.labels.shape)} labels."
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> ImageData:
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def take(self, n: int) -> ImageData:
        """The first n examples (a view, no copy)."""
        check_positive_int("n", n)
        return replace(self, images=self.images[:n], labels=self.labels[:n])

    def batches(
        self,
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        labels: bool = False,
    ) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (batch, D) tensors covering the split once; ``generator`` (on the data's
        device) drives the shuffle and the dynamic binarization, for reproducibility.
        labels=True yields (images, labels) pairs, labels (batch,) int64, for conditional models;
        the random draws are the same as without labels."""
        check_positive_int("batch_size", batch_size)
        n = len(self)
        order = torch.randperm(n, device=self.device, generator=generator) if shuffle else None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            if order is None:
                batch = self.images[start : start + batch_size]
            else:
                batch = self.images.index_select(0, order[start : start + batch_size])  # faster than [idx]
            if self.binarization == "dynamic":
                batch = torch.bernoulli(batch, generator=generator)
            if labels:
                y = (
                    self.labels[start : start + batch_size]
                    if order is None
                    else self.labels[order[start : start + batch_size]]
                )
                yield batch, y
            else:
                yield batch

    def fixed_binarization(self, seed: int = 0) -> ImageData:
        """A statically binarized copy (one Bernoulli draw per pixel with ``seed``)."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        images = torch.bernoulli(self.images, generator=generator)
        return replace(self, images=images, binarization="static")


def load_mnist(
    split: str = "train",
    root: str | os.PathLike | None = None,
    binarization: str = "none",
    device: torch.device | str = "cpu",
    limit: int | None = None,
    seed: int = 0,
    download: bool | None = None,
) -> ImageData:
    """MNIST ``split`` ("train": 60k, "test": 10k) as an ``ImageData`` on ``device``.

    binarization: "none" (grey [0, 1]), "dynamic" or "static" (seeded by ``seed``).
    limit: keep only the first ``limit`` images (quick runs). download: None means "download
    only when $VAELAB_DATA is not set"; True/False force it. Pixels are divided by 255.
    """
    return _load("MNIST", split, root, binarization, device, limit, seed, download)


def load_fashion_mnist(
    split: str = "train",
    root: str | os.PathLike | None = None,
    binarization: str = "none",
    device: torch.device | str = "cpu",
    limit: int | None = None,
    seed: int = 0,
    download: bool | None = None,
) -> ImageData:
    """Fashion-MNIST ``split`` ("train": 60k, "test": 10k; 28 x 28 grey images of 10 kinds of clothes)
    as an ``ImageData`` on ``device``, read from ``root/FashionMNIST/raw`` like ``load_mnist``.

    Pixels are the 8-bit levels k/255 in [0, 1]; keep binarization="none" (the default) for the
    likelihoods of grey pixels (``vaelab.models.pixel_levels`` lists them). The other arguments are
    ``load_mnist``'s. Fashion-MNIST is by Han Xiao, Kashif Rasul and Roland Vollgraf (Zalando
    Research, 2017), under the MIT license.
    """
    return _load("FashionMNIST", split, root, binarization, device, limit, seed, download)


def _load(
    dataset: str,
    split: str,
    root: str | os.PathLike | None,
    binarization: str,
    device: torch.device | str,
    limit: int | None,
    seed: int,
    download: bool | None,
) -> ImageData:
    title, _, loader = _DATASETS[dataset]
    if split not in _SPLIT_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if binarization not in BINARIZATIONS:
        raise ValueError(f"binarization must be one of {BINARIZATIONS}, got {binarization!r}.")
    if limit is not None:
        check_positive_int("limit", limit)
    device = resolve_device(device)
    folder = data_root(root)
    if download is None:
        download = root is None and not os.environ.get(DATA_ENV)
    raw = folder / dataset / "raw"
    if not all((raw / f).is_file() for f in _SPLIT_FILES[split]):
        if not download:
            raise user_error(
                FileNotFoundError,
                f"{title} was not found in {raw} and downloading is off; set {DATA_ENV} (or root=) "
                f"to the folder that contains {dataset}/raw, or call {loader}(download=True) with "
                "internet access.",
                f"{title} was not found in {raw}; point {DATA_ENV} (or --data-root) at the folder that "
                f"contains {dataset}/raw, or unset {DATA_ENV} and drop --data-root to download it.",
            )
        _download(folder, split, dataset)
    _verify_files(folder, split, dataset)

    # read the split's two files directly: torchvision's MNIST class insists on all four files
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images_file, labels_file = _SPLIT_FILES[split]
    images = read_image_file(str(raw / images_file))
    images = images.reshape(len(images), -1)
    labels = read_label_file(str(raw / labels_file))
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    data = ImageData(images.to(device=device, dtype=torch.float32).div_(255.0), labels.to(device))
    if binarization == "static":
        return data.fixed_binarization(seed)
    return replace(data, binarization=binarization)


def _download(folder: Path, split: str, dataset: str = "MNIST") -> None:
    """torchvision's download of ``dataset`` ("MNIST" or "FashionMNIST"), with every socket read
    bounded by DOWNLOAD_TIMEOUT_S seconds."""
    from torchvision import datasets

    title = _DATASETS[dataset][0]

    timeout = float(os.environ.get("VAELAB_DOWNLOAD_TIMEOUT", DOWNLOAD_TIMEOUT_S))
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torchvision's urlopen calls pass no timeout of their own
    try:
        getattr(datasets, dataset)(str(folder), train=(split == "train"), download=True)
    except Exception as err:  # network errors come in many types; all get the same advice
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise RuntimeError(
            f"could not download {title} into {folder} ({reason}; each read waits at most {timeout:g} s); "
            f"check the internet connection, or copy the four raw {title} files to "
            f"{folder / dataset / 'raw'} and set the environment variable {DATA_ENV} to {folder} "
            f"(e.g. export {DATA_ENV}={folder})."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def check_dataset(name: str, data: object, model: Any) -> None:
    """Raise a clear error unless ``data`` is a non-empty ImageData that fits ``model`` and lies
    in the support of its likelihood (``model.likelihood.check_support``: no NaN or Inf; [0, 1] for
    a Bernoulli likelihood)."""
    if not isinstance(data, ImageData):
        raise TypeError(
            f"{name} must be a vaelab.ImageData (from vaelab.load_mnist or "
            f"ImageData(images, labels)), got {type(data).__name__}."
        )
    if len(data) == 0:
        raise ValueError(f"{name} data is empty; pass at least one image.")
    expected = getattr(model.encoder, "input_dim", data.images.shape[1])
    if data.images.shape[1] != expected:
        raise ValueError(
            f"{name} images have {data.images.shape[1]} pixels but the model expects "
            f"{expected}; flatten images to (N, {expected})."
        )
    model.likelihood.check_support(f"{name} images", data.images)
