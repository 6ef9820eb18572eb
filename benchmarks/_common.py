"""Shared pieces of the benchmarks: the textbook baseline, GEMM-rate probes, timing, machine
description, tables and JSON output.

The baseline is the classic MNIST VAE of pytorch/examples (``vae/main.py``): a 784-400-20 MLP
with ReLU, a sigmoid decoder, binary cross-entropy summed over pixels plus the closed-form KL,
Adam(1e-3), batch 128, and a torchvision ``MNIST`` dataset with ``ToTensor()`` read through a
``DataLoader``. It is written out here, not imported from vaelab, so that it stays a fixed
yardstick whatever vaelab does.

FLOP counts are for the dense layers only (one multiply-add = 2 FLOP). For an MLP whose layers
have m_l multiply-adds per image, forward + backward costs 2 * (3 * sum_l m_l - m_1) per image:
the backward pass needs the weight gradient of every layer and the input gradient of every layer
but the first (the images need no gradient). For 784-400-20 that is 3.28 MFLOP per image, about
197 GFLOP per 60k-image epoch.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
PIXELS, HIDDEN, LATENT = 784, 400, 20
BATCH = 128


# --------------------------------------------------------------------------- the baseline
class ClassicVAE(nn.Module):
    """pytorch/examples vae/main.py, unchanged in substance."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(PIXELS, HIDDEN)
        self.fc21 = nn.Linear(HIDDEN, LATENT)
        self.fc22 = nn.Linear(HIDDEN, LATENT)
        self.fc3 = nn.Linear(LATENT, HIDDEN)
        self.fc4 = nn.Linear(HIDDEN, PIXELS)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x.view(-1, PIXELS))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def classic_loss(recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Reconstruction + KL divergence summed over all elements and the batch (the textbook loss)."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, PIXELS), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def classic_loader(
    root: Path, train: bool, limit: int | None, device: torch.device, shuffle: bool = True
) -> torch.utils.data.DataLoader:
    """torchvision MNIST + ToTensor through a DataLoader, as in the textbook script."""
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(str(root), train=train, download=False, transform=transforms.ToTensor())
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    extra = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=shuffle, **extra)


def classic_train_epoch(model: ClassicVAE, loader, optimizer, device: torch.device) -> float:
    """One textbook epoch; returns the mean training loss per image."""
    model.train()
    train_loss = 0.0
    for data, _ in loader:
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = classic_loss(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return train_loss / len(loader.dataset)


# --------------------------------------------------------------------------- FLOP counts
def mlp_train_flops(n_images: int, dims: Sequence[int] = (PIXELS, HIDDEN, 2 * LATENT, LATENT, HIDDEN, PIXELS)) -> float:
    """Dense-layer FLOP of one forward + backward pass over n_images for the VAE MLP.

    dims lists the layers as (in, out) pairs flattened: encoder 784->400, 400->2*20 (mu and
    logvar), decoder 20->400, 400->784.
    """
    macs = [dims[i] * dims[i + 1] for i in (0, 1, 3, 4)]
    return 2.0 * n_images * (3 * sum(macs) - macs[0])


def decoder_flops(n_evaluations: int) -> float:
    """Dense-layer FLOP of the decoder (20->400->784) for n_evaluations latent codes."""
    return 2.0 * n_evaluations * (LATENT * HIDDEN + HIDDEN * PIXELS)


# --------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of fn(), with the device synchronized before and after."""
    sync(device)
    tic = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - tic


def repeat_rate(
    fn: Callable[[], object], flops: float, device: torch.device, seconds: float = 0.3, repeats: int = 5
) -> float:
    """FLOP/s of fn (which does ``flops`` FLOP): median over ``repeats`` runs of ~``seconds``."""

    def run(calls: int) -> float:
        sync(device)
        tic = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        return time.perf_counter() - tic

    run(1)
    calls = 1
    while run(calls) < seconds / 4:
        calls *= 2
    return statistics.median(flops * calls / run(calls) for _ in range(repeats))


def train_gemm_rate(device: torch.device, batch: int = BATCH) -> float:
    """The machine's float32 matmul rate (FLOP/s) on exactly the 11 GEMMs of one training step of
    the 784-400-20 VAE at this batch size (forward, weight gradients, input gradients)."""
    g = torch.Generator(device=device).manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, generator=g)

    x, h, z = r(batch, PIXELS), r(batch, HIDDEN), r(batch, LATENT)  # layer inputs
    w1, wh, w3, w4 = r(HIDDEN, PIXELS), r(2 * LATENT, HIDDEN), r(HIDDEN, LATENT), r(PIXELS, HIDDEN)  # weights
    g_out, g_h, g_head = r(batch, PIXELS), r(batch, HIDDEN), r(batch, 2 * LATENT)  # output gradients

    def step() -> None:
        torch.mm(x, w1.t()), torch.mm(h, wh.t()), torch.mm(z, w3.t()), torch.mm(h, w4.t())  # forward
        torch.mm(g_out.t(), h), torch.mm(g_out, w4)  # decoder output layer: dW, dh
        torch.mm(g_h.t(), z), torch.mm(g_h, w3)  # decoder hidden layer: dW, dz
        torch.mm(g_head.t(), h), torch.mm(g_head, wh)  # encoder head: dW, dh
        torch.mm(g_h.t(), x)  # encoder hidden layer: dW only

    return repeat_rate(step, mlp_train_flops(batch), device)


def decoder_gemm_rate(device: torch.device, rows: Sequence[int] = (1024, 4096, 16384)) -> float:
    """float32 matmul rate (FLOP/s) of the decoder's two GEMMs (20->400, 400->784); the best over
    the given row counts, so the bound it gives is the strictest of them."""
    g = torch.Generator(device=device).manual_seed(0)
    w3 = torch.randn(HIDDEN, LATENT, device=device, generator=g)
    w4 = torch.randn(PIXELS, HIDDEN, device=device, generator=g)
    best = 0.0
    for m in sorted(set(rows)):
        z = torch.randn(m, LATENT, device=device, generator=g)
        h = torch.randn(m, HIDDEN, device=device, generator=g)
        best = max(
            best, repeat_rate(lambda z=z, h=h: (torch.mm(z, w3.t()), torch.mm(h, w4.t())), decoder_flops(m), device)
        )
    return best


# --------------------------------------------------------------------------- a training step's bound
def step_bound_seconds(model: nn.Module, batch: int, device: torch.device) -> float:
    """Seconds of the work a training step of ``model`` cannot avoid at this batch size: the matrix
    products of its Linear layers, forward (x W^T), weight gradients (g^T x) and input gradients (g W,
    every layer but the first, whose input is the data), on random tensors of the same shapes, plus
    one Adam update of its parameters by fit's own optimizer (fused where torch has a fused Adam)."""
    from vaelab.train.training import make_optimizer

    g = torch.Generator(device=device).manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, generator=g)

    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    gemms = [(r(batch, m.in_features), r(m.out_features, m.in_features), r(batch, m.out_features)) for m in layers]
    twin = copy.deepcopy(model).to(device)  # the optimizer updates a copy, never the model
    optimizer = make_optimizer(twin, 1e-3)
    for p in twin.parameters():
        p.grad = torch.randn_like(p) * 1e-3

    def step() -> None:
        for i, (x, w, g_out) in enumerate(gemms):
            torch.mm(x, w.t()), torch.mm(g_out.t(), x)  # forward, weight gradient
            if i:
                torch.mm(g_out, w)  # input gradient
        optimizer.step()

    return 1.0 / repeat_rate(step, 1.0, device, seconds=0.2, repeats=3)


# --------------------------------------------------------------------------- machine, CLI, output
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the SIMD kernels ATen dispatches to
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]  # 1, 5, 15 minutes
    return info


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--quick", action="store_true", help="a few steps and small k: checks the script, not the machine")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file to write (default results/NAME.json; results/quick/NAME.json with --quick)",
    )
    return p


def setup(args: argparse.Namespace) -> torch.device:
    import vaelab

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("VAELAB_QUIET", "1")
    device = vaelab.setup(seed=args.seed, device=args.device)
    args.machine_at_start = machine(device)  # the load average before the benchmark ran
    return device


def figure(key: str, label: str, value: float, target: float | None, unit: str = "x") -> dict:
    """One reported figure; ``met`` says whether value <= target (all targets are upper bounds)."""
    return {
        "key": key,
        "label": label,
        "value": value,
        "target": target,
        "unit": unit,
        "met": None if target is None else bool(value <= target),
    }


def print_table(title: str, figures: list[dict]) -> None:
    width = max(len(f["label"]) for f in figures)
    print(f"\n{title}")
    print(f"{'figure'.ljust(width)}  {'value':>10}  {'target':>8}  met")
    for f in figures:
        target = "" if f["target"] is None else f"<= {f['target']:g}"
        met = "" if f["met"] is None else ("yes" if f["met"] else "NO")
        print(f"{f['label'].ljust(width)}  {f['value']:>10.4g}  {target:>8}  {met}")


def write_results(
    name: str,
    args: argparse.Namespace,
    device: torch.device,
    figures: list[dict],
    measurements: dict,
    settings: dict,
    command: str,
    started: float,
) -> Path:
    out = args.out or (RESULTS / "quick" / f"{name}.json" if args.quick else RESULTS / f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "quick": bool(args.quick),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": getattr(args, "machine_at_start", None) or machine(device),
        "settings": settings,
        "figures": figures,
        "measurements": measurements,
    }
    if hasattr(os, "getloadavg"):
        record["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    try:
        import resource

        record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    except ImportError:  # Windows
        pass
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nwrote {out}")
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
