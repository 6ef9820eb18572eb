"""Command line: ``python -m vaelab train ...`` and ``python -m vaelab evaluate CHECKPOINT``.

Every argument and the output folder are checked before any data is loaded or any folder is
created; a mistake or a fault ends in one line on stderr, never a traceback. Exit status: 0 done
(also "nothing left to train"), 1 a failure (damaged files, diverged training, missing data),
2 a usage error (bad arguments, an --out that holds another run or files vaelab did not write,
an --out in use by another run), 130 interrupted by Ctrl-C (the last finished epoch is kept).

One lazy import: matplotlib (through ``vaelab.plots``) is imported only by ``train``, after it
chooses the Agg backend, so that ``evaluate`` and a usage error never load it.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

import torch

from . import __version__, data
from .core.validation import check_integer, check_number
from .estimators.evaluation import evaluate_elbo, log_likelihood_estimate
from .models.config import ARCHITECTURES, GREY_LIKELIHOODS, LIKELIHOODS, PRIORS, VAEConfig, build_vae
from .models.dequantization import bits_per_dim
from .train.checkpoint import atomic_write, load_model
from .train.runs import (
    RunLockedError,
    RunMismatchError,
    TrainingSettings,
    checkpoint_lock,
    compare_runs,
    describe_run,
    pixels_fingerprint,
    read_resumable,
)
from .train.training import ELBO, fit
from .utils.devices import resolve_device
from .utils.messages import cli_message

__all__ = ["main"]

PROG = "python -m vaelab"
MNIST_TRAIN_SIZE, MNIST_TEST_SIZE = 60_000, 10_000
OUTPUTS = ("model.ckpt", "history.json", "samples.png")
LEVEL_LIKELIHOODS = LIKELIHOODS[3:]  # probabilities of the 256 levels (or bounds on them): bits per dimension
DATASETS = {"mnist": "load_mnist", "fashion_mnist": "load_fashion_mnist"}


class UsageError(Exception):
    """A mistake in the command: exit status 2."""


# ----------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + error
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _checked(kind: type, **bounds: Any):
    """An argparse type: the text as ``kind`` (int or float), checked by vaelab's own argument check
    (``check_integer`` or ``check_number``, the ones fit and VAEConfig use), its message in flag terms."""

    def parse(text: str) -> Any:

        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        try:
            return (check_integer if kind is int else check_number)("value", value, **bounds)
        except (TypeError, ValueError) as err:
            expected = str(err).split(" must be ", 1)[1].split(", got ")[0]
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}") from None

    return parse


def _finite(positive: bool):
    return _checked(float, low=0.0, low_inclusive=not positive)


_positive, _seed = _checked(int, low=1), _checked(int, low=0, high=2**64 - 1)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    train = sub.add_parser(
        "train",
        formatter_class=fmt,
        help="train a VAE on MNIST and write a checkpoint, history and figure",
        description="Train a VAE on MNIST into --out: model.ckpt (after every epoch; the one "
        "before is kept as model.ckpt.prev), history.json and samples.png. "
        "Rerunning the same command continues the run.",
    )
    train.add_argument("--latent-dim", type=_positive, default=20, help="dimension of the latent z")
    train.add_argument("--hidden-dim", type=_positive, default=400, help="width of the hidden layers")
    train.add_argument("--architecture", choices=ARCHITECTURES, default="mlp", help="encoder and decoder kind")
    train.add_argument(
        "--likelihood",
        choices=LIKELIHOODS,
        default="bernoulli",
        help="p(x|z): Bernoulli logits, Gaussian means, or a likelihood of grey pixels (chapter 14: "
        "continuous Bernoulli, dequantized densities, discretized logistic and its mixture)",
    )
    train.add_argument(
        "--mixture-components", type=_positive, default=5, help="logistics per pixel of --likelihood logistic_mixture"
    )
    train.add_argument(
        "--dataset", choices=list(DATASETS), default="mnist", help="the images: MNIST digits or Fashion-MNIST clothes"
    )
    train.add_argument(
        "--prior",
        choices=PRIORS,
        default="standard_normal",
        help="p(z): N(0, I), a learnable Gaussian N(m, diag(s^2)), a learnable mixture of 10 Gaussians, or the "
        "VampPrior (500 learned pseudo-inputs)",
    )
    train.add_argument(
        "--layers",
        type=int,
        choices=[1, 2],
        default=1,
        help="stochastic layers: 2 is Burda et al.'s 784-(200-200)-100-(100-100)-50 tanh model (p(z2) = N(0, I))",
    )
    train.add_argument(
        "--binarization",
        choices=["auto", "none", "dynamic", "static"],
        default="auto",
        help="how pixels are binarized; auto: dynamic for bernoulli, none (grey pixels) for the others",
    )
    train.add_argument(
        "--epochs",
        type=_positive,
        default=10,
        help="total epochs of the run (a resumed run trains only the missing ones)",
    )
    train.add_argument("--batch-size", type=_positive, default=128, help="images per Adam step")
    train.add_argument("--lr", type=_finite(positive=True), default=1e-3, help="Adam learning rate")
    train.add_argument(
        "--beta", type=_finite(positive=False), default=1.0, help="weight of the KL term (beta-VAE; 1 is the ELBO)"
    )
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    train.add_argument("--seed", type=_seed, default=0, help="seed of the weights, shuffles and binarization")
    train.add_argument(
        "--limit", type=_positive, default=None, help="use only the first N training images (not given: all 60000)"
    )
    train.add_argument(
        "--data-root",
        default=None,
        help="folder holding MNIST/raw or FashionMNIST/raw (not given: $VAELAB_DATA, else ~/.cache/vaelab, "
        "downloading there)",
    )
    train.add_argument("--out", default="runs/default", help="output folder")
    train.add_argument(
        "--restart",
        action="store_true",
        help="start over instead of continuing the run in --out (its files are replaced)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="allow replacing model.ckpt, history.json or samples.png in --out that vaelab did not write",
    )

    evaluate = sub.add_parser(
        "evaluate", formatter_class=fmt, help="test ELBO and importance-weighted log-likelihood of a checkpoint"
    )
    evaluate.add_argument("checkpoint", help="a model.ckpt written by train")
    evaluate.add_argument("--k", type=_positive, default=5000, help="importance samples per image")
    evaluate.add_argument("--batch-size", type=_positive, default=100, help="images per batch of the estimate")
    evaluate.add_argument(
        "--limit", type=_positive, default=None, help="use only the first N test images (not given: all 10000)"
    )
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    evaluate.add_argument(
        "--data-root",
        default=None,
        help="folder holding MNIST/raw or FashionMNIST/raw (not given: $VAELAB_DATA, else ~/.cache/vaelab)",
    )
    evaluate.add_argument(
        "--dataset",
        choices=["auto", *DATASETS],
        default="auto",
        help="the test images; auto: the data set the checkpoint was trained on (recognized by its test pixels)",
    )
    evaluate.add_argument("--seed", type=_seed, default=0, help="seed of the test binarization and the samples")
    return parser


# ----------------------------------------------------------------------------- the output folder


def _check_out_folder(out: Path, overwrite: bool) -> None:
    """Before anything is loaded or created: --out must be (or become) a writable folder whose
    files of our names are vaelab's own (or --overwrite)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; choose another --out.")
    if not out.exists():
        parent = out.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"--out {out} cannot be created: {parent} is a file; choose another --out.")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"--out {out} cannot be created: {parent} is not writable; choose another --out.")
        return
    try:  # a real write (os.access says yes to root on a read-only file system)
        fd, probe = tempfile.mkstemp(prefix=".vaelab-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"--out {out} is not writable ({err.strerror}); choose another --out.") from None
    for name in OUTPUTS:
        if (out / name).exists() and not (out / name).is_file():
            raise UsageError(
                f"{out / name} is a folder, but train writes a file there; move it away or choose another --out."
            )
    present = [name for name in OUTPUTS if (out / name).exists()]
    if present and not overwrite and not _is_vaelab_folder(out):
        raise UsageError(
            f"--out {out} already holds {', '.join(present)}, which vaelab did not write; choose "
            "another --out, or add --overwrite to replace them."
        )


def _is_vaelab_folder(out: Path) -> bool:
    """A folder vaelab trained into: its lock file, or a checkpoint with vaelab's marker."""
    if (out / ".model.ckpt.lock").exists():
        return True
    try:
        with open(out / "model.ckpt", "rb") as f:
            return b"vaelab-checkpoint" in f.read(1 << 20)
    except OSError:
        return False


# ----------------------------------------------------------------------------- train


_FLAGS = {
    "train_size": "--limit",
    "binarization": "--binarization",
    "seed": "--seed",
    "lr": "--lr",
    "batch_size": "--batch-size",
    "beta": "--beta",
    "model.latent_dim": "--latent-dim",
    "model.hidden_dim": "--hidden-dim",
    "model.architecture": "--architecture",
    "model.likelihood": "--likelihood",
    "model.prior": "--prior",
    "model.layers": "--layers",
    "model.mixture_components": "--mixture-components",
}


def _flag(key: str, value: Any) -> str:
    if key == "train_size":
        return f"--limit {value}" if value != MNIST_TRAIN_SIZE else f"all {value} images (no --limit)"
    if key in _FLAGS:
        return f"{_FLAGS[key]} {value}"
    shown = f"sha256:{value}" if key.endswith("_pixels") else repr(value)
    return f"{key}={shown}"


def _mismatch_message(path: Path, differences: list[tuple[str, Any, Any]]) -> str:
    listing = "; ".join(f"{_flag(key, old)} then, {_flag(key, new)} now" for key, old, new in differences)
    return (
        f"{path} holds another run ({listing}); rerun with the settings it was trained with to continue it, "
        f"add --restart to start over in {path.parent}, or choose another --out."
    )


def _cli_identity(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    """What the command line alone says about the run (compared before any data is loaded): fit's own
    description of a run (``describe_run``) without the pixels' fingerprints, which need the data."""

    settings = TrainingSettings(
        lr=args.lr, batch_size=args.batch_size, seed=args.seed, objective=ELBO(beta=args.beta).settings()
    )
    return describe_run(
        config.to_dict(),
        "float32",
        settings,
        train_size=min(args.limit or MNIST_TRAIN_SIZE, MNIST_TRAIN_SIZE),
        binarization=args.binarization,
        test_size=MNIST_TEST_SIZE,
    )


def _device(name: str) -> Any:

    try:
        return resolve_device(name)
    except ValueError as err:
        raise UsageError(cli_message(err)) from None


def _checked_layers(args: argparse.Namespace) -> int:
    """--layers, with the flags the two-layer model fixes (Burda et al.'s sizes, p(z2) = N(0, I))."""
    if args.layers == 2:
        fixed = {"--architecture": (args.architecture, "mlp"), "--prior": (args.prior, "standard_normal")}
        fixed.update({"--latent-dim": (args.latent_dim, 20), "--hidden-dim": (args.hidden_dim, 400)})
        given = [f"{flag} {value}" for flag, (value, default) in fixed.items() if value != default]
        if given:
            raise UsageError(
                f"--layers 2 is Burda et al.'s two-layer MLP with fixed sizes (784-200-200-100, 100-100-100-50) "
                f"and p(z2) = N(0, I), so {', '.join(given)} does not apply; leave those flags out, or use --layers 1."
            )
    return args.layers


def _train(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser()
    if args.binarization == "auto":
        args.binarization = "dynamic" if args.likelihood == "bernoulli" else "none"
    if args.likelihood in GREY_LIKELIHOODS and args.binarization != "none":
        raise UsageError(
            f"--likelihood {args.likelihood} is a model of grey pixels (the 256 levels k/255), but "
            f"--binarization {args.binarization} makes every pixel 0 or 1; use --binarization none (or auto), "
            "or --likelihood bernoulli for binarized images."
        )
    device = _device(args.device)
    config = VAEConfig(
        latent_dim=args.latent_dim,
        hidden_dim=args.hidden_dim,
        architecture=args.architecture,
        likelihood=args.likelihood,
        prior=args.prior,
        mixture_components=args.mixture_components,
        layers=_checked_layers(args),
    )
    _check_out_folder(out, args.overwrite)
    checkpoint = out / "model.ckpt"
    with ExitStack() as locked:
        if out.is_dir():  # another run in --out is found before any data is loaded
            locked.enter_context(checkpoint_lock(checkpoint))
        if not args.restart and _nothing_left_to_train(args, config, checkpoint):
            return 0
        return _train_and_write(args, config, device, out, locked)


def _nothing_left_to_train(args: argparse.Namespace, config: Any, checkpoint: Path) -> bool:
    """Compare the run in --out with the command's flags (before any data is loaded): a mismatch
    or fewer --epochs than it holds is a usage error; as many --epochs is nothing to do."""

    found = read_resumable(checkpoint)
    if found is None:
        return False
    state, source = found
    differences = compare_runs(state["run"], _cli_identity(args, config))
    if differences:
        raise UsageError(_mismatch_message(source, differences))
    epoch = state["epoch"]
    if epoch > args.epochs:
        raise UsageError(
            f"{source} already holds {epoch} epochs, more than --epochs {args.epochs}; pass --epochs "
            f"{epoch} or more to continue it, or add --restart to start over."
        )
    if epoch < args.epochs:
        return False
    h = state["history"]
    print(
        f"nothing left to train: {source} already holds {epoch} epochs (train ELBO {h['train_elbo'][-1]:.2f}, "
        f"test ELBO {h['test_elbo'][-1]:.2f} nats per image after epoch {epoch}); pass a larger --epochs to "
        "train on, or add --restart to start over."
    )
    return True


def _train_and_write(args: argparse.Namespace, config: Any, device: Any, out: Path, locked: Any) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .plots import image_grid  # lazy: after the Agg backend is chosen (see the module docstring)

    checkpoint = out / "model.ckpt"
    load = getattr(data, DATASETS[args.dataset])
    train = load("train", args.data_root, args.binarization, device, limit=args.limit, seed=args.seed)
    test = load("test", args.data_root, args.binarization, device, seed=args.seed)
    torch.manual_seed(args.seed)
    model = build_vae(config)
    out.mkdir(parents=True, exist_ok=True)
    locked.enter_context(checkpoint_lock(checkpoint))
    if args.restart and checkpoint.exists():
        print(f"--restart: starting over in {out}; the earlier run's checkpoint is replaced", file=sys.stderr)
    history = fit(
        model,
        train,
        test,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        beta=args.beta,
        device=device,
        seed=args.seed,
        checkpoint=checkpoint,
        resume=not args.restart,
    )
    atomic_write(out / "history.json", json.dumps(history.to_json(), indent=1, allow_nan=False).encode())
    x = test.fixed_binarization(args.seed).images[:10] if args.binarization == "dynamic" else test.images[:10]
    images = torch.cat([model.sample(20), x, model.reconstruct(x)])
    fig = image_grid(images, nrow=10, title="Samples (rows 1-2), test images (3), reconstructions (4)")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    atomic_write(out / "samples.png", png.getvalue())
    print(
        f"epochs: {len(history)}  train ELBO: {history.train_elbo[-1]:.2f}  "
        f"test ELBO: {history.test_elbo[-1]:.2f} nats per image (summed over pixels)"
    )
    print(f"wrote {checkpoint}, {out / 'history.json'}, {out / 'samples.png'}")
    return 0


# ----------------------------------------------------------------------------- evaluate


def _evaluate(args: argparse.Namespace) -> int:

    device = _device(args.device)
    path = Path(args.checkpoint).expanduser()
    if path.is_dir():
        hint = f" (e.g. {path / 'model.ckpt'})" if (path / "model.ckpt").is_file() else ""
        raise UsageError(f"{path} is a folder; pass the checkpoint file inside it{hint}.")
    if not path.is_file():
        raise UsageError(
            f"checkpoint {path} does not exist; check the path, or train first with {PROG} train --out FOLDER."
        )
    model, state = load_model(path, device)
    args.device_resolved = device
    binarization = state.get("run", {}).get("binarization", "none")
    conventions = {
        "none": "grey pixels",
        "dynamic": f"test set binarized once with seed {args.seed} (model trained on dynamic binarization)",
        "static": f"statically binarized test set (seed {args.seed})",
    }
    if binarization not in conventions:
        raise ValueError(
            f"{path} records the binarization {binarization!r}, which this vaelab does not know "
            f"(known: {', '.join(conventions)}); it was not written by this version of vaelab."
        )

    dataset, test = _test_set(path, state, args)
    if args.limit is not None:
        test = test.take(min(args.limit, len(test)))
    if binarization in ("dynamic", "static"):
        test = test.fixed_binarization(args.seed)
    dtype = next(model.parameters()).dtype  # a float64 checkpoint is evaluated in float64
    test = dataclasses.replace(test, images=test.images.to(dtype))
    torch.manual_seed(args.seed)
    test_elbo = evaluate_elbo(model, test)
    log_px = (
        log_likelihood_estimate(model, test.images, k=args.k, batch_size=args.batch_size, progress=None).mean().item()
    )
    if not (math.isfinite(test_elbo) and math.isfinite(log_px)):
        raise ValueError(
            f"{path} gives a test ELBO of {test_elbo} and log p(x) of {log_px}: the model is not "
            "usable; evaluate an earlier checkpoint (model.ckpt.prev) or train again."
        )
    print(f"test images: {len(test)} of {dataset}  ({conventions[binarization]})")
    print(f"test ELBO:                {test_elbo:.2f} nats per image")
    print(f"log p(x) estimate (k={args.k}): {log_px:.2f} nats per image  (NLL {-log_px:.2f})")
    if model.config is not None and model.config.likelihood in LEVEL_LIKELIHOODS:
        print(f"bits per dimension:       {bits_per_dim(log_px, test.images.shape[1]):.4f}  (from the estimate)")
    return 0


def _test_set(path: Path, state: dict[str, Any], args: argparse.Namespace) -> tuple[str, Any]:
    """(data set name, its grey test set) for ``evaluate``: --dataset, or with auto the data set whose test
    pixels, as ``fit`` saw them, match the checkpoint's fingerprint (MNIST when it records none)."""

    run = state.get("run", {})
    candidates = list(DATASETS) if args.dataset == "auto" else [args.dataset]
    for name in candidates:
        test = getattr(data, DATASETS[name])("test", args.data_root, "none", args.device_resolved)
        if "test_pixels" not in run or args.dataset != "auto":
            return name, test
        seen = test.fixed_binarization(run.get("seed", 0)) if run.get("binarization") == "dynamic" else test
        if run.get("binarization") == "static":
            seen = test.fixed_binarization(run.get("seed", 0))
        if pixels_fingerprint(seen.images) == run["test_pixels"]:
            return name, test
    raise UsageError(
        f"{path} was trained on test images that are neither MNIST's nor Fashion-MNIST's (as found under the data "
        "root); pass --dataset mnist or --dataset fashion_mnist to evaluate it anyway, or check --data-root."
    )


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""

    args = _parser().parse_args(argv)
    try:
        return {"train": _train, "evaluate": _evaluate}[args.command](args)
    except KeyboardInterrupt:
        kept = ""
        if args.command == "train" and (Path(args.out).expanduser() / "model.ckpt").is_file():
            kept = (
                f"; the last finished epoch is kept in {Path(args.out).expanduser() / 'model.ckpt'}: rerun the "
                "same command to continue"
            )
        print(f"interrupted{kept}.", file=sys.stderr)
        return 130
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if isinstance(err, RunMismatchError):
            print(f"error: {_mismatch_message(err.path, err.differences)}", file=sys.stderr)
            return 2
        usage = isinstance(err, RunLockedError)
        if not isinstance(err, (ValueError, TypeError, OSError, RuntimeError)):
            raise  # a bug in vaelab: keep the traceback for the report
        print(f"error: {cli_message(err)}", file=sys.stderr)
        return 2 if usage else 1
