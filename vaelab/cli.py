"""Command line: ``python -m vaelab train ...`` and ``python -m vaelab evaluate CHECKPOINT``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vaelab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a VAE on MNIST and write a checkpoint, history and figure")
    train.add_argument("--latent-dim", type=int, default=20)
    train.add_argument("--hidden-dim", type=int, default=400)
    train.add_argument("--architecture", choices=["mlp", "conv"], default="mlp")
    train.add_argument("--likelihood", choices=["bernoulli", "gaussian"], default="bernoulli")
    train.add_argument("--binarization", choices=["none", "dynamic", "static"], default=None,
                       help="default: dynamic for bernoulli, none for gaussian")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--beta", type=float, default=1.0)
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    train.add_argument("--data-root", default=None, help="folder holding MNIST/raw (default: $VAELAB_DATA)")
    train.add_argument("--out", default="runs/default", help="output folder")

    evaluate = sub.add_parser("evaluate", help="test ELBO and importance-weighted log-likelihood")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--k", type=int, default=5000, help="importance samples per image")
    evaluate.add_argument("--batch-size", type=int, default=100)
    evaluate.add_argument("--limit", type=int, default=None, help="use only the first N test images")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--data-root", default=None)
    evaluate.add_argument("--seed", type=int, default=0)
    return parser


def _train(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from .data import load_mnist
    from .devices import resolve_device
    from .model import build_vae
    from .plots import image_grid
    from .training import fit

    device = resolve_device(args.device)
    binarization = args.binarization or ("dynamic" if args.likelihood == "bernoulli" else "none")
    train = load_mnist("train", args.data_root, binarization, device, limit=args.limit, seed=args.seed)
    test = load_mnist("test", args.data_root, binarization, device, seed=args.seed)
    torch.manual_seed(args.seed)
    model = build_vae(latent_dim=args.latent_dim, hidden_dim=args.hidden_dim,
                      architecture=args.architecture, likelihood=args.likelihood)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    history = fit(model, train, test, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  beta=args.beta, device=device, seed=args.seed, checkpoint=out / "model.ckpt")
    (out / "history.json").write_text(json.dumps(history.to_dict(), indent=1))
    x = test.fixed_binarization(args.seed).images[:10] if binarization == "dynamic" else test.images[:10]
    images = torch.cat([model.sample(20), x, model.reconstruct(x)])
    fig = image_grid(images, nrow=10, title="Samples (rows 1-2), test images (3), reconstructions (4)")
    fig.savefig(out / "samples.png", dpi=100)
    print(f"epochs: {len(history)}  train ELBO: {history.train_elbo[-1]:.2f}  "
          f"test ELBO: {history.test_elbo[-1]:.2f} nats per image (summed over pixels)")
    print(f"wrote {out / 'model.ckpt'}, {out / 'history.json'}, {out / 'samples.png'}")


def _evaluate(args: argparse.Namespace) -> None:
    from .checkpoint import load_model
    from .data import load_mnist
    from .devices import resolve_device
    from .objectives import log_likelihood_estimate
    from .training import evaluate_elbo

    device = resolve_device(args.device)
    model, state = load_model(args.checkpoint, device)
    binarization = state.get("settings", {}).get("binarization", "none")
    test = load_mnist("test", args.data_root, "none", device, limit=args.limit)
    if binarization in ("dynamic", "static"):
        test = test.fixed_binarization(args.seed)
    torch.manual_seed(args.seed)
    test_elbo = evaluate_elbo(model, test)
    log_px = log_likelihood_estimate(model, test.images, k=args.k, batch_size=args.batch_size,
                                     progress=True).mean().item()
    convention = {"none": "grey pixels", "dynamic": "test set binarized once with seed "
                  f"{args.seed} (model trained on dynamic binarization)",
                  "static": f"statically binarized test set (seed {args.seed})"}[binarization]
    print(f"test images: {len(test)}  ({convention})")
    print(f"test ELBO:                {test_elbo:.2f} nats per image")
    print(f"log p(x) estimate (k={args.k}): {log_px:.2f} nats per image  (NLL {-log_px:.2f})")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"train": _train, "evaluate": _evaluate}[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
