"""Training a VAE: Adam on the negative ELBO, one epoch after another, with a history.

``fit`` is the loop a student reads: at the start of each epoch the learning rate of the schedule;
for each minibatch the KL warm-up's weight, the objective (the ELBO by default), its gradient, an Adam
step; after each epoch, a line of history (train and test ELBO in nats per image). Everything else
(checkpoints, resuming and its comparison of runs, RNG state, progress, divergence guards, locking)
lives in ``vaelab.train.runs``, behind the ``run`` object the loop calls; a compiled step
(``compile=True``) in ``vaelab.train.fast``, training in several processes (torchrun) in
``vaelab.train.distributed``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..core.model import VAE
from ..core.objectives import KL_ESTIMATORS, ELBOTerms, elbo, training_loss
from ..core.validation import check_choice, check_nonnegative, check_positive_int
from ..data import ImageData, check_dataset
from ..estimators.evaluation import conditional_view, evaluate_elbo, is_conditional
from ..utils.devices import resolve_device
from .distributed import join
from .fast import CompiledObjective, compile_mode
from .runs import NonFiniteLossError, Run, TrainingDivergedError, TrainingSettings

__all__ = [
    "fit",
    "ELBO",
    "History",
    "NonFiniteLossError",
    "TrainingDivergedError",
    "evaluate_elbo",
    "make_optimizer",
    "learning_rate",
    "kl_warmup_weight",
]


class History:
    """Per-epoch record, in nats per image (summed over pixels), one list per column, read as
    attributes (``history.test_elbo[-1]``): epoch, examples_seen, ``train_<term>`` for each
    per-example term the objective reports (the ELBO: train_reconstruction, train_kl, train_elbo;
    an ``IWAEObjective`` adds train_bound, the L_k it maximizes, and its train_elbo is the ELBO
    estimated from the same k draws), test_elbo (NaN without a test set; null in ``to_json``) and
    seconds."""

    def __init__(self, columns: dict[str, list] | None = None) -> None:
        self.columns: dict[str, list] = {name: list(values) for name, values in (columns or {}).items()}

    def __getattr__(self, name: str) -> list:
        columns = self.__dict__.get("columns", {})
        if name in columns:
            return columns[name]
        known = ", ".join(columns) or "none yet"
        raise AttributeError(f"History has no column {name!r}; its columns are: {known}.")

    def append(self, **values: float) -> None:
        """Add one epoch; a column seen for the first time is NaN in the earlier epochs, a known column
        not given is NaN in this one."""
        earlier = len(self)
        for name, value in values.items():
            self.columns.setdefault(name, [math.nan] * earlier).append(value)
        for column in self.columns.values():
            if len(column) == earlier:
                column.append(math.nan)

    def extend(self, values: dict[str, list]) -> None:
        for name, column in values.items():
            self.columns.setdefault(name, []).extend(column)

    def to_dict(self) -> dict[str, list]:
        return {name: list(column) for name, column in self.columns.items()}

    def to_json(self) -> dict[str, list]:
        """``to_dict`` with NaN and Inf as None: valid JSON (``json.dumps(..., allow_nan=False)``)."""
        return {
            k: [v if not isinstance(v, float) or math.isfinite(v) else None for v in column]
            for k, column in self.to_dict().items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, list]) -> History:
        return cls({k: [math.nan if v is None else v for v in column] for k, column in values.items()})

    def __len__(self) -> int:
        return len(self.columns.get("epoch", []))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"History({self.to_dict()!r})"


@dataclass(frozen=True)
class ELBO:
    """The default objective of ``fit`` (``vaelab.core.objectives`` describes the protocol):
    ``training_loss(elbo(model, x, n_samples, kl), beta * kl_weight, free_bits)``, where kl_weight in
    [0, 1] is the KL warm-up's factor of the step."""

    n_samples: int = 1
    kl: str = "auto"
    beta: float = 1.0
    free_bits: float = 0.0
    kl_weighted = True  # the KL warm-up weighs its KL term

    def __post_init__(self) -> None:
        check_positive_int("n_samples", self.n_samples)
        check_choice("kl", self.kl, KL_ESTIMATORS)
        object.__setattr__(self, "beta", check_nonnegative("beta", self.beta))
        object.__setattr__(self, "free_bits", check_nonnegative("free_bits", self.free_bits, unit=" nats"))

    def __call__(self, model: VAE, x: torch.Tensor, kl_weight: float = 1.0) -> tuple[torch.Tensor, ELBOTerms]:
        terms = elbo(model, x, self.n_samples, self.kl, validate=False)
        return training_loss(terms, self.beta * kl_weight, self.free_bits), terms

    def settings(self) -> dict[str, object]:
        """What defines this objective, stored with a run and compared on resume."""
        return {
            "objective": "elbo",
            "n_samples": self.n_samples,
            "kl": self.kl,
            "beta": self.beta,
            "free_bits": self.free_bits,
        }


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


def learning_rate(epoch: int, lr: float, lr_schedule: Sequence[tuple[int, float]] = ()) -> float:
    """The learning rate of 1-based ``epoch``: that of the ``lr_schedule`` stage (epochs, lr) holding it
    (the last stage's after the schedule ends), or the constant ``lr`` without a schedule."""
    end = 0
    for stage_epochs, stage_lr in lr_schedule:
        end += stage_epochs
        if epoch <= end:
            return stage_lr
    return lr_schedule[-1][1] if lr_schedule else lr


def kl_warmup_weight(epoch: int, step: int, steps_per_epoch: int, warmup_epochs: float) -> float:
    """The KL term's weight at 0-based ``step`` of 1-based ``epoch``: rising linearly from 0 to 1 over
    the first ``warmup_epochs`` epochs (KL annealing), 1 afterwards (and without warm-up)."""
    warmup_steps = warmup_epochs * steps_per_epoch
    done = (epoch - 1) * steps_per_epoch + step
    return min(1.0, done / warmup_steps) if warmup_steps else 1.0


def fit(
    model: VAE,
    train: ImageData,
    test: ImageData | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float | None = None,
    lr_schedule: Sequence[tuple[int, float]] = (),
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    beta: float = 1.0,
    kl_warmup_epochs: float = 0.0,
    free_bits: float = 0.0,
    n_samples: int = 1,
    kl: str = "auto",
    objective: Any = "elbo",
    device: str | torch.device = "auto",
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool | None = None,
    eval_batch_size: int = 1000,
    compile: bool | str = False,
) -> History:
    """Train ``model`` on ``train`` for ``epochs`` epochs with Adam(lr); returns the History.

    Each step maximizes the minibatch ELBO, L(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)), with
    the model's own prior p(z) (a learnable prior is trained with the rest), by minimizing
    ``training_loss``: -mean_batch[reconstruction - beta_t * KL].
    lr: Adam's learning rate (default 1e-3). lr_schedule: (epochs, lr) stages that set it instead
    (giving lr too is an error), e.g. Burda et al.'s 3^i epochs at 1e-3 * 10^(-i/7):
    [(3**i, 1e-3 * 10 ** (-i / 7)) for i in range(8)]; the last stage's lr holds after the schedule
    ends. adam_betas, adam_eps: Adam's (beta1, beta2) and epsilon.
    beta: weight of the KL term (beta-VAE). kl_warmup_epochs: beta_t rises linearly from 0 to
    beta over that many epochs (KL annealing). free_bits: nats per latent dimension below which
    the KL is not penalized. n_samples, kl: as in ``elbo`` (kl="auto": the closed form where one is
    registered for the model's q and prior, else Monte Carlo).
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
    objective: "elbo" (the above, ``ELBO``), or any other objective object
    (``objective(model, x, kl_weight) -> (loss, terms)`` with ``settings()``), e.g.
    ``vaelab.estimators.IWAEObjective(k, estimator)``: each step then maximizes the importance-weighted
    bound L_k with the gradient estimator "reparam" (Burda et al.), "dreg" (Tucker et al.) or "stl"
    (biased for k > 1); beta, free_bits, n_samples and kl belong to the ELBO and must keep their
    defaults, and kl_warmup_epochs needs an objective with a KL term (``kl_weighted``). The
    objective's settings are settings of the run (compared on resume); the history records the
    epoch means of its per-example terms (see ``History``).
    A conditional model (one with a ``given(y)`` method, e.g. ``vaelab.models.conditional``) is trained as
    ``model.given(y)`` with the labels y of each batch, and evaluated the same way.
    compile: True (or a torch.compile mode, e.g. "reduce-overhead" for CUDA graphs on a GPU) compiles
    the objective with ``torch.compile`` (forward and backward in one graph; ``vaelab.train.fast``): the
    same random draws as the eager loop, the same numbers up to float rounding; steps of the KL warm-up
    run eagerly; where it cannot compile, a one-line notice and eager steps. The compile time is the
    history's compile_seconds (included in seconds). Not a setting of the run: a checkpoint resumes in
    either mode (across modes, the numbers agree with an uninterrupted run to float rounding).
    Several processes: run the script under ``torchrun --nproc-per-node N`` (or initialize
    ``torch.distributed`` first) and fit trains with DistributedDataParallel (gloo on CPU, nccl on CUDA,
    ``cuda:LOCAL_RANK``): every process draws the same batches, takes its slice
    ``batch.tensor_split(N)[rank]`` and its own noise (torch's generator seeded with seed + rank), the
    gradients are averaged, weighted by the slices' sizes, so a step is the one-process step on the
    global batch with that noise; free_bits applies to each slice's KL. Rank 0 writes the checkpoint
    (every rank's random state in it); a run resumes with the same number of processes. Each process
    evaluates the whole test set; rank 0's history is the one written. No batch may have fewer rows
    than processes.

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
    fused on CPU and CUDA, its lr set by ``learning_rate`` at the start of each epoch.
    """
    objective = _objective(objective, beta, kl_warmup_epochs, free_bits, n_samples, kl)
    settings = TrainingSettings(
        lr=lr,
        lr_schedule=lr_schedule,
        adam_betas=adam_betas,
        adam_eps=adam_eps,
        batch_size=batch_size,
        kl_warmup_epochs=kl_warmup_epochs,
        seed=seed,
        objective=objective.settings(),
    )
    check_positive_int("epochs", epochs)
    check_positive_int("eval_batch_size", eval_batch_size)
    mode = compile_mode(compile)  # None: eager
    team = join(resolve_device(device))  # this process alone, or one of those torchrun started
    team.check_batches(len(train), batch_size)
    model.to(team.device)
    train, test = _prepare_data(model, train, test, seed)
    optimizer = make_optimizer(model, settings.lr, settings.adam_betas, settings.adam_eps)
    history = History()
    conditional = is_conditional(model)
    compiled = None if mode is None else CompiledObjective(objective, mode)  # fast.py
    objective = team.objective(compiled or objective, model)  # alone: itself; else through DDP (distributed.py)
    run = Run(model, optimizer, train, test, settings, history, epochs, checkpoint, resume, progress, team, compiled)
    with run:
        model.train()
        for epoch in run.epochs():
            for group in optimizer.param_groups:  # the learning-rate schedule
                group["lr"] = learning_rate(epoch, settings.lr, settings.lr_schedule)
            batches = train.batches(batch_size, generator=run.generator, labels=conditional)
            for step, batch in enumerate(team.slices(batches)):  # this process's slice (alone: all of it)
                x, m = (batch[0], model.given(batch[1])) if conditional else (batch, model)
                kl_weight = kl_warmup_weight(epoch, step, run.steps_per_epoch, kl_warmup_epochs)  # KL warm-up
                optimizer.zero_grad(set_to_none=True)
                loss, terms = objective(m, x, kl_weight)
                loss.backward()
                optimizer.step()
                run.record_step(epoch, step, loss, terms)
            test_elbo = evaluate_elbo(model, test, eval_batch_size) if test is not None else math.nan
            means = run.epoch_means()  # {"train_elbo": ..., "train_kl": ...}: the objective's terms
            history.append(
                epoch=epoch, examples_seen=epoch * len(train), **means, test_elbo=test_elbo, seconds=run.seconds()
            )
            run.end_epoch(epoch)  # divergence guards, then the checkpoint
    return history


def _prepare_data(
    model: VAE, train: ImageData, test: ImageData | None, seed: int
) -> tuple[ImageData, ImageData | None]:
    """Check both splits, move them to the model's device, and binarize a dynamic test set once."""
    device = next(model.parameters()).device
    check_dataset("train", train, conditional_view(model, train))
    if test is not None:
        check_dataset("test", test, conditional_view(model, test))
        test = test.to(device)
        if test.binarization == "dynamic":
            test = test.fixed_binarization(seed)
    return train.to(device), test


def _objective(objective: Any, beta: float, kl_warmup_epochs: float, free_bits: float, n_samples: int, kl: str) -> Any:
    """The objective fit trains: the ELBO of fit's own options, or an objective object, which refuses
    the ELBO's options (they would silently do nothing)."""
    if isinstance(objective, str) and objective == "elbo":
        return ELBO(n_samples=n_samples, kl=kl, beta=beta, free_bits=free_bits)
    if isinstance(objective, str) or not (callable(objective) and callable(getattr(objective, "settings", None))):
        raise ValueError(
            f"objective must be 'elbo' or an objective object such as vaelab.estimators.IWAEObjective(k=5, "
            f"estimator='dreg'), got {objective!r}."
        )
    elbo_options = {"beta": (beta, 1.0), "free_bits": (free_bits, 0.0), "n_samples": (n_samples, 1), "kl": (kl, "auto")}
    changed = [f"{name}={value!r}" for name, (value, default) in elbo_options.items() if value != default]
    if changed:
        raise ValueError(
            f"{', '.join(changed)} shape fit's own ELBO, not the objective {objective!r}; leave them at their "
            "defaults (an ELBO of other settings is vaelab.train.training.ELBO(...)), or use objective='elbo'."
        )
    if kl_warmup_epochs and not getattr(objective, "kl_weighted", False):
        raise ValueError(
            f"kl_warmup_epochs={kl_warmup_epochs!r} weighs a KL term, which the objective {objective!r} does "
            "not have; leave it at 0, or train with objective='elbo'."
        )
    return objective
