"""Training a VAE: Adam on the negative ELBO, one epoch after another, with a history.

``fit`` is the loop a student reads: for each minibatch, the ELBO, its gradient, an Adam step;
after each epoch, a line of history (train and test ELBO in nats per image). Everything else
(checkpoints, resuming and its comparison of runs, RNG state, progress, divergence guards,
locking) lives in ``vaelab.train.runs``, behind the ``run`` object the loop calls.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..core.model import VAE
from ..core.objectives import elbo, training_loss
from ..core.validation import check_model_input, check_positive_int
from ..data import ImageData, check_dataset
from ..estimators.evaluation import evaluating
from ..estimators.iwae import IWAEObjective
from ..utils.devices import resolve_device
from .runs import NonFiniteLossError, Run, TrainingDivergedError, TrainingSettings

__all__ = ["fit", "History", "NonFiniteLossError", "TrainingDivergedError", "evaluate_elbo", "make_optimizer"]


@dataclass
class History:
    """Per-epoch record, all in nats per image (summed over pixels). ``test_elbo`` is NaN in
    epochs without a test set (``to_json`` writes it as null).

    The train columns are the ELBO and its parts, averaged over the epoch's steps, whatever the
    objective: with ``objective=IWAEObjective(k)`` they are the ELBO estimated from the same k draws
    as each step (mean_i log w_i, the KL by Monte Carlo), not the L_k >= ELBO the step maximizes."""

    epoch: list[int] = field(default_factory=list)
    examples_seen: list[int] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)
    train_reconstruction: list[float] = field(default_factory=list)
    train_kl: list[float] = field(default_factory=list)
    test_elbo: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def append(
        self, epoch: int, examples_seen: int, reconstruction: float, kl: float, test_elbo: float, seconds: float
    ) -> None:
        """Add one epoch: the train ELBO is reconstruction - kl."""
        for name, value in (
            ("epoch", epoch),
            ("examples_seen", examples_seen),
            ("train_elbo", reconstruction - kl),
            ("train_reconstruction", reconstruction),
            ("train_kl", kl),
            ("test_elbo", test_elbo),
            ("seconds", seconds),
        ):
            getattr(self, name).append(value)

    def extend(self, values: dict[str, list]) -> None:
        for name, column in values.items():
            getattr(self, name).extend(column)

    def to_dict(self) -> dict[str, list]:
        return asdict(self)

    def to_json(self) -> dict[str, list]:
        """``to_dict`` with NaN and Inf as None: valid JSON (``json.dumps(..., allow_nan=False)``)."""
        return {
            k: [v if not isinstance(v, float) or math.isfinite(v) else None for v in column]
            for k, column in self.to_dict().items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, list]) -> History:
        return cls(**{k: [math.nan if v is None else v for v in column] for k, column in values.items()})

    def __len__(self) -> int:
        return len(self.epoch)


def make_optimizer(
    model: torch.nn.Module, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
) -> torch.optim.Adam:
    """Adam(lr, betas, eps), fused into one kernel per step where torch has a fused Adam for the
    parameters' device (faster for small models: one update for all parameters instead of one per tensor)."""
    device = next(model.parameters()).device.type
    return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps, fused=device in _fused_adam_devices())


def _fused_adam_devices() -> list[str]:
    try:  # torch >= 2.4 names the device types its fused optimizers support
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return _get_fused_kernels_supported_devices()
    except ImportError:
        return ["cuda"]


def _conditional(model: torch.nn.Module) -> bool:
    """A conditional model has ``given(y)``: the VAE-like view of p(x|z, y) q(z|x, y) for labels y."""
    return callable(getattr(model, "given", None))


def _view(model: VAE, data: ImageData) -> VAE:
    """The model as the checks see it: itself, or a conditional model given the first label."""
    return model.given(data.labels[:1].to(next(model.parameters()).device)) if _conditional(model) else model


@torch.no_grad()
def evaluate_elbo(model: VAE, data: ImageData, batch_size: int = 1000) -> float:
    """Mean ELBO over ``data`` (one reparameterized sample; the closed-form KL where q(z|x) has one, as
    the diagonal Gaussian does, else the Monte Carlo KL of the same sample, as for a flow), nats per image.

    ``data`` is checked first (an ImageData that fits the model, in the likelihood's support).
    A conditional model (one with ``given(y)``) is evaluated as ``model.given(y)`` on each batch's labels."""
    check_positive_int("batch_size", batch_size)
    view = _view(model, data)
    check_dataset("data", data, view)
    check_model_input(view, data.images[:1])  # the model's device and dtype
    total = torch.zeros((), device=data.device)
    with evaluating(model):
        kl = "analytic" if hasattr(view.posterior(data.images[:1]), "kl_per_dimension") else "mc"
        if _conditional(model):
            for x, y in data.batches(batch_size, shuffle=False, labels=True):
                total += elbo(model.given(y), x, kl=kl, validate=False).elbo.sum()
        else:
            for x in data.batches(batch_size, shuffle=False):
                total += elbo(model, x, kl=kl, validate=False).elbo.sum()
    return total.item() / len(data)


def fit(
    model: VAE,
    train: ImageData,
    test: ImageData | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    lr_schedule: Sequence[tuple[int, float]] = (),
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    beta: float = 1.0,
    kl_warmup_epochs: float = 0.0,
    free_bits: float = 0.0,
    n_samples: int = 1,
    kl: str = "analytic",
    objective: str | IWAEObjective = "elbo",
    device: str | torch.device = "auto",
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool | None = None,
    eval_batch_size: int = 1000,
) -> History:
    """Train ``model`` on ``train`` for ``epochs`` epochs with Adam(lr); returns the History.

    Each step maximizes the minibatch ELBO, L(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)),
    by minimizing ``training_loss``: -mean_batch[reconstruction - beta_t * KL].
    lr_schedule: (epochs, lr) stages replacing the constant lr, e.g. Burda et al.'s 3^i epochs at
    1e-3 * 10^(-i/7): [(3**i, 1e-3 * 10 ** (-i / 7)) for i in range(8)]; the last stage's lr holds
    after the schedule ends. adam_betas, adam_eps: Adam's (beta1, beta2) and epsilon.
    beta: weight of the KL term (beta-VAE). kl_warmup_epochs: beta_t rises linearly from 0 to
    beta over that many epochs (KL annealing). free_bits: nats per latent dimension below which
    the KL is not penalized. n_samples, kl: as in ``elbo``.
    checkpoint: file written atomically after every epoch (the one it replaces is kept as
    ``checkpoint.prev``); with resume=True an existing file is continued from its epoch, after
    checking that it holds the same run: same data, binarization, model, dtype and the settings
    above (epochs, device, progress, eval_batch_size and the path may differ). A mismatch, a
    damaged file without a good previous one, or more saved epochs than ``epochs`` is a clear
    error; resume=False starts over. Two processes cannot train into one checkpoint at once.
    progress: tqdm bar (None = on unless $CI or $VAELAB_QUIET is set).
    A test set binarized "dynamic" is fixed once (seed) so test ELBOs are comparable.
    Raises NonFiniteLossError (a NaN/Inf loss or weights) or TrainingDivergedError (a train ELBO
    100 times worse than the untrained model's), naming the epoch and the last good checkpoint.
    objective: "elbo" (the above), or ``vaelab.estimators.IWAEObjective(k, estimator)``: each step
    then maximizes the importance-weighted bound L_k with the gradient estimator "reparam" (Burda et
    al.), "dreg" (Tucker et al.) or "stl" (biased for k > 1); beta, kl_warmup_epochs, free_bits,
    n_samples and kl belong to the ELBO and must keep their defaults. The objective is a setting of
    the run (compared on resume). The history's train columns stay the ELBO (see ``History``).
    A conditional model (one with a ``given(y)`` method, e.g. ``vaelab.models.conditional``) is trained as
    ``model.given(y)`` with the labels y of each batch, and evaluated the same way.

    Random draws (the contract a hand-written loop can rely on to reproduce fit bit for bit on
    CPU): fit calls ``torch.manual_seed(seed)`` and seeds a ``torch.Generator(device)`` with
    ``seed``, both before its first draw (resuming restores both instead). Each epoch then draws,
    in this order: ``torch.randperm(len(train), generator=generator)`` (the shuffle), and for
    each minibatch of ``batch_size`` consecutive shuffled indices, first, for a "dynamic" train
    set, ``torch.bernoulli(batch, generator=generator)``, then the reparameterization noise of
    ``elbo(model, x, n_samples, kl)`` (or of the IWAE objective, k draws) from torch's global
    generator (the labels of a conditional model draw nothing); after the epoch's last step,
    ``evaluate_elbo(model, test, eval_batch_size)`` draws its noise from the global generator
    too. A dynamic test set is binarized before all of this by ``test.fixed_binarization(seed)``
    (its own generator). The optimizer is ``torch.optim.Adam(lr=lr, betas=adam_betas, eps=adam_eps)``,
    fused on CPU and CUDA, its lr set from lr_schedule at the start of each epoch.
    """
    settings = TrainingSettings(
        lr=lr,
        lr_schedule=lr_schedule,
        adam_betas=adam_betas,
        adam_eps=adam_eps,
        batch_size=batch_size,
        beta=beta,
        kl_warmup_epochs=kl_warmup_epochs,
        free_bits=free_bits,
        n_samples=n_samples,
        kl=kl,
        seed=seed,
        objective=_check_objective(objective, beta, kl_warmup_epochs, free_bits, n_samples, kl),
    )
    check_positive_int("epochs", epochs)
    check_positive_int("eval_batch_size", eval_batch_size)
    model.to(resolve_device(device))
    train, test = _prepare_data(model, train, test, seed)
    # plain floats: NumPy ones would not load back
    optimizer = make_optimizer(model, settings.lr, settings.adam_betas, settings.adam_eps)
    history = History()
    conditional = _conditional(model)
    with Run(model, optimizer, train, test, settings, history, epochs, checkpoint, resume, progress) as run:
        model.train()
        for epoch in run.epochs():
            for step, batch in enumerate(train.batches(batch_size, generator=run.generator, labels=conditional)):
                x, m = (batch[0], model.given(batch[1])) if conditional else (batch, model)
                optimizer.zero_grad(set_to_none=True)
                if objective == "elbo":
                    terms = elbo(m, x, n_samples=n_samples, kl=kl, validate=False)
                    loss = training_loss(terms, run.kl_weight(epoch, step), free_bits)
                else:  # an IWAEObjective: -mean L_k with its gradient estimator, and the ELBO's parts
                    loss, terms = objective(m, x)
                loss.backward()
                optimizer.step()
                run.record_step(epoch, step, loss, terms)
            reconstruction, kl_term = run.epoch_means()
            test_elbo = evaluate_elbo(model, test, eval_batch_size) if test is not None else math.nan
            history.append(epoch, epoch * len(train), reconstruction, kl_term, test_elbo, run.seconds())
            run.end_epoch(epoch)  # divergence guards, then the checkpoint
    return history


def _prepare_data(
    model: VAE, train: ImageData, test: ImageData | None, seed: int
) -> tuple[ImageData, ImageData | None]:
    """Check both splits, move them to the model's device, and binarize a dynamic test set once."""
    device = next(model.parameters()).device
    check_dataset("train", train, _view(model, train))
    if test is not None:
        check_dataset("test", test, _view(model, test))
        test = test.to(device)
        if test.binarization == "dynamic":
            test = test.fixed_binarization(seed)
    return train.to(device), test


def _check_objective(
    objective: object, beta: float, kl_warmup_epochs: float, free_bits: float, n_samples: int, kl: str
) -> str:
    """The objective's name for the run's settings; an IWAE objective refuses the ELBO's options."""
    if isinstance(objective, IWAEObjective):
        elbo_options = {
            "beta": (beta, 1.0),
            "kl_warmup_epochs": (kl_warmup_epochs, 0.0),
            "free_bits": (free_bits, 0.0),
            "n_samples": (n_samples, 1),
            "kl": (kl, "analytic"),
        }
        changed = [f"{name}={value!r}" for name, (value, default) in elbo_options.items() if value != default]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} shape the ELBO's terms, which the importance-weighted objective "
                f"{objective.describe()} does not have; leave them at their defaults, or train with "
                "objective='elbo'."
            )
        return objective.describe()
    if objective != "elbo":
        raise ValueError(
            f"objective must be 'elbo' or a vaelab.estimators.IWAEObjective, got {objective!r}; e.g. "
            "objective=vaelab.estimators.IWAEObjective(k=5, estimator='dreg')."
        )
    return "elbo"
