"""Training a VAE: Adam on the negative ELBO, with history, checkpoints, and guards.

``fit`` is the whole loop. Each epoch it shuffles the in-memory training tensor, takes Adam
steps on ``training_loss`` (the negative ELBO, or its beta / free-bits / warm-up variants), and
records train and test ELBO in nats per image. With ``checkpoint=`` it writes model, optimizer,
epoch, history and every RNG state atomically after each epoch, and resumes from that file, so
an interrupted run continues to the bit-identical result on CPU. A NaN or Inf loss stops
training with an error naming the epoch, the step and the last good checkpoint.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, restore_model, save_checkpoint
from .data import ImageData
from .devices import resolve_device
from .likelihoods import BernoulliLikelihood
from .model import VAE
from .objectives import elbo, training_loss
from .progress import progress_bar
from .validation import check_positive_int, check_unit_interval

__all__ = ["fit", "History", "NonFiniteLossError", "evaluate_elbo", "make_optimizer", "check_dataset"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf."""


@dataclass
class History:
    """Per-epoch record, all in nats per image (summed over pixels)."""

    epoch: list[int] = field(default_factory=list)
    examples_seen: list[int] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)
    train_reconstruction: list[float] = field(default_factory=list)
    train_kl: list[float] = field(default_factory=list)
    test_elbo: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, list]) -> History:
        return cls(**{k: list(v) for k, v in values.items()})

    def __len__(self) -> int:
        return len(self.epoch)


def make_optimizer(model: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam, fused into one kernel where this torch supports it on ``device`` (faster for small
    models: one update for all parameters instead of one per tensor)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr)


@torch.no_grad()
def evaluate_elbo(model: VAE, data: ImageData, batch_size: int = 1000) -> float:
    """Mean ELBO over ``data`` (one reparameterized sample, closed-form KL), nats per image."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=data.device)
    for x in data.batches(batch_size, shuffle=False):
        total += elbo(model, x, validate=False).elbo.sum()
    model.train(was_training)
    return total.item() / len(data)


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["data"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def fit(model: VAE, train: ImageData, test: ImageData | None = None, *, epochs: int = 10,
        batch_size: int = 128, lr: float = 1e-3, beta: float = 1.0, kl_warmup_epochs: float = 0.0,
        free_bits: float = 0.0, n_samples: int = 1, kl: str = "analytic",
        device: str | torch.device = "auto", seed: int = 0,
        checkpoint: str | os.PathLike | None = None, resume: bool = True,
        progress: bool | None = None, eval_batch_size: int = 1000) -> History:
    """Train ``model`` on ``train`` for ``epochs`` epochs with Adam(lr); returns the History.

    beta: weight of the KL term (beta-VAE). kl_warmup_epochs: beta rises linearly from 0 to
    beta over that many epochs (KL annealing). free_bits: nats per latent dimension below which
    the KL is not penalized. checkpoint: file written atomically after every epoch; with
    resume=True an existing file is loaded first and training continues from its epoch.
    progress: tqdm bar (None = on unless $CI or $VAELAB_QUIET is set).
    A test set binarized "dynamic" is fixed once (seed) so test ELBOs are comparable.
    """
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}.")
    if kl_warmup_epochs < 0:
        raise ValueError(f"kl_warmup_epochs must be >= 0, got {kl_warmup_epochs}.")
    device = resolve_device(device)
    model.to(device)
    check_dataset("train", train, model)
    train = train.to(device)
    if test is not None:
        check_dataset("test", test, model)
        test = test.to(device)
        if test.binarization == "dynamic":
            test = test.fixed_binarization(seed)

    optimizer = make_optimizer(model, lr, device)
    generator = torch.Generator(device=device)
    history = History()
    start_epoch = 0
    saved_epoch = None  # the epoch of the checkpoint file this run wrote or resumed from
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    settings = {"lr": lr, "batch_size": batch_size, "beta": beta, "seed": seed,
                "binarization": train.binarization, "free_bits": free_bits,
                "kl_warmup_epochs": kl_warmup_epochs, "n_samples": n_samples, "kl": kl}
    if checkpoint is not None and resume and checkpoint.exists():
        state = load_checkpoint(checkpoint, map_location=device)
        _check_same_settings(checkpoint, state.get("settings", {}), settings)
        restore_model(model, state)
        optimizer.load_state_dict(state["optimizer"])
        history = History.from_dict(state["history"])
        start_epoch = saved_epoch = state["epoch"]
        _set_rng_state(state["rng"], generator)
    else:
        torch.manual_seed(seed)
        generator.manual_seed(seed)

    steps_per_epoch = -(-len(train) // batch_size)
    warmup_steps = kl_warmup_epochs * steps_per_epoch
    # Checking isfinite costs a few small ops (and, on an accelerator, a host sync), so the per-step
    # losses are checked in blocks; the error still names the first bad step.
    check_every = 10 if device.type == "cpu" else 50
    bar = progress_bar(total=(epochs - start_epoch) * steps_per_epoch, unit="step", enabled=progress,
                       desc="training")
    model.train()
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            tic = time.perf_counter()
            record = torch.zeros(steps_per_epoch, 3, device=device)  # loss, sum of reconstruction, sum of kl
            checked = 0
            for step, x in enumerate(train.batches(batch_size, generator=generator)):
                done = (epoch - 1) * steps_per_epoch + step
                beta_now = beta * min(1.0, done / warmup_steps) if warmup_steps else beta
                optimizer.zero_grad(set_to_none=True)
                terms = elbo(model, x, n_samples=n_samples, kl=kl, validate=False)
                loss = training_loss(terms, beta_now, free_bits)
                loss.backward()
                optimizer.step()
                with torch.no_grad():  # one small kernel per statistic, written in place
                    torch.stack((loss, terms.reconstruction.sum(), terms.kl.sum()), out=record[step])
                if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
                    _check_finite(record[:, 0], checked, step + 1, epoch, checkpoint, saved_epoch, lr)
                    checked = step + 1
                bar.update(1)
            train_rec, train_kl = (record[:, 1:].sum(0) / len(train)).tolist()
            train_elbo = train_rec - train_kl
            history.epoch.append(epoch)
            history.examples_seen.append(epoch * len(train))
            history.train_elbo.append(train_elbo)
            history.train_reconstruction.append(train_rec)
            history.train_kl.append(train_kl)
            history.test_elbo.append(evaluate_elbo(model, test, eval_batch_size) if test is not None else float("nan"))
            history.seconds.append(time.perf_counter() - tic)
            bar.set_postfix(epoch=epoch, train_elbo=f"{train_elbo:.1f}", test_elbo=f"{history.test_elbo[-1]:.1f}")
            if checkpoint is not None:
                # a finite last loss does not prove the last Adam step left finite weights
                if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                    raise NonFiniteLossError(
                        f"the model's parameters became NaN or Inf at the end of epoch {epoch}; "
                        f"{_last_good(checkpoint, saved_epoch)} with a lower learning rate than lr={lr}.")
                save_checkpoint(checkpoint, {
                    "config": model.config.to_dict() if model.config else None,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "epoch": epoch, "history": history.to_dict(), "rng": _rng_state(generator),
                    "settings": settings,
                })
                saved_epoch = epoch
    finally:
        bar.close()
    return history


def _check_same_settings(checkpoint: Path, saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Resuming continues the saved run exactly, so its settings must be the saved ones."""
    changed = [f"{key}={saved[key]!r} in the file but {key}={value!r} now"
               for key, value in now.items() if key in saved and saved[key] != value]
    if changed:
        raise ValueError(
            f"cannot resume from {checkpoint}: it was written with other settings ({'; '.join(changed)}); "
            "pass the same settings to continue it, or resume=False or another checkpoint path to start over."
        )


def check_dataset(name: str, data: ImageData, model: VAE) -> None:
    """Raise a clear error unless ``data`` is a non-empty ImageData that fits ``model`` and lies
    in the support of its likelihood."""
    if not isinstance(data, ImageData):
        raise TypeError(f"{name} must be a vaelab.ImageData (from vaelab.load_mnist or "
                        f"ImageData(images, labels)), got {type(data).__name__}.")
    if len(data) == 0:
        raise ValueError(f"{name} data is empty; pass at least one image.")
    expected = getattr(model.encoder, "input_dim", data.images.shape[1])
    if data.images.shape[1] != expected:
        raise ValueError(f"{name} images have {data.images.shape[1]} pixels but the model expects "
                         f"{expected}; flatten images to (N, {expected}).")
    if isinstance(model.likelihood, BernoulliLikelihood):
        check_unit_interval(f"{name} images", data.images)
    elif not bool(torch.isfinite(data.images).all()):
        raise ValueError(f"{name} images contain NaN or Inf; clean the data before training.")


def _last_good(checkpoint: Path | None, saved_epoch: int | None) -> str:
    if checkpoint is not None and saved_epoch is not None:
        return f"the last good checkpoint is {checkpoint} (written after epoch {saved_epoch}); resume from it"
    if checkpoint is not None and checkpoint.exists():
        return (f"no checkpoint was written yet by this run (a file already at {checkpoint} is not "
                "from it); start again")
    if checkpoint is not None:
        return "no checkpoint was written yet; start again"
    return "no checkpoint was written yet (pass checkpoint=... to keep one); start again"


def _check_finite(losses: torch.Tensor, start: int, stop: int, epoch: int,
                  checkpoint: Path | None, saved_epoch: int | None, lr: float) -> None:
    """Raise NonFiniteLossError if a loss of steps start..stop-1 (0-based) is NaN or Inf."""
    finite = torch.isfinite(losses[start:stop])
    if bool(finite.all()):
        return
    step = start + int((~finite).nonzero()[0]) + 1
    value = losses[step - 1].item()
    raise NonFiniteLossError(
        f"the training loss became {value} at epoch {epoch}, step {step}; "
        f"{_last_good(checkpoint, saved_epoch)} with a lower learning rate than lr={lr}."
    )
